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

echo "## Exported R50 8x8 at 224 on the CPU engine vs Python ONNX Runtime (same file), and preprocessing"
model="$work/slowfast_8x8_r50_224.onnx"
[ -f "$model" ] || "$bin/trainer" export --arch slowfast_8x8_r50 --random-init \
  --labels "$repo"/models/kinetics400.txt --crop 224 --out "$model"
"$bin/slowfast" bench --model "$model" --threads 2 --iters 10 --python "$py"

echo "## The slowfast element's frame path (1080p, tiny model, prediction every 32 frames) vs identity, and a live 720p30 source"
"$bin/slowfast" bench-pipeline --live-seconds 60 --rounds 3 --frames 1200

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
