#!/usr/bin/env bash
# Installs the project for this user: `slowfast` and `trainer` in
# $PREFIX/bin (default ~/.local/bin, on the PATH of most shells) and the
# `slowfast` GStreamer element in $PREFIX/share/gstreamer-1.0/plugins (the
# user plugin folder GStreamer scans by itself). Afterwards nothing needs
# sourcing: the binaries find libtorch through their run path, and ONNX
# Runtime and OpenVINO where set-up put them (recorded at build time), or
# beside them.
#
#   bash scripts/install.sh                   # release build, ~/.local
#   PREFIX=/opt/slowfast PROFILE=debug bash scripts/install.sh
#   INSTALL_FROM=target/debug bash scripts/install.sh   # already built: copy only
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${PREFIX:-$HOME/.local}"
if [ -n "${INSTALL_FROM:-}" ]; then
  out="$INSTALL_FROM"
else
  . "$repo/scripts/setup.sh"
  cd "$repo"
  profile="${PROFILE:-release}"
  case "$profile" in
    release) flags=(--release) ;;
    debug) flags=() ;;
    *) echo "install.sh: PROFILE must be release or debug, not '$profile'" >&2; exit 2 ;;
  esac
  cargo build "${flags[@]}" -p runtime --bin slowfast -p trainer --bin trainer -p gst-plugin-slowfast
  out="$CARGO_TARGET_DIR/$profile"
fi
for f in slowfast trainer libgstslowfast.so; do
  [ -f "$out/$f" ] || { echo "install.sh: $out/$f is not built" >&2; exit 1; }
done
mkdir -p "$prefix/bin" "$prefix/share/gstreamer-1.0/plugins"
install -m 755 "$out/slowfast" "$out/trainer" "$prefix/bin/"
install -m 644 "$out/libgstslowfast.so" "$prefix/share/gstreamer-1.0/plugins/"
echo "installed: $prefix/bin/slowfast, $prefix/bin/trainer, $prefix/share/gstreamer-1.0/plugins/libgstslowfast.so"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "note: $prefix/bin is not on your PATH; add it (e.g. in ~/.profile)" ;;
esac
if [ "$prefix" != "$HOME/.local" ]; then
  echo "note: GStreamer scans ~/.local/share/gstreamer-1.0/plugins by itself; for $prefix set GST_PLUGIN_PATH=$prefix/share/gstreamer-1.0/plugins"
fi
