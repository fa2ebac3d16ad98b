#!/usr/bin/env bash
# Create .venv (if missing) and install brainvq into it. CPU users get the pinned torch 2.13.0 CPU
# wheel; if the venv already has a torch (e.g. a CUDA build you installed first), it is kept.
# Usage: bash scripts/setup.sh [test]     ("test" also installs pytest, hypothesis and ruff)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
fi
extra=""
[ "${1:-}" = "test" ] && extra="[test]"
python -m pip install -q -e ".${extra}" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch, brainvq; print(f'brainvq {brainvq.__version__} with torch {torch.__version__}')"
