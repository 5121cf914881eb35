#!/usr/bin/env bash
# Create (or update) the project's virtual environment at .venv and install vla into it.
#
#   bash scripts/setup.sh                 # CPU machine: torch==2.13.0 (CPU) + vla[dev,train,deploy]
#   VLA_EXTRAS=dev bash scripts/setup.sh          # no TensorRT builder (e.g. Jetson: use JetPack tensorrt)
#   VLA_SYSTEM_SITE=1 bash scripts/setup.sh   # Jetson / CUDA box: reuse the system torch (JetPack wheel)
#
# torch is pinned only where no torch is present: with VLA_SYSTEM_SITE=1 the venv sees the system
# site-packages, so the torch already installed there satisfies vla's `torch>=2.3` and pip keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${VLA_EXTRAS:-dev,train,deploy}
if [ ! -x .venv/bin/python ]; then
  if [ "${VLA_SYSTEM_SITE:-0}" = "1" ]; then
    "$PY" -m venv --system-site-packages .venv
  else
    "$PY" -m venv .venv
  fi
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "[setup] no torch found: installing torch==2.13.0 (CPU)"
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
echo "[setup] installing vla[$EXTRAS] (editable)"
.venv/bin/python -m pip install --quiet -e ".[$EXTRAS]"
touch .venv/.vla-installed
