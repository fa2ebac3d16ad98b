#!/usr/bin/env bash
# Did a refactor change behaviour? The same fixed-step `brainvq run` (VQ-VAE, maskgit prior, decoder
# tuning, 64 samples, evaluate) from the code at BEFORE (a commit) and from this checkout, on the
# same data, in fp32 with fixed step budgets (no minutes), then every number of the two metrics.json
# compared to 3 decimals (timings left out). A side whose metrics.json exists is not run again, so
# the BEFORE side can run first (ONLY=before) and the other after the change.
# About 6-8 minutes a side on 2 cores at 64 px.
# Usage: bash bench/parity.sh BEFORE [DATA] [OUT]
#   e.g. bash bench/parity.sh bcf5dfa ../shared/data/brain-mri-128 runs/parity
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:?usage: bash bench/parity.sh BEFORE [DATA] [OUT]}
DATA=${2:-../shared/data/brain-mri-128}
OUT=${3:-runs/parity}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
[ -d "$OUT/before-src" ] || git worktree add -f --detach "$OUT/before-src" "$BEFORE" >/dev/null
budget=(--data.image_size 64 --max-steps 150 --max-minutes 0 --train.precision 32 --quiet)
side() {  # side NAME SRC
  if [ -f "$OUT/$1/metrics.json" ]; then echo "$1: reused $OUT/$1/metrics.json"; return; fi
  BRAINVQ_CACHE="$OUT/cache-$1" PYTHONPATH="$2" $PY -m brainvq.cli run --data "$DATA" \
    --run "$OUT/$1" "${budget[@]}" --fresh
}
side before "$OUT/before-src/src"
[ "${ONLY:-}" = before ] && exit 0  # ONLY=before: run the BEFORE side now, the rest later
side after src
$PY - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
a = json.load(open(f"{out}/before/metrics.json"))
b = json.load(open(f"{out}/after/metrics.json"))
def leaves(d, prefix=""):
    for k, v in (d.items() if isinstance(d, dict) else enumerate(d)):
        if isinstance(v, (dict, list)):
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
old, new = dict(leaves(a)), dict(leaves(b))
timed = ("second", "per_s", "minutes", "time")
diff = same = 0
for key in sorted(set(old) | set(new)):
    x, y = old.get(key), new.get(key)
    if any(t in key for t in timed):
        continue
    if isinstance(x, str):  # paths name the side's own run folder
        x = x.replace(f"{out}/before/", f"{out}/after/")
    num = isinstance(x, (int, float)) and isinstance(y, (int, float))
    if x == y or (num and round(x, 3) == round(y, 3)):
        same += 1
    else:
        diff += 1
        print(f"DIFF  {key}: {x} -> {y}")
def rows(side):  # the samples' manifest, its paths made relative to the run
    text = open(f"{out}/{side}/samples/manifest.csv").read()
    return text.replace(f"{out}/{side}/", "")
if rows("before") == rows("after"):
    same += 1
else:
    diff += 1
    print("DIFF  samples/manifest.csv")
print(f"{same} values (and the manifest) equal to 3 decimals, {diff} differ (timings left out)")
sys.exit(1 if diff else 0)
PYEOF
