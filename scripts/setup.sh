#!/usr/bin/env bash
# One idempotent set-up step shared by the README commands and CI.
#
# Installs, on a Debian 12 machine as root:
#   - GStreamer 1.22 development files and plugins (Debian packages), and
#     Gloo's headers for the trainer's c10d shim (libgloo-dev),
#   - libtorch 2.11.0 (the pair of tch 0.24) from the PyPI `torch` wheel,
#   - the ONNX Runtime shared library from the PyPI `onnxruntime` wheel and
#     OpenVINO's (C API, CPU plugin, ONNX reader) from the `openvino` wheel,
# into a cache outside the checkout, then links them under `.deps/` where
# `.cargo/config.toml` finds them. Nothing has to be exported by the user.
#
# Source it (`. scripts/setup.sh`) to also get CARGO_TARGET_DIR and friends.
# When sourced, the caller's shell options come back at the end.
_slowfast_opts="$(set +o)"
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore

SLOWFAST_CACHE="${SLOWFAST_CACHE:-$HOME/.cache/slowfast}"
TORCH_VERSION=2.11.0          # must match tch 0.24 (see ARCHITECTURE.md)
ORT_VERSION=1.32.0            # loaded at run time by `ort` (load-dynamic)
OPENVINO_VERSION=2026.4.1     # loaded at run time by `openvino` (runtime-linking; needs >= 2025.1)
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$SLOWFAST_CACHE"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------
debs=(pkg-config python3 python3-pip python3-venv ca-certificates
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  g++ libgloo-dev)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust toolchain ---------------------------------------------------------
# Debian 12's own rustc (1.63) is older than the workspace's rust-version.
RUST_VERSION=1.95.0
if ! command -v cargo >/dev/null 2>&1; then
  if [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    log "installing Rust $RUST_VERSION with rustup"
    command -v curl >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
      | sh -s -- -y --profile minimal --component rustfmt,clippy --default-toolchain "$RUST_VERSION" >&2 \
      || { log "cannot install Rust: install it with rustup (https://rustup.rs), then rerun"; exit 1; }
  fi
  export PATH="$HOME/.cargo/bin:$PATH"
fi
# The test suite checks formatting and lints.
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" \
      || rustup component add "$component" >&2 || log "cannot add the Rust component $component"
  done
fi

# --- wheels from PyPI, unpacked with pip --target (no Python import needed) --
pip_target() { # dir, requirement...
  local dir="$1"; shift
  if [ ! -f "$dir/.complete" ]; then
    log "installing $* into $dir"
    rm -rf "$dir"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps \
      --target "$dir" "$@"
    touch "$dir/.complete"
  fi
}

LIBTORCH_ROOT="$SLOWFAST_CACHE/libtorch-$TORCH_VERSION"
# The CUDA runtime and CUPTI libraries are the only libraries libtorch_cpu
# needs beyond the wheel itself; the rest of CUDA is not needed on CPU.
pip_target "$LIBTORCH_ROOT" "torch==$TORCH_VERSION" \
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85

ORT_ROOT="$SLOWFAST_CACHE/onnxruntime-$ORT_VERSION"
pip_target "$ORT_ROOT" "onnxruntime==$ORT_VERSION"

# OpenVINO's C API, CPU plugin and ONNX reader; its plugins are found
# beside the real file, so the whole libs folder stays where pip put it.
OPENVINO_ROOT="$SLOWFAST_CACHE/openvino-$OPENVINO_VERSION"
pip_target "$OPENVINO_ROOT" "openvino==$OPENVINO_VERSION"

# --- stable paths for cargo (see .cargo/config.toml) ------------------------
mkdir -p "$repo/.deps"
ln -sfn "$LIBTORCH_ROOT/torch" "$repo/.deps/libtorch"
ort_lib="$(ls "$ORT_ROOT"/onnxruntime/capi/libonnxruntime.so* | head -n1)"
ln -sfn "$ort_lib" "$repo/.deps/libonnxruntime.so"
ov_lib="$(ls "$OPENVINO_ROOT"/openvino/libs/libopenvino_c.so* | head -n1)"
ln -sfn "$ov_lib" "$repo/.deps/libopenvino_c.so"

export SLOWFAST_CACHE
export LIBTORCH="$repo/.deps/libtorch"
export ORT_DYLIB_PATH="$repo/.deps/libonnxruntime.so"
export OPENVINO_DYLIB_PATH="$repo/.deps/libopenvino_c.so"
# One target directory per checkout path: binaries and tests bake their
# source path in (fixtures, the bundled model), and cargo's fingerprints do
# not notice when the same sources were last built from another path.
checkout_key="$(printf '%s' "$repo" | cksum | cut -d' ' -f1)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SLOWFAST_CACHE/targets/$checkout_key}"
log "libtorch: $(readlink -f "$LIBTORCH")"
log "onnxruntime: $(readlink -f "$ORT_DYLIB_PATH")"
log "openvino: $(readlink -f "$OPENVINO_DYLIB_PATH")"
eval "$_slowfast_opts"
unset _slowfast_opts
