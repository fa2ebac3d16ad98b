#!/usr/bin/env bash
# Set up, then run the main job on the embedded default data (a few minutes on a laptop CPU).
# Usage: bash scripts/demo.sh [RUN_FOLDER]     (default runs/demo; outputs land there)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
brainvq run --data default --run "${1:-runs/demo}" --config quick
