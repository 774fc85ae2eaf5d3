#!/usr/bin/env bash
# The main job: runs SlowFast on a real clip from ../shared/data (or the
# video given as first argument) and prints what came out.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$repo/scripts/setup.sh"
cd "$repo"
exec cargo run --quiet -p trainer -- demo "$@"
