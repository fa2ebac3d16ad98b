"""Where a slice departs from what a run has learned: anomaly maps by healing.

The method of Pinaya et al. (MIDL 2021; Medical Image Analysis 79, 2022), with a run's VQ-VAE and
priors. A slice is encoded into a code map; the prior says how likely each code is; the codes it
finds unlikely (probability below ``threshold``) are drawn anew by the prior, "healing" the map;
the healed map is decoded. Where the slice and its healed version differ, inside the (smoothed)
region of redrawn codes, is the anomaly map: high where the slice holds something the run never
saw in healthy brains. Each slice also gets one anomaly score, set beside the scores of the run's
own real test slices: above their 99th percentile is flagged.

Detection and healing (``AnomalySettings``, made from the config's ``[anomaly]`` section,
brainvq.config.AnomalyConfig; the defaults are measured in bench/results/anomaly.md):

- ``detect="transformer"`` (default): the raster-order transformer reads the codes in order; a code
  less likely than ``threshold`` given the codes before it, as healed so far, is redrawn there
  and then (``CodeTransformer.heal``: one cached pass).
- ``detect="maskgit"``: MaskGIT scores each code given the codes around it (four passes, each
  hiding a quarter of the map); a run without a transformer can use it.
- ``heal="transformer"`` redraws as above (raster order, only the codes before are seen);
  ``heal="maskgit"`` hides the flagged codes and lets MaskGIT fill them in a few parallel steps
  given the codes on every side.

Draws are seeded per code position (one uniform number per position, the same for every slice),
so a slice heals the same way alone or in a folder, and under the same seed, every time.

    from brainvq.runs import load_run
    from brainvq.applications.anomaly import anomaly_maps
    scores, maps, healed = anomaly_maps(load_run("runs/oasis"), images)   # images (B, 1, S, S)

`brainvq anomaly`'s files (panels, maps, scores.csv) and the report's section:
brainvq.applications.anomaly_files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from brainvq.config import ANOMALY_PRIORS, ANOMALY_THRESHOLD, AnomalyConfig
from brainvq.data import load_splits
from brainvq.errors import DataError, RunError
from brainvq.io import atomic_write_text, file_digest
from brainvq.metrics import as_images
from brainvq.priors import load_prior, prior_path, trained_kinds
from brainvq.progress import Progress
from brainvq.runs import Run, RunDir

FLAG_PERCENTILE = 99.0  # a slice scoring above this percentile of the real test slices is flagged
KINDS = ANOMALY_PRIORS


_DEFAULT = AnomalyConfig()  # the [anomaly] section's defaults


@dataclass(frozen=True)
class AnomalySettings:
    """How anomaly maps are made (the [anomaly] section, brainvq.config.AnomalyConfig, with the
    detecting and healing priors and the threshold decided); the defaults: the transformer's."""

    detect: str = "transformer"
    heal: str = "transformer"
    threshold: float = ANOMALY_THRESHOLD["transformer"]
    temperature: float = _DEFAULT.temperature
    maskgit_steps: int = _DEFAULT.maskgit_steps
    maskgit_block: int = _DEFAULT.maskgit_block
    sigma: float = _DEFAULT.sigma
    top_share: float = _DEFAULT.top_share
    seed: int = _DEFAULT.seed

    def priors(self) -> set[str]:
        """The prior kinds these settings use."""
        return {self.detect, self.heal}

    def check(self) -> AnomalySettings:
        """Raise RunError for a value that would fail later; return self."""
        for name in ("detect", "heal"):
            if getattr(self, name) not in KINDS:
                raise RunError(
                    f"anomaly {name} = {getattr(self, name)!r}: use transformer or maskgit"
                )
        if not 0 <= self.threshold <= 1 or self.temperature < 0 or not 0 < self.top_share <= 1:
            raise RunError(
                f"anomaly settings {self}: threshold and top_share in [0, 1], temperature >= 0"
            )
        return self


