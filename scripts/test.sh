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
fi
exit $status
