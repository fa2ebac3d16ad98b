#!/usr/bin/env bash
# Set up with the test extras, lint, and run the test suite (CPU only, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
. .venv/bin/activate
ruff check src tests bench scripts
python -m pytest -q "$@"
