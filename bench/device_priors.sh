#!/usr/bin/env bash
# The prior variants of bench/results/prior_dcgan.md ("image discriminator" section), trained
# concurrently on one lent GPU machine by bench/device_prior_variant.py.
#
# Prepare here (the device machine has torch and lightning but not tomli_w or nibabel, and sees
# only the repository, so data, base run and wheels travel in the ignored .devdata/):
#   mkdir -p .devdata/run/codes .devdata/whl
#   cp -r ../shared/data/brain-mri-128 .devdata/
#   cp runs/priors-bench/{vqvae.safetensors,config.toml} .devdata/run/
#   cp runs/priors-bench/codes/*.npy .devdata/run/codes/
#   echo '{"data": ".devdata/brain-mri-128", "sizes": {"train": 818, "validate": 47, "test": 95}}' \
#     > .devdata/run/data.json
#   pip download --no-deps --only-binary=:all: -d .devdata/whl tomli_w nibabel
# Then with the device tool: run `bash bench/device_priors.sh [set]` carrying .devdata.
# set "six" (default): four DCGAN discriminator variants and two MaskGIT sizes at once, 5 min;
# set "alone [MINUTES]": the chosen DCGAN (the defaults) alone on the GPU for 7.5 min unless given
# (it was still improving at 3.2: 0.763 realism after 1874 iterations, 0.808 after 3813), with
# samples and weights kept at 3.2, 5 and 6.5 minutes on the way (--snapshots). The whole call must
# end inside the device's 600 s per command: 7.5 min of training plus three resumes (each rebuilds
# the trainer and reloads the checkpoint) and the sampling; not yet timed on a GPU, so pass a
# timeout_s of 600 and read the wall times it prints. Score what comes back with
#   python bench/score_device_samples.py OUT/p5.tar --results bench/results/prior_dcgan.md
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .devdata/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
run() { n=$1; shift; timeout 590 python3 bench/device_prior_variant.py "$n" "$@" >"/tmp/$n.log" 2>&1 & }
old="prior.dcgan.minibatch_std=true"  # stated in full: these were not yet the defaults then
if [ "${1:-six}" = six ]; then
  run p1 dcgan 5 $old prior.dcgan.d_input=image prior.dcgan.d_augment=true
  run p2 dcgan 5 $old prior.dcgan.d_input=both prior.dcgan.d_augment=true
  run p3 dcgan 5 $old prior.dcgan.d_input=codes prior.dcgan.d_augment=false
  run p4 dcgan 5 $old prior.dcgan.d_input=image prior.dcgan.d_augment=true prior.batch_size=128
  run m1 maskgit 5 prior.maskgit.dim=256 prior.maskgit.layers=6 prior.maskgit.heads=8 \
    prior.maskgit.dropout=0.1 prior.batch_size=32 prior.maskgit.lr=5e-4 prior.maskgit.warmup_steps=200
  run m2 maskgit 5 prior.maskgit.dropout=0.1 prior.batch_size=32
else
  run p5 dcgan "${2:-7.5}" $old prior.dcgan.d_input=both prior.dcgan.d_augment=true --snapshots 3.2,5,6.5
fi
wait
for f in /tmp/p?.log /tmp/m?.log; do
  [ -e "$f" ] && { echo "== $f"; grep -v -i "warn\|^\s*$" "$f" | tail -4; }
done
ls -la "$OUT"
