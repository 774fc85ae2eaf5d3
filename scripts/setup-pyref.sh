#!/usr/bin/env bash
# Creates the Python reference environment used to generate parity fixtures
# (trainer/tests/fixtures/generate.py) and the PyTorch eager benchmark
# (bench/pytorch_eager.py).
#
#   bash scripts/setup-pyref.sh
#
# Venv location: ${SLOWFAST_CACHE:-$HOME/.cache/slowfast}/pyref
# Installs from PyPI only (pip's own index settings apply): the full torch==2.11.0 wheel (with its CUDA dependency wheels,
# ~2.7 GB), torchvision==0.26.0, pytorchvideo==0.1.5, safetensors, numpy,
# fvcore. pytorchvideo 0.1.5 imports torchvision.transforms.functional_tensor,
# which current torchvision renamed; it is patched to
# torchvision.transforms._functional_tensor inside the venv.
#
# Idempotent: a marker file in the venv records the installed spec; a second
# run with the same spec only prints the interpreter path.
set -euo pipefail

CACHE="${SLOWFAST_CACHE:-$HOME/.cache/slowfast}"
VENV="$CACHE/pyref"
PY="$VENV/bin/python"
MARKER="$VENV/.slowfast-pyref-ok"
PKGS=(
  "torch==2.11.0"
  "torchvision==0.26.0"
  "pytorchvideo==0.1.5"
  "safetensors"
  "numpy"
  "fvcore"
  "onnx"
  "onnxruntime==1.32.0"
  "openvino==2026.4.1"
)
SPEC="v3 ${PKGS[*]}"

if [[ -x "$PY" && -f "$MARKER" && "$(cat "$MARKER")" == "$SPEC" ]]; then
  echo "pyref: already set up"
  echo "pyref python: $PY"
  exit 0
fi

# A fresh Debian 12 box lacks venv/ensurepip and pip.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y python3-venv python3-pip
fi

mkdir -p "$CACHE"
if [[ ! -x "$PY" ]]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
fi

PIP_ARGS=(--disable-pip-version-check)
# Reuse wheels previously downloaded from PyPI into the cache, if any.
if [[ -d "$CACHE/wheels" ]]; then
  PIP_ARGS+=(--find-links "$CACHE/wheels")
fi

"$PY" -m pip install "${PIP_ARGS[@]}" --upgrade pip setuptools wheel
"$PY" -m pip install "${PIP_ARGS[@]}" "${PKGS[@]}"

# pytorchvideo 0.1.5 vs torchvision >= 0.17: functional_tensor was removed.
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mapfile -t NEED_FIX < <(grep -rl --include='*.py' 'torchvision\.transforms\.functional_tensor' "$SITE/pytorchvideo" || true)
for f in "${NEED_FIX[@]}"; do
  echo "pyref: patching $f"
  sed -i 's/torchvision\.transforms\.functional_tensor/torchvision.transforms._functional_tensor/g' "$f"
  find "$(dirname "$f")/__pycache__" -name "$(basename "$f" .py).*.pyc" -delete 2>/dev/null || true
done

"$PY" - <<'PYEOF'
import torch, torchvision, numpy, safetensors, fvcore
import pytorchvideo
from pytorchvideo.models.slowfast import create_slowfast
import pytorchvideo.transforms  # exercises the patched import
from fvcore.nn import FlopCountAnalysis
print("pyref: torch", torch.__version__, "| torchvision", torchvision.__version__,
      "| numpy", numpy.__version__, "| safetensors", safetensors.__version__)
PYEOF

echo "$SPEC" > "$MARKER"
echo "pyref python: $PY"
