#!/usr/bin/env bash
# The redesign changed no behaviour: the same fixed-budget `brainvq run` on the development data,
# before (commit 5520739) and after (this checkout), and decoder tuning on its own for the same
# number of steps, compared. Slow on 2 cores (about an hour beside other jobs).
# Usage: bash bench/redesign_parity.sh [DATA] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/brain-mri-128}
OUT=${2:-runs/parity}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
[ -d "$OUT/old-src" ] || git worktree add -f "$OUT/old-src" 5520739 >/dev/null
export BRAINVQ_CACHE="$OUT/cache"
budget="--data.image_size 128 --train.max_epochs 2 --train.max_minutes 0 --prior.max_epochs 2 --prior.max_minutes 0"
PYTHONPATH="$OUT/old-src/src" $PY -m brainvq.cli run --data "$DATA" --run "$OUT/before" --quiet \
  $budget --prior.tune_decoder_minutes 0
PYTHONPATH=src $PY -m brainvq.cli run --data "$DATA" --run "$OUT/after" --quiet $budget --tune.max_minutes 0
rm -rf "$OUT/tune-before" "$OUT/tune-after"
cp -r "$OUT/before" "$OUT/tune-before"
cp -r "$OUT/after" "$OUT/tune-after"
PYTHONPATH="$OUT/old-src/src" $PY -c "
from brainvq.decoder_tuning import tune_decoder
r = tune_decoder('$OUT/tune-before', 'maskgit', minutes=0, max_steps=200, progress=False)
print('before: tuned test SSIM %.4f (VQ-VAE decoder %.4f)' % (r['test_ssim_tuned'], r['test_ssim_vqvae']))"
PYTHONPATH=src $PY -c "
from brainvq.config import TuneConfig
from brainvq.training.decoder import tune_decoder
r = tune_decoder('$OUT/tune-after', 'maskgit', TuneConfig(max_minutes=0, max_steps=200), progress=False)
print('after:  tuned test SSIM %.4f (VQ-VAE decoder %.4f)' % (r['test_ssim_tuned'], r['test_ssim_vqvae']))"
$PY - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
a = json.load(open(f"{out}/before/metrics.json"))
b = json.load(open(f"{out}/after/metrics.json"))
def leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
old, new = dict(leaves(a)), dict(leaves(b))
timed = ("samples_per_second",)
for key in sorted(set(old) | set(new)):
    x, y = old.get(key), new.get(key)
    if key.endswith(timed):
        continue
    same = isinstance(x, (int, float)) and isinstance(y, (int, float)) and round(x, 3) == round(y, 3)
    print(f"{'same' if same or x == y else 'DIFF'}  {key}: {x} -> {y}")
EOF
