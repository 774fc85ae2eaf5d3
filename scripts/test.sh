#!/usr/bin/env bash
# The whole test suite, set-up included.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$repo/scripts/setup.sh"
cd "$repo"
# A registry of our own: never reuse (or write) the user's plugin cache.
export GST_REGISTRY="${GST_REGISTRY:-$SLOWFAST_CACHE/gst-registry.bin}"
# `cargo test` does not write the plugin's cdylib (libgstslowfast.so) nor
# every binary where the pipeline tests load them from: build them first.
cargo build --workspace
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?
# Formatting (rustfmt.toml) and lints ([workspace.lints] in Cargo.toml) are
# part of the whole suite; a run narrowed by arguments skips them.
if [ $# -eq 0 ]; then
  cargo fmt --all --check || status=1
  cargo clippy --workspace --all-targets -- -D warnings || status=1
  # Jetson / ARM: the runtime and the element type-check for aarch64
  # (unsigned c_char, 64-bit ARM cfgs) against the GStreamer 1.20 API.
  # No linking, so the host's GStreamer pkg-config files stand in for
  # arm64 ones; docs/jetson.md says what only a Jetson can confirm.
  if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
      || rustup target add aarch64-unknown-linux-gnu >&2; then
    PKG_CONFIG_ALLOW_CROSS=1 cargo check --target aarch64-unknown-linux-gnu \
      -p runtime -p gst-plugin-slowfast --all-targets || status=1
  else
    echo "test.sh: cannot add the Rust target aarch64-unknown-linux-gnu: the ARM check did not run" >&2
    status=1
  fi
fi
exit $status
