#!/usr/bin/env bash
# Checks `trainer train` under PyTorch's own launcher, torchrun
# (`torch.distributed.run --no-python`), with the Python torch that
# scripts/setup-pyref.sh installs. Opt-in (CI need not install torch):
#
#   bash scripts/check-torchrun.sh
#
# 1. A 2-process torchrun job ends with exactly the weights of the same job
#    started by `trainer train --nproc-per-node 2`.
# 2. Under `--max-restarts 1`, a worker killed in epoch 2 is restarted with
#    the others by torchrun's agent, the job resumes from its epoch-1
#    checkpoint and again ends with exactly those weights.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$repo/scripts/setup.sh"
py="$(bash "$repo/scripts/setup-pyref.sh" | sed -n 's/^pyref python: //p')"
cd "$repo"
cargo build --release -p trainer
trainer="$CARGO_TARGET_DIR/release/trainer"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/tiny.yaml" <<'YAML'
seed: 5
device: cpu
threads: 1
model: { arch: slowfast_8x8_r50, num_classes: 11, width_per_group: 8, dropout: 0.0 }
data:
  dataset: { synthetic: { train: 24, val: 11, size: 32, frames: 16, seed: 2 } }
  num_frames: 8
  train_jitter_scales: [32, 40]
  train_crop_size: 32
solver: { base_lr: 0.1, reference_batch_size: 4, max_epoch: 3, warmup_epochs: 1, warmup_start_lr: 0.01 }
train: { batch_size: 4, log_period: 1 }
precise_bn: { enabled: true, num_batches: 2 }
test: { num_ensemble_views: 1, num_spatial_crops: 1, crop_size: 32, batch_size: 4 }
loader: { workers: 1, prefetch_batches: 1 }
bn: { norm_type: sync_batchnorm, num_sync_devices: 2 }
YAML
same_weights() {
  "$py" - "$1" "$2" <<'PY'
import sys
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys(), "different tensors"
bad = [k for k in a if not (a[k] == b[k]).all()]
print(f"{len(a)} tensors compared, {len(bad)} differ", bad[:3])
sys.exit(1 if bad else 0)
PY
}
torchrun=("$py" -m torch.distributed.run --standalone --nproc-per-node 2)

echo "== ours: trainer train --nproc-per-node 2"
"$trainer" train --config "$work/tiny.yaml" --out "$work/ours" --nproc-per-node 2 > "$work/ours.log" 2>&1
echo "== torchrun --no-python"
"${torchrun[@]}" --no-python "$trainer" train --config "$work/tiny.yaml" --out "$work/torchrun" > "$work/torchrun.log" 2>&1
same_weights "$work/ours/weights.safetensors" "$work/torchrun/weights.safetensors"

echo "== torchrun --max-restarts 1, rank 1 killed in epoch 2"
"${torchrun[@]}" --max-restarts 1 --no-python "$trainer" train --config "$work/tiny.yaml" --out "$work/restarted" \
  > "$work/restarted.log" 2>&1 &
job=$!
until grep -q '"epoch":2' "$work/restarted/metrics.jsonl" 2>/dev/null; do sleep 0.05; done
victim="$(pgrep -f "trainer train --config $work/tiny.yaml --out $work/restarted" | while read -r p; do
  tr '\0' '\n' < /proc/"$p"/environ | grep -qx RANK=1 && echo "$p"; done | head -n1)"
kill -9 "$victim"
wait "$job"
grep -q "resuming from" "$work/restarted.log" || { echo "the restarted job did not resume"; exit 1; }
same_weights "$work/ours/weights.safetensors" "$work/restarted/weights.safetensors"
echo "torchrun check: passed ($("$py" -c 'import torch; print("torch", torch.__version__)'))"