def settings_for(
    kind: str | None, run_dir: RunDir, section: AnomalyConfig | None = None
) -> AnomalySettings:
    """The settings for ``kind`` ("transformer", "maskgit" or None = anomaly.detect, else the best
    the run holds) from the config's [anomaly] ``section`` (default: the defaults): a RunError
    naming the command that trains what is missing."""
    have = trained_kinds(run_dir)
    s = section or AnomalyConfig()
    kind = kind or s.detect or None
    if kind is None:
        kind = "transformer" if "transformer" in have or "maskgit" not in have else "maskgit"
    if kind not in KINDS:
        raise RunError(f"--kind {kind}: anomaly maps need a transformer or maskgit prior")
    values = {f.name: getattr(s, f.name) for f in dataclasses.fields(AnomalySettings)}
    values |= {"detect": kind, "heal": s.heal or kind}
    values["threshold"] = s.threshold or ANOMALY_THRESHOLD[kind]
    settings = AnomalySettings(**values)
    missing = sorted(settings.priors() - set(have))
    if missing:
        raise RunError(
            f"{run_dir.path}: no trained {missing[0]} prior, which anomaly maps need; run "
            f"`brainvq train-prior --run {run_dir.path} --kind {missing[0]}` first"
        )
    return settings


# MaskGIT's pseudo-likelihoods have a heavier tail (brainvq.config.ANOMALY_THRESHOLD)
MASKGIT_ONLY = AnomalySettings("maskgit", "maskgit", ANOMALY_THRESHOLD["maskgit"])


