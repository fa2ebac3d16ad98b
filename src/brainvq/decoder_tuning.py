"""Tune a copy of the VQ-VAE decoder to the slips of a MaskGIT prior.

A prior's samples differ from real code maps mostly by local slips: a code here and there that
fits its neighbours less well than the real one would, which the decoder, trained on real maps
only, turns into blotchy texture. This stage shows the decoder what such slips look like: each
training map gets a random share of its codes (up to ``max_share``) redrawn by the prior given the
rest (one pass of the MaskGIT network, ``MaskedCodeTransformer.redraw``), and a copy of the
decoder learns to map the slipped map back to the real slice (mean squared error plus the SSIM
term of VQ-VAE training), alongside the unslipped maps so that reconstructions stay as they were.
The encoder and codebook are untouched, so the code maps, the priors and every reconstruction
measure stay valid; the tuned decoder, RUN/decoder-<kind>.safetensors, is used only to decode
that prior's samples, and only while the prior it was tuned on is the run's current one.

Tuning is resumable: the slipped maps go to RUN/state/decoder-<kind>/slipped.safetensors once
drawn, and the decoder, Adam's moments, the random state, the steps and seconds so far to
tuning.safetensors beside it every ``checkpoint_seconds`` (and on Ctrl-C); a later call with the
same prior and settings goes on from there within the same budget, and a finished tuning removes
both.

API::

    from brainvq.decoder_tuning import tune_decoder, tuned_vqvae
    summary = tune_decoder("runs/oasis", "maskgit", minutes=8)
    vq = tuned_vqvae(run, "maskgit") or run.vqvae   # what sample_images decodes with
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tqdm.auto import tqdm

from brainvq.codes import code_maps
from brainvq.data import load_splits
from brainvq.errors import RunError
from brainvq.evaluate import run_data_root
from brainvq.metrics import ssim_reference
from brainvq.nn.vqvae import VQVAE, image_loss
from brainvq.priors import categorical_picker, load_prior, prior_path
from brainvq.runs import Run, RunDir, atomic_save_safetensors, atomic_write_text, load_run
from brainvq.sample_metrics import mean_pairwise_ssim

TUNABLE_KINDS = ("maskgit",)  # priors that can redraw codes given the rest of the map
# A tuned decoder is kept only if the prior's samples decoded with it are at most this much more
# alike (mean pairwise SSIM) than with the VQ-VAE's decoder: a decoder tuned to a weak prior's
# slips can learn to ignore codes and draw one average slice, which looks "realistic" to NN-SSIM
# while every sample is the same (seen on the quick demo: diversity 0.60 -> 0.996). 0.05 is the
# diversity tolerance the sample measures use.
MAX_DIVERSITY_RISE = 0.05
CHECKPOINT_SECONDS = 30.0  # how often an unfinished tuning is saved for resuming


def decoder_path(run: RunDir, kind: str) -> Path:
    """RUN/decoder-<kind>.safetensors: the decoder tuned to that prior's samples."""
    return run.path / f"decoder-{kind}.safetensors"


def refusal_path(run: RunDir, kind: str) -> Path:
    """RUN/decoder-<kind>.refused.json: a tuning that was not kept, and for which prior."""
    return run.path / f"decoder-{kind}.refused.json"


def tuning_state_path(run: RunDir, kind: str) -> Path:
    """RUN/state/decoder-<kind>/tuning.safetensors: an unfinished tuning, to resume from (the
    slipped maps it tunes on lie beside it in slipped.safetensors)."""
    return run.stage_state(f"decoder-{kind}") / "tuning.safetensors"


def _slipped_path(state_path: Path) -> Path:
    return state_path.with_name("slipped.safetensors")


def _new_tuner(run: Run, lr: float, seed: int):
    """A trainable copy of the run's decoder (inside a VQ-VAE copy), its Adam, and the generator."""
    vq = copy.deepcopy(run.vqvae).float()
    vq.requires_grad_(False)
    vq.decoder.requires_grad_(True).train()
    return vq, torch.optim.Adam(vq.decoder.parameters(), lr=lr), torch.Generator().manual_seed(seed)


