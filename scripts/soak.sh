#!/usr/bin/env bash
# Soak of `slowfast annotate` on a live RTSP source: does its memory grow
# over a long run?
#
#   bash scripts/soak.sh [MINUTES=10] [SAMPLE_EVERY_S=5]
#
# The camera is a generated 320x240 30 fps H.264 clip a minute longer than
# the soak, served over RTSP on loopback by a second `slowfast annotate
# --serve` (Debian ships no RTSP server binary; its window never comes due,
# so it costs no inference). The process under test annotates that feed
# with the bundled demo model to an MP4, as a camera deployment would; its
# RSS (VmRSS) is sampled every few seconds into soak.csv. PROFILE=debug
# reuses a debug build instead of building in release.
set -euo pipefail
minutes="${1:-10}"
every="${2:-5}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$repo/scripts/setup.sh"
profile="${PROFILE:-release}"
flag=(); [ "$profile" = release ] && flag=(--release)
cargo build "${flag[@]}" -p runtime --bin slowfast -p gst-plugin-slowfast >&2
bin="$CARGO_TARGET_DIR/$profile/slowfast"
work="$(mktemp -d)"
export GST_REGISTRY="$work/registry.bin"
echo "soak: working in $work" >&2

frames=$(( (minutes + 1) * 60 * 30 ))
gst-launch-1.0 -q videotestsrc num-buffers="$frames" pattern=ball \
  ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
  ! x264enc speed-preset=ultrafast key-int-max=30 ! mp4mux ! filesink location="$work/cam.mp4"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="rtsp://127.0.0.1:$port/cam"
"$bin" annotate "$work/cam.mp4" --serve "$url" --model "$repo/runtime/tests/fixtures/tiny_8x8.onnx" \
  --stride 10000 --threads 1 >/dev/null 2>"$work/camera.log" &
camera=$!
sleep 2
"$bin" annotate "$url" --output "$work/soak.mp4" --json --threads 1 >"$work/annotate.jsonl" 2>"$work/annotate.log" &
subject=$!
cleanup() { kill "$subject" "$camera" 2>/dev/null || true; }
trap cleanup EXIT

echo "elapsed_s,rss_kib" >"$work/soak.csv"
start=$(date +%s)
end=$(( start + minutes * 60 ))
while [ "$(date +%s)" -lt "$end" ] && kill -0 "$subject" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$subject/status" 2>/dev/null || true)
  [ -n "$rss" ] && echo "$(( $(date +%s) - start )),$rss" >>"$work/soak.csv"
  sleep "$every"
done
kill -INT "$subject" 2>/dev/null || true
wait "$subject" || true
kill "$camera" 2>/dev/null || true
wait "$camera" 2>/dev/null || true

predictions=$(grep -c '"event":"prediction"' "$work/annotate.jsonl" || true)
finished=$(grep '"event":"finished"' "$work/annotate.jsonl" || echo "{}")
# RSS after the first minute (model loaded, pipelines warm) against the end.
awk -F, -v every="$every" 'NR > 1 { t[NR] = $1; r[NR] = $2; n = NR }
  END {
    if (n < 3) { print "soak: too few samples"; exit 1 }
    for (i = 2; i <= n; i++) if (t[i] >= 60) { first = i; break }
    if (!first) first = 2
    min = max = r[first]
    for (i = first; i <= n; i++) { if (r[i] < min) min = r[i]; if (r[i] > max) max = r[i] }
    printf "samples %d over %d s (every %d s); RSS at %d s %.1f MiB, at %d s %.1f MiB, min %.1f max %.1f MiB after the first minute; growth %+.2f MiB\n",
      n - 1, t[n], every, t[first], r[first] / 1024, t[n], r[n] / 1024, min / 1024, max / 1024, (r[n] - r[first]) / 1024
  }' "$work/soak.csv"
echo "predictions $predictions; $finished"
echo "samples in $work/soak.csv, logs in $work"
