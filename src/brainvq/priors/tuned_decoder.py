"""A decoder tuned to one prior's samples, as the run folder keeps it.

`brainvq tune-decoder` (brainvq.training.decoder) writes RUN/decoder-<kind>.safetensors: a copy of
the VQ-VAE decoder tuned to the slips of that prior, with the SHA-256 of the prior's weight file
in its metadata. It decodes that prior's samples only while that prior is the run's current one.
A tuning that was not kept is recorded in RUN/decoder-<kind>.refused.json (with the prior's
SHA-256), so that `brainvq run` does not spend its budget again on the same prior.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from brainvq.config import kinds_with
from brainvq.errors import RunError
from brainvq.io import file_digest
from brainvq.nn.vqvae import VQVAE
from brainvq.priors.registry import prior_path
from brainvq.runs import Run, RunDir

# priors that can redraw codes given the rest of the map (their spec's variations)
TUNABLE_KINDS = kinds_with(variations=True)


def decoder_path(run: RunDir, kind: str) -> Path:
    """RUN/decoder-<kind>.safetensors: the decoder tuned to that prior's samples."""
    return run.path / f"decoder-{kind}.safetensors"


def refusal_path(run: RunDir, kind: str) -> Path:
    """RUN/decoder-<kind>.refused.json: a tuning that was not kept, and for which prior."""
    return run.path / f"decoder-{kind}.refused.json"


def is_current_prior(run: RunDir, kind: str, sha256: str | None) -> bool:
    """True when sha256 is the digest of the run's current ``kind`` prior file."""
    prior_file = prior_path(run, kind)
    return prior_file.exists() and sha256 == file_digest(prior_file)


def tuning_refused(run: RunDir, kind: str) -> bool:
    """True when a tuning to the run's current ``kind`` prior was tried and not kept."""
    path = refusal_path(run, kind)
    if not path.exists():
        return False
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return is_current_prior(run, kind, record.get("prior_sha256"))


def tuned_decoder_is_current(run: RunDir, kind: str) -> bool:
    """True when RUN/decoder-<kind>.safetensors exists and was tuned on the run's current prior."""
    path = decoder_path(run, kind)
    if not path.exists():
        return False
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return is_current_prior(run, kind, meta.get("prior_sha256"))


def tuned_vqvae(run: Run, kind: str) -> VQVAE | None:
    """The run's VQ-VAE with the decoder tuned to ``kind``, or None if there is none.

    A tuned decoder whose prior has since been retrained is ignored, with a warning."""
    path = decoder_path(run.dir, kind)
    if not path.exists() or tuning_refused(run.dir, kind):  # a dropped tuning is never used
        return None
    if not tuned_decoder_is_current(run.dir, kind):
        warnings.warn(
            f"{path}: tuned to another {kind} prior than {prior_path(run.dir, kind)}; decoding "
            "with the VQ-VAE's own decoder (rerun `brainvq tune-decoder`)",
            stacklevel=2,
        )
        return None
    vq = copy.deepcopy(run.vqvae)
    try:
        vq.decoder.load_state_dict(load_file(str(path)))
    except RuntimeError:
        raise RunError(
            f"{path}: does not fit the run's decoder; rerun `brainvq tune-decoder`"
        ) from None
    return vq.eval()