def _save_slipped(state_path: Path, settings: dict, pool: torch.Tensor) -> None:
    small = pool.max() < 2**15  # int16 holds any codebook up to 32768 codes
    state_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"settings": json.dumps(settings, sort_keys=True)}
    tensors = {"pool": pool.to(torch.int16 if small else torch.int32)}
    atomic_save_safetensors(tensors, _slipped_path(state_path), meta)


def _save_tuning(state_path: Path, settings: dict, vq: VQVAE, opt, gen, steps, seconds) -> None:
    tensors = {f"decoder.{k}": v for k, v in vq.decoder.state_dict().items()}
    for i, slots in opt.state_dict()["state"].items():
        tensors.update({f"opt.{i}.{name}": v for name, v in slots.items()})
    tensors["generator"] = gen.get_state()
    meta = {"settings": json.dumps(settings, sort_keys=True), "steps": steps, "seconds": seconds}
    atomic_save_safetensors(tensors, state_path, meta)


def _load_tuning(state_path: Path, settings: dict, vq: VQVAE, opt, gen) -> tuple | None:
    """Restore an unfinished tuning into vq's decoder, opt and gen: (pool, steps, seconds), or
    None when there is none for these settings (another prior, share, seed ...) or it cannot be
    read, and then vq, opt and gen may be half restored: build new ones."""
    files = (state_path, _slipped_path(state_path))
    if not all(f.exists() for f in files):
        return None
    want = json.dumps(settings, sort_keys=True)
    try:
        metas = []
        for f in files:
            with safe_open(str(f), framework="pt") as h:
                metas.append(h.metadata() or {})
        if any(m.get("settings") != want for m in metas):
            return None
        state = load_file(str(state_path))
        vq.decoder.load_state_dict(
            {k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.")}
        )
        opt_state = opt.state_dict()
        slots: dict[int, dict] = {}
        for k, v in state.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                slots.setdefault(int(i), {})[name] = v
        opt_state["state"] = slots
        opt.load_state_dict(opt_state)
        gen.set_state(state["generator"])
        pool = load_file(str(files[1]))["pool"].long()
        return pool, int(metas[0]["steps"]), float(metas[0]["seconds"])
    except Exception as e:  # any unreadable state (safetensors has its own error type)
        warnings.warn(f"{state_path}: unreadable ({e}); decoder tuning starts over", stacklevel=2)
        return None


def _clear_tuning(state_path: Path) -> None:
    for f in (state_path, _slipped_path(state_path)):
        f.unlink(missing_ok=True)


def tuning_refused(run: RunDir, kind: str) -> bool:
    """True when a tuning to the run's current ``kind`` prior was tried and not kept, so that
    `brainvq run` does not spend its budget again on the same prior."""
    path = refusal_path(run, kind)
    if not path.exists():
        return False
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return _is_current_prior(run, kind, record.get("prior_sha256"))


def _is_current_prior(run: RunDir, kind: str, sha256: str | None) -> bool:
    """True when sha256 is the digest of the run's current ``kind`` prior file."""
    prior_file = prior_path(run, kind)
    return prior_file.exists() and sha256 == file_digest(prior_file)


def file_digest(path: Path) -> str:
    """SHA-256 of a file: ties a tuned decoder to the prior weights it was tuned on."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@torch.no_grad()
def slip_codes(
    prior, codes: torch.Tensor, max_share: float, generator: torch.Generator, batch_size: int = 128
) -> torch.Tensor:
    """codes (N, h, w) with a random share in [0, max_share) of each map redrawn by the prior."""
    pick = categorical_picker(1.0, 0, generator)
    out = []
    for i in range(0, len(codes), batch_size):
        c = codes[i : i + batch_size]
        share = torch.rand(len(c), 1, 1, generator=generator) * max_share
        hidden = torch.rand(c.shape, generator=generator) < share
        out.append(prior.net.redraw(c, hidden, pick))
    return torch.cat(out)


def _tune_loss(vq: VQVAE, codes: torch.Tensor, x: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """The VQ-VAE's image loss of decoding code maps (B, h, w) against slices x (B, 1, H, W)."""
    return image_loss(vq.decode_latents(vq.quantizer.lookup(codes)), x, ssim_weight)[0]


def tune_decoder(
    run_path: str,
    kind: str = "maskgit",
    minutes: float = 8.0,
    max_share: float = 0.5,
    variants: int = 3,
    lr: float = 2e-4,
    batch_size: int = 16,
    seed: int = 0,
    max_steps: int = 0,
    data: str | None = None,
    progress: bool = True,
    check_samples: int = 16,
    fresh: bool = False,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> dict:
    """Tune a copy of the run's decoder to ``kind``'s slips; write RUN/decoder-<kind>.safetensors.

    ``variants`` slipped copies of the training maps are drawn once; each step takes
    ``batch_size`` (map, slice) pairs, a map being one of the copies or the real map. Stops after
    ``minutes`` of tuning or ``max_steps`` steps (0 = no limit), whichever comes first. Returns
    the steps, seconds, and test reconstruction SSIM of both decoders on the real test maps, and
    the mean pairwise SSIM of ``check_samples`` prior samples decoded by each; the tuned decoder
    is written only if that rises by at most MAX_DIVERSITY_RISE (``kept``).

    An unfinished tuning of the same prior with the same settings is resumed (``resumed_at``:
    its steps; 0 = started afresh) unless ``fresh``; ``minutes`` and ``max_steps`` count what it
    had done."""
    if kind not in TUNABLE_KINDS:
        raise RunError(
            f"prior kind {kind!r}: decoder tuning needs a prior that redraws codes given the "
            f"rest of the map ({', '.join(TUNABLE_KINDS)})"
        )
    if not 0 < max_share <= 1:
        raise RunError(f"max_share = {max_share}: must be in (0, 1]")
    if minutes <= 0 and max_steps <= 0:
        raise RunError("give a time budget (minutes > 0) or a number of steps (max_steps > 0)")
    run = load_run(run_path)
    run.dir.ensure_writable()
    prior = load_prior(run, kind)
    root = run_data_root(run, data)
    maps = code_maps(run, root)
    arrays = load_splits(root, run.config.data, progress=False)
    real = torch.from_numpy(np.asarray(maps["train"])).long()
    images = torch.from_numpy(np.asarray(arrays["train"], dtype=np.float32) / 255.0)[:, None]
    settings = {
        "prior_sha256": file_digest(prior_path(run.dir, kind)),
        "maps": len(real),
        "max_share": max_share,
        "variants": variants,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
    }
    state_path = tuning_state_path(run.dir, kind)
    if fresh:
        _clear_tuning(state_path)
    t0 = time.perf_counter()
    vq, opt, gen = _new_tuner(run, lr, seed)
    restored = _load_tuning(state_path, settings, vq, opt, gen)
    if restored:
        pool, steps, spent = restored
    else:
        vq, opt, gen = _new_tuner(run, lr, seed)
        pool = torch.stack(
            [real] + [slip_codes(prior, real, max_share, gen) for _ in range(variants)]
        )
        steps, spent = 0, 0.0
    resumed_at = steps
    slip_seconds = time.perf_counter() - t0

    def save() -> None:
        seconds = spent + time.perf_counter() - t1
        _save_tuning(state_path, settings, vq, opt, gen, steps, seconds)

    ssim_weight = run.config.train.ssim_loss_weight
    t1 = last_save = time.perf_counter()
    if not restored:  # the slipped maps cost minutes on a large prior: keep them at once
        _save_slipped(state_path, settings, pool)
        save()
    bar = tqdm(
        total=max_steps or None,
        initial=steps,
        desc=f"tuning decoder to {kind}",
        disable=not progress,
    )
    try:
        while (not max_steps or steps < max_steps) and (
            minutes <= 0 or spent + time.perf_counter() - t1 < minutes * 60
        ):
            idx = torch.randint(len(real), (batch_size,), generator=gen)
            which = torch.randint(len(pool), (batch_size,), generator=gen)
            loss = _tune_loss(vq, pool[which, idx], images[idx], ssim_weight)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite decoder tuning loss at step {steps}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            if time.perf_counter() - last_save >= checkpoint_seconds:
                save()
                last_save = time.perf_counter()
    except KeyboardInterrupt:
        save()
        raise
    bar.close()
    tune_seconds = spent + time.perf_counter() - t1
    vq.eval()
    alike_vqvae, alike_tuned = sample_alikeness(prior, [run.vqvae, vq], check_samples, seed)
    kept = alike_tuned - alike_vqvae <= MAX_DIVERSITY_RISE
    meta = {
        "kind": f"decoder-{kind}",
        "prior_sha256": settings["prior_sha256"],
        "steps": str(steps),
        "max_share": str(max_share),
    }
    if kept:
        atomic_save_safetensors(vq.decoder.state_dict(), decoder_path(run.dir, kind), meta)
        refusal_path(run.dir, kind).unlink(missing_ok=True)
    else:
        record = {"prior_sha256": meta["prior_sha256"]}
        record.update(samples_alike_vqvae=alike_vqvae, samples_alike_tuned=alike_tuned)
        atomic_write_text(refusal_path(run.dir, kind), json.dumps(record))
    _clear_tuning(state_path)
    test = np.asarray(arrays["test"], dtype=np.float32) / 255.0
    test_maps = torch.from_numpy(np.asarray(maps["test"])).long()
    return {
        "kind": kind,
        "steps": steps,
        "resumed_at": resumed_at,
        "slip_seconds": slip_seconds,
        "tune_seconds": tune_seconds,
        "slipped_share": float((pool[1:] != real).float().mean()) if variants else 0.0,
        "test_ssim_vqvae": _recon_ssim(run.vqvae, test_maps, test),
        "test_ssim_tuned": _recon_ssim(vq, test_maps, test),
        "samples_alike_vqvae": alike_vqvae,
        "samples_alike_tuned": alike_tuned,
        "kept": kept,
        "path": str(decoder_path(run.dir, kind)),
    }


@torch.no_grad()
def sample_alikeness(prior, decoders: list[VQVAE], n: int = 16, seed: int = 0) -> list[float]:
    """Mean pairwise SSIM of the same n prior samples (seeded, at the prior's own temperature)
    decoded by each decoder: higher means the samples look more alike."""
    temperature, top_k = getattr(prior, "sampling", (1.0, 0))
    codes = prior.sample(max(n, 2), seed=seed, temperature=temperature, top_k=top_k)
    return [mean_pairwise_ssim(vq.decode(codes)) for vq in decoders]


@torch.no_grad()
def _recon_ssim(vq: VQVAE, maps: torch.Tensor, images: np.ndarray, batch_size: int = 64) -> float:
    recons = vq.decode(maps, batch_size)[:, 0].numpy()
    return float(np.mean([ssim_reference(images[i], recons[i]) for i in range(len(images))]))


def tuned_decoder_is_current(run: RunDir, kind: str) -> bool:
    """True when RUN/decoder-<kind>.safetensors exists and was tuned on the run's current prior."""
    path = decoder_path(run, kind)
    if not path.exists():
        return False
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return _is_current_prior(run, kind, meta.get("prior_sha256"))


def tuned_vqvae(run: Run, kind: str) -> VQVAE | None:
    """The run's VQ-VAE with the decoder tuned to ``kind``, or None if there is none.

    A tuned decoder whose prior has since been retrained is ignored, with a warning."""
    path = decoder_path(run.dir, kind)
    if not path.exists():
        return None
    if not tuned_decoder_is_current(run.dir, kind):
        prior_file = prior_path(run.dir, kind)
        warnings.warn(
            f"{path}: tuned to another {kind} prior than {prior_file}; decoding with the "
            "VQ-VAE's own decoder (rerun `brainvq tune-decoder`)",
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
