#!/usr/bin/env bash
# Set up with the test extras, lint, and run the test suite (CPU only, a few minutes).
# Usage: bash scripts/test.sh [--all] [PYTEST ARGS]   (--all: the slow end-to-end checks too, as CI)
set -euo pipefail
cd "$(dirname "$0")/.."
select=(-m "not slow")
if [ "${1:-}" = "--all" ]; then
  select=()
  shift
fi
bash scripts/setup.sh test
. .venv/bin/activate
ruff check src tests bench scripts
python -m pytest -q "${select[@]}" "$@"
