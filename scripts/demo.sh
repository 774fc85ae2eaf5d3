#!/usr/bin/env bash
# The main job: the bundled demo model (models/demo/model.onnx, a reduced
# SlowFast trained by configs/demo_synth_cpu.yaml) annotates a generated
# motion video through the `slowfast` GStreamer element and writes the
# annotated H.264 MP4. The video has one 3-second segment per class, so
# the predictions are scored against the ground truth at the end.
#
#   bash scripts/demo.sh            # generated video -> runs/demo/annotated.mp4
#   bash scripts/demo.sh clip.mp4   # any video or URI instead (no scoring)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$repo/scripts/setup.sh"
cd "$repo"
cargo build --quiet -p trainer -p runtime -p gst-plugin-slowfast
bin="$CARGO_TARGET_DIR/debug"
out="$repo/runs/demo"
mkdir -p "$out"

truth=""
if [ $# -ge 1 ]; then
  video="$1"
else
  video="$out/motion.mp4"
  truth="$out/motion.segments.txt"
  "$bin/trainer" synth-video --out "$video" --size 256 --seconds 3
fi

"$bin/slowfast" annotate "$video" --output "$out/annotated.mp4" --top-k 1 | tee "$out/predictions.txt"
echo "annotated video: $out/annotated.mp4"

if [ -n "$truth" ]; then
  # Lines look like `#3 [1.07-2.13 s] move_right 0.998`; only windows that
  # lie inside one segment have a single right answer.
  awk -v truth="$truth" '
    BEGIN { while ((getline l < truth) > 0) { split(l, f, " "); n++; s[n] = f[1]; e[n] = f[2]; name[n] = f[4] } }
    /^#[0-9]+ \[/ {
      span = substr($2, 2); split(span, ab, "-"); a = ab[1] + 0; b = ab[2] + 0
      for (i = 1; i <= n; i++) if (a >= s[i] - 1e-3 && b < e[i] - 0.01) {
        total++; if ($4 == name[i]) right++; else wrong = wrong sprintf("  %s: predicted %s, truth %s\n", $2 " " $3, $4, name[i])
      }
    }
    END {
      if (total == 0) { print "no prediction window fell inside one segment"; exit 1 }
      printf "windows inside one segment: %d, top-1 right: %d (%.1f%%)\n", total, right, 100 * right / total
      if (wrong != "") printf "wrong:\n%s", wrong
    }' "$out/predictions.txt"
fi
