#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md, each beside its reference implementation
# in the same run. Run it on an otherwise idle machine:
#
#   bash scripts/bench.sh 2>&1 | tee bench.log
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$repo/scripts/setup.sh"
bash "$repo/scripts/setup-pyref.sh" >&2
cd "$repo"
cargo build --quiet --release -p trainer -p runtime -p gst-plugin-slowfast
py="$SLOWFAST_CACHE/pyref/bin/python"
bin="$CARGO_TARGET_DIR/release"
work="$SLOWFAST_CACHE/bench"
mkdir -p "$work"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"

echo "## SlowFast R50 8x8 forward, batch 1, 224, 2 threads: trainer (tch) vs PyTorch eager"
"$bin/trainer" bench --arch slowfast_8x8_r50 --size 224 --threads 2 --iters 10 --pytorch "$py"

echo "## Exported R50 8x8 and 4x16 at 224, fp32 and INT8: our ONNX Runtime and OpenVINO engines vs Python ONNX Runtime, Python OpenVINO, PyTorch eager (same files, same run)"
# One set of weights (PySlowFast's initialisation, saved as a .pyth) for the
# fp32 file and its INT8 sibling, calibrated on the repository's real clips.
printf "%s 0\n" "$repo"/data/videos/* > "$work/calibration_real.txt"
for arch in 8x8 4x16; do
  ckpt="$work/slowfast_${arch}_r50.pyth"
  [ -f "$ckpt" ] || "$py" "$repo/bench/import_reference.py" make "$ckpt" --arch "$arch"
  model="$work/r50_${arch}_fp32.onnx"
  "$bin/trainer" export --arch "slowfast_${arch}_r50" --weights "$ckpt" \
    --labels "$repo"/models/kinetics400.txt --crop 224 --out "$model"
  "$bin/trainer" export --arch "slowfast_${arch}_r50" --weights "$ckpt" \
    --labels "$repo"/models/kinetics400.txt --crop 224 --out "${model%_fp32.onnx}_int8.onnx" \
    --int8 --calibration "$work/calibration_real.txt" --calibration-clips 4
  "$bin/slowfast" bench --model "$model" --int8 "${model%_fp32.onnx}_int8.onnx" \
    --backends cpu,openvino --threads 2 --iters 10 --python "$py" --pytorch
done
"$bin/slowfast" bench --model "$work/r50_8x8_fp32.onnx" --backends cpu,openvino --batch 4,8 \
  --threads 2 --iters 4 --warmup 1 --python "$py" --frames 5

echo "## INT8 agreement: the demo model on the synthetic validation set (the recipe's protocol), and the R50 per real clip"
"$bin/trainer" test --config "$repo/configs/demo_synth_cpu.yaml" --onnx "$repo/models/demo/model.onnx" --backend openvino --report "$work/demo_fp32.json" | head -n 1
"$bin/trainer" test --config "$repo/configs/demo_synth_cpu.yaml" --onnx "$repo/models/demo/model_int8.onnx" --backend openvino --report "$work/demo_int8.json" | head -n 1
"$bin/slowfast" compare --model "$work/r50_8x8_fp32.onnx" --model "$work/r50_8x8_int8.onnx" --backend openvino "$repo"/data/videos/*

echo "## The slowfast element's frame path (1080p, tiny model, prediction every 32 frames) vs identity, and a live 720p30 source"
"$bin/slowfast" bench-pipeline --live-seconds 60 --rounds 3 --frames 1200
"$bin/slowfast" bench-pipeline --live-seconds 0 --rounds 3 --frames 300 --backend openvino

echo "## Many cameras per box: N live 720p30 streams on one shared engine (tiny model; R50 8x8 INT8 and fp32 at stride 64)"
"$bin/slowfast" bench-pipeline --streams 1,2,4,8 --live-seconds 20 --backend openvino
"$bin/slowfast" bench-pipeline --streams 1,2,4,8 --live-seconds 20 --backend openvino --max-batch 1
"$bin/slowfast" bench-pipeline --model "$work/r50_8x8_fp32.onnx" --streams 1,2,4 --live-seconds 30 --backend openvino --threads 2 --stride 64
"$bin/slowfast" bench-pipeline --model "$work/r50_8x8_int8.onnx" --streams 1,2,4,8 --live-seconds 30 --backend openvino --threads 2 --stride 64

echo "## Training loader on the real clips, one core: trainer (GStreamer + tch) vs PySlowFast's PyAV loader"
taskset -c 0 "$bin/trainer" bench-loader --clips 40 --python "$py" "$repo"/data/videos/*

echo "## Training step, R50 8x8, batch 2, 32 frames at 128, 2 threads: trainer vs PyTorch"
"$bin/trainer" bench-train --arch slowfast_8x8_r50 --batch 2 --size 128 --threads 2 --iters 8 --pytorch "$py"

echo "## Data parallel, R50 8x8, global batch 4 at 128: gradient all-reduce over Gloo loopback; 2 processes x 1 thread vs 1 x 2; vs PyTorch DDP"
"$bin/trainer" bench-dist --arch slowfast_8x8_r50 --batch 4 --size 128 --python "$py"

echo "## Multigrid against the normal schedule: the reduced SlowFast on the synthetic motion set, 16 epochs each (about 12 minutes)"
rm -rf "$repo/target/bench-multigrid"
"$bin/trainer" bench-multigrid --config "$repo/configs/bench_multigrid_synth.yaml" --out "$repo/target/bench-multigrid"

echo "## Checkpoint import: a full-size R50 8x8 PySlowFast .pyth with optimizer state, trainer import vs torch.load + save_file (time, peak memory)"
ckpt="$work/slowfast_8x8_r50.pyth"
[ -f "$ckpt" ] || "$py" "$repo/bench/import_reference.py" make "$ckpt"
ls -l "$ckpt"
for _ in 1 2 3; do
  /usr/bin/time -f "trainer import: %e s, peak %M KiB" "$bin/trainer" import "$ckpt" --arch slowfast_8x8_r50 --out "$work/imported.safetensors" >/dev/null
  /usr/bin/time -f "torch.load + save_file: %e s, peak %M KiB" "$py" "$repo/bench/import_reference.py" convert "$ckpt" "$work/reference.safetensors"
done