def place_picker(seed: int, temperature: float, length: int):
    """pick(logits (m, K), positions (m,)) -> codes (m,): a categorical draw at ``temperature``
    (0 = the likeliest code) from one seeded uniform number per code position, the same for every
    map, so that a map's draws depend on its own logits only."""
    u = torch.rand(length, generator=torch.Generator().manual_seed(int(seed)))

    def pick(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if temperature == 0:
            return logits.argmax(-1)
        cdf = (logits.float() / temperature).softmax(-1).cumsum(-1)
        v = u.to(cdf.device)[positions.to(cdf.device)][:, None] * cdf[:, -1:]
        return torch.searchsorted(cdf, v).squeeze(1).clamp_max(cdf.shape[1] - 1)

    return pick


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x (B, 1, H, W) smoothed by a Gaussian of ``sigma`` pixels (reflected at the edges)."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(x.device, x.dtype)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def redrawn_region(redrawn: torch.Tensor, size: int) -> torch.Tensor:
    """The code-level mask of redrawn codes (B, h, w) as pixel weights (B, 1, S, S) in [0, 1]:
    each code's square, its edges smoothed over half a code."""
    scale = size // redrawn.shape[-1]
    m = F.interpolate(redrawn.float()[:, None], scale_factor=scale, mode="nearest")
    return gaussian_blur(m, scale / 2).clamp(0, 1)


def anomaly_map(x: torch.Tensor, healed: torch.Tensor, redrawn: torch.Tensor, sigma: float):
    """|x - healed| smoothed by ``sigma`` px, weighted by the redrawn region: (B, S, S)."""
    residual = gaussian_blur((x.float() - healed.float()).abs(), sigma)
    return (residual * redrawn_region(redrawn, x.shape[-1]))[:, 0]


def slice_scores(maps: torch.Tensor, top_share: float) -> torch.Tensor:
    """One score per map (B, S, S): the mean of its highest ``top_share`` of pixels."""
    flat = maps.reshape(len(maps), -1)
    k = max(1, int(round(top_share * flat.shape[1])))
    return flat.topk(k, dim=1).values.mean(1)


@torch.no_grad()
def heal(run: Run, priors: dict, x: torch.Tensor, settings: AnomalySettings) -> dict:
    """One batch x (B, 1, S, S) in [0, 1] encoded, scored and healed: a dict of "codes",
    "healed_codes", "redrawn" (bool) and "log_p" (ln p of each code as the detector saw it),
    all (B, h, w), and "recon" and "healed" images (B, 1, S, S)."""
    s = settings
    codes = run.vqvae.encode(x)
    pick = place_picker(s.seed, s.temperature, codes.shape[1] * codes.shape[2])
    if s.detect == "transformer":
        healed_codes, redrawn, log_p = priors["transformer"].net.heal(codes, s.threshold, pick)
    else:
        log_p = priors["maskgit"].net.code_log_probs(codes, s.maskgit_block)
        redrawn = log_p < (math.log(s.threshold) if s.threshold > 0 else -math.inf)
        healed_codes = codes
    if s.heal == "maskgit":
        healed_codes = priors["maskgit"].net.fill(codes, redrawn, pick, s.maskgit_steps)
    elif s.detect != "transformer":
        raise RunError("anomaly heal = transformer needs detect = transformer")
    return {
        "codes": codes,
        "healed_codes": healed_codes.cpu(),
        "redrawn": redrawn.cpu(),
        "log_p": log_p.cpu(),
        "recon": run.vqvae.decode(codes),
        "healed": run.vqvae.decode(healed_codes),
    }


def load_priors(run: Run, settings: AnomalySettings) -> dict:
    """The priors the settings use, by kind."""
    return {kind: load_prior(run, kind) for kind in sorted(settings.priors())}


def anomaly_maps(
    run: Run,
    images,
    settings: AnomalySettings | None = None,
    batch_size: int = 0,
    progress: bool = False,
    priors: dict | None = None,
    desc: str = "anomaly maps",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anomaly scores (N,), maps (N, S, S) float32 (higher = more anomalous) and healed slices
    (N, S, S) float32 in [0, 1] of ``images``: float (N, 1, S, S) or (N, S, S) in [0, 1], or
    uint8 (N, S, S), at the run's data.image_size. ``settings`` default: the best the run holds
    (settings_for)."""
    settings = (settings or settings_for(None, run.dir)).check()
    x = as_images(images)
    size = run.config.data.image_size
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[-2:] != (size, size):
        raise DataError(
            f"images of shape {tuple(x.shape)}: this run takes (N, 1, {size}, {size}) in [0, 1]"
        )
    priors = priors or load_priors(run, settings)
    batch_size = batch_size or run.config.eval.batch_size
    scores, maps, healed = [], [], []
    with Progress(len(x), desc, "slice", enabled=progress) as bar:
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            out = heal(run, priors, xb, settings)
            m = anomaly_map(xb, out["healed"], out["redrawn"], settings.sigma)
            scores.append(slice_scores(m, settings.top_share))
            maps.append(m)
            healed.append(out["healed"][:, 0])
            bar.update(len(xb))
    return (
        torch.cat(scores).numpy(),
        torch.cat(maps).float().numpy(),
        torch.cat(healed).float().numpy(),
    )


# ---- the run's own test slices as the reference ------------------------------------------------


def _reference_key(run: Run, settings: AnomalySettings, test: np.ndarray) -> str:
    h = hashlib.sha256(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode())
    h.update(file_digest(run.dir.vqvae).encode())
    for kind in sorted(settings.priors()):
        h.update(file_digest(prior_path(run.dir, kind)).encode())
    h.update(np.ascontiguousarray(test).tobytes())
    return h.hexdigest()[:20]


def test_reference(
    run: Run,
    settings: AnomalySettings,
    data: str | None = None,
    priors: dict | None = None,
    progress: bool = False,
) -> dict | None:
    """The anomaly scores of the run's real test slices, with their FLAG_PERCENTILE-th percentile
    ("limit") and the 99th percentile of their map pixels ("map_scale"); kept in
    RUN/anomaly/reference-<key>.json (keyed by settings, weights and slices). None when the run's
    data is not at hand."""
    try:
        test = load_splits(run.data_root(data), run.config.data, progress=False)["test"]
    except (RunError, DataError):
        return None
    if len(test) == 0:
        return None
    key = _reference_key(run, settings, test)
    path = run.dir.path / "anomaly" / f"reference-{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    desc = "reference: the run's test slices"
    scores, maps, _ = anomaly_maps(run, test, settings, 0, progress, priors, desc)
    ref = {
        "n": len(scores),
        "scores": [round(float(s), 6) for s in scores],
        "limit": float(np.percentile(scores, FLAG_PERCENTILE)),
        "map_scale": float(max(np.percentile(maps, 99.9), 1e-6)),
        "settings": dataclasses.asdict(settings),
    }
    atomic_write_text(path, json.dumps(ref) + "\n")
    return ref
