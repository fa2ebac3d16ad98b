"""The decoder-tuning stage: a copy of the VQ-VAE decoder tuned to the slips of a MaskGIT prior.

A prior's samples differ from real code maps mostly by local slips: a code here and there that
fits its neighbours less well than the real one would, which the decoder, trained on real maps
only, turns into blotchy texture. This stage shows the decoder what such slips look like: each
training map gets a random share of its codes (up to ``tune.max_share``) redrawn by the prior
given the rest (one pass of the MaskGIT network, ``MaskedCodeTransformer.redraw``), and a copy of
the decoder learns to map the slipped map back to the real slice (the VQ-VAE's image loss),
alongside the unslipped maps so that reconstructions stay as they were. The encoder and codebook
are untouched, so the code maps, the priors and every reconstruction measure stay valid; the tuned
decoder, RUN/decoder-<kind>.safetensors, is used only to decode that prior's samples, and only
while the prior it was tuned on is the run's current one (brainvq.priors.tuned_decoder).

With tune.adversarial_weight > 0 the decoder also keeps learning against a patch discriminator
(VQGAN's adversarial loss and adaptive weight, brainvq.nn.patchgan), which starts from the VQ-VAE
stage's discriminator where that stage trained one (vqvae.adversarial_weight), so that the tuned
decoder keeps the texture an adversarial VQ-VAE learnt instead of drifting back to the image
loss's blur.

A stage like the others: Lightning, a budget of ``tune.max_steps`` / ``tune.max_minutes`` (the
minutes count training only: drawing the slipped maps is shown on a line of its own),
RUN/state/decoder-<kind>/last.ckpt (resume after Ctrl-C or a crash), RUN/logs/decoder-<kind>/.
The slipped maps are drawn once and kept beside the checkpoint (slipped.safetensors, with the
settings they were drawn under); other settings or another prior start over. A finished tuning
keeps its state: asked again with a larger budget it goes on from there, with the same or a
smaller one it is reused. The tuned decoder is kept only where it makes the prior's samples harder
to tell from real validation slices without costing reconstructions or variety
(brainvq.training.tuning_judge); otherwise it is dropped and a refusal is recorded.

    from brainvq.training.decoder import tune_decoder
    summary = tune_decoder("runs/oasis", "maskgit")      # or `brainvq tune-decoder`
"""

from __future__ import annotations

import copy
import json
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset

from brainvq.codes import code_maps
from brainvq.config import TuneConfig
from brainvq.data import load_data
from brainvq.errors import RunError
from brainvq.io import file_digest
from brainvq.metrics import mean_pairwise_ssim
from brainvq.nn.patchgan import PatchDiscriminator, adversarial_losses, log_adversarial
from brainvq.nn.vqvae import VQVAE, image_loss
from brainvq.priors import categorical_picker, load_prior, prior_path
from brainvq.priors.tuned_decoder import (
    TUNABLE_KINDS,
    decoder_path,
    tuned_decoder_is_current,
    tuning_refused,
)
from brainvq.progress import Progress
from brainvq.runs import atomic_save_safetensors, load_run
from brainvq.training.budget import Budget, can_continue, read_finished
from brainvq.training.stage import Prepared, Stage, StageResult, StageText, run_stage
from brainvq.training.stage import describe as describe  # the stage's lines (a re-export)
from brainvq.training.trainer import stage_config
from brainvq.training.tuning_judge import (
    judge_decoders,
    judged_text,
    keep_or_refuse,
    recon_ssim,
    validation_split,
)

CHECK_SAMPLES = 16  # prior samples decoded by both decoders for the diversity check
NO_EPOCH_LIMIT = 10**9  # the tuning's budget is tune.max_steps / tune.max_minutes, not epochs


def tune_budget(tune: TuneConfig) -> Budget:
    """The budget of decoder tuning: tune.max_steps and tune.max_minutes."""
    return Budget(tune.max_steps, NO_EPOCH_LIMIT, tune.max_minutes)


def _pool_settings(state: Path) -> str | None:
    """The settings the kept slipped maps were drawn under (None if there are none)."""
    try:
        with safe_open(str(state / "slipped.safetensors"), framework="pt") as f:
            return (f.metadata() or {}).get("settings")
    except Exception:  # absent or unreadable (safetensors has its own error type)
        return None


@torch.no_grad()
def slip_codes(
    prior,
    codes: torch.Tensor,
    max_share: float,
    generator: torch.Generator,
    batch_size: int = 128,
    done: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """codes (N, h, w) with a random share in [0, max_share) of each map redrawn by the prior;
    ``done(k)`` after each k maps (progress)."""
    pick = categorical_picker(1.0, 0, generator)
    out = []
    for i in range(0, len(codes), batch_size):
        c = codes[i : i + batch_size]
        share = torch.rand(len(c), 1, 1, generator=generator) * max_share
        hidden = torch.rand(c.shape, generator=generator) < share
        out.append(prior.net.redraw(c, hidden, pick))
        if done is not None:
            done(len(c))
    return torch.cat(out)


def decode_loss(vq: VQVAE, codes: torch.Tensor, x: torch.Tensor, ssim_weight: float):
    """The VQ-VAE's image loss of decoding code maps (B, h, w) against slices x (B, 1, H, W)."""
    return image_loss(vq.decode_latents(vq.quantizer.lookup(codes)), x, ssim_weight)[0]


class SlippedPairs(Dataset):
    """(code map, slice) pairs: every variant of every training map (the real map first, then
    the slipped copies) with its real slice; one epoch sees each pair once."""

    def __init__(self, pool: torch.Tensor, images: torch.Tensor) -> None:
        self.pool, self.images = pool, images  # (V + 1, N, h, w), (N, 1, H, W)

    def __len__(self) -> int:
        return self.pool.shape[0] * self.pool.shape[1]

    def __getitem__(self, i: int):
        variant, j = divmod(i, self.pool.shape[1])
        return self.pool[variant, j], self.images[j]


class DecoderTuningModule(L.LightningModule):
    """Tunes the decoder of a VQ-VAE copy; the encoder and the codebook stay frozen. With a
    discriminator, the decoder also trains against it (and it against the decoder)."""

    def __init__(
        self,
        vqvae: VQVAE,
        lr: float,
        ssim_weight: float,
        disc: PatchDiscriminator | None = None,
        adversarial_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.vq = copy.deepcopy(vqvae).float().requires_grad_(False)
        self.vq.decoder.requires_grad_(True)
        self.lr, self.ssim_weight = lr, ssim_weight
        self.disc, self.adversarial_weight = disc, adversarial_weight

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        codes, x = batch
        if self.disc is None:
            loss = decode_loss(self.vq, codes, x, self.ssim_weight)
        else:
            recon = self.vq.decode_latents(self.vq.quantizer.lookup(codes))
            loss = image_loss(recon, x, self.ssim_weight)[0]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite decoder tuning loss at step {self.global_step}")
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        if self.disc is not None:
            last = self.vq.decoder.net[-1].weight
            adv = adversarial_losses(self.disc, x, recon, loss, last, self.adversarial_weight)
            if not torch.isfinite(adv.total):
                raise FloatingPointError(f"non-finite adversarial loss at step {self.global_step}")
            log_adversarial(self, adv)
            loss = loss + adv.total
        return loss

    def configure_optimizers(self):
        groups = [{"params": list(self.vq.decoder.parameters())}]
        if self.disc is not None:  # as in the VQ-VAE stage: VQGAN's discriminator betas
            groups.append({"params": list(self.disc.parameters()), "betas": (0.5, 0.9)})
        return torch.optim.Adam(groups, lr=self.lr)


def tuning_discriminator(run, tune: TuneConfig) -> tuple[PatchDiscriminator | None, str]:
    """The discriminator decoder tuning trains against (None when tune.adversarial_weight is 0)
    and where it came from: the VQ-VAE stage's checkpoint where that holds one of this size, else
    a fresh one."""
    if tune.adversarial_weight <= 0:
        return None, "none"
    v = run.config.vqvae
    disc = PatchDiscriminator(v.disc_channels, v.disc_layers)
    ckpt = run.dir.stage_state("vqvae") / "last.ckpt"
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True).get("state_dict", {})
        saved = {k.removeprefix("disc."): t for k, t in state.items() if k.startswith("disc.")}
        try:
            disc.load_state_dict(saved)
            return disc, "the VQ-VAE stage's"
        except RuntimeError:  # none there, or of another size
            pass
    return disc, "fresh"


@torch.no_grad()
def sample_alikeness(prior, decoders: list[VQVAE], n: int = CHECK_SAMPLES, seed: int = 0):
    """Mean pairwise SSIM of the same n prior samples (seeded, at the prior's own temperature)
    decoded by each decoder: higher means the samples look more alike."""
    temperature, top_k = prior.sampling
    codes = prior.sample(max(n, 2), seed=seed, temperature=temperature, top_k=top_k)
    return [mean_pairwise_ssim(vq.decode(codes)) for vq in decoders]


def _slipped_pool(
    run, prior, real: torch.Tensor, tune: TuneConfig, settings: dict, state: Path, progress: bool
):
    """The real maps and tune.variants slipped copies, (V + 1, N, h, w): read back from
    state/slipped.safetensors when drawn under the same settings, else drawn now (and the stage's
    old state, made under other settings, removed)."""
    path = state / "slipped.safetensors"
    want = json.dumps(settings, sort_keys=True)
    if path.exists():
        try:
            with safe_open(str(path), framework="pt") as f:
                same = (f.metadata() or {}).get("settings") == want
            if same:
                return load_file(str(path))["pool"].long(), True
        except Exception as e:  # any unreadable file (safetensors has its own error type)
            warnings.warn(f"{path}: unreadable ({e}); decoder tuning starts over", stacklevel=3)
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(run.dir.logs / state.name, ignore_errors=True)
    gen = torch.Generator().manual_seed(tune.seed)
    desc = f"drawing {tune.variants} slipped copies of the training maps"
    with Progress(tune.variants * len(real), desc, "map", progress) as bar:
        slipped = [
            slip_codes(prior, real, tune.max_share, gen, done=bar.update)
            for _ in range(tune.variants)
        ]
    pool = torch.stack([real, *slipped])
    small = pool.max() < 2**15  # int16 holds any codebook up to 32768 codes
    tensors = {"pool": pool.to(torch.int16 if small else torch.int32)}
    atomic_save_safetensors(tensors, path, {"settings": want})
    return pool, False


def tune_decoder(
    run_path: str,
    kind: str = "maskgit",
    tune: TuneConfig | None = None,
    data: str | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> StageResult:
    """Tune a copy of the run's decoder to ``kind``'s slips; write RUN/decoder-<kind>.safetensors.

    Args:
        run_path: run folder with a trained VQ-VAE and a ``kind`` prior.
        kind: the prior (one that redraws codes given the rest: maskgit).
        tune: the stage's settings (default: the run's ``tune`` section).
        data: data folder (default: the one the run was trained on).
        fresh: start over instead of resuming an unfinished tuning or reusing a finished one.
        progress: show a progress bar.

    Returns the StageResult: the steps, seconds, the test reconstruction SSIM of both decoders on
    the real test maps, and the mean pairwise SSIM of 16 prior samples decoded by each; the tuned
    decoder is written only if that rises by at most ``tune.max_diversity_rise`` (``kept``), else
    a refusal is recorded for this prior. ``resumed_at``: the step an unfinished (or finished,
    given a larger budget: ``status`` "continued") tuning went on from (0 = started afresh). A
    tuning that finished under the same prior and settings with the same or a larger budget than
    ``tune``'s is not redone: status "reused"."""
    if kind not in TUNABLE_KINDS:
        raise RunError(
            f"prior kind {kind!r}: decoder tuning needs a prior that redraws codes given the "
            f"rest of the map ({', '.join(TUNABLE_KINDS)})"
        )
    run = load_run(run_path)
    tune = copy.deepcopy(tune or run.config.tune)
    tune.validate()
    if not tune.enabled():
        raise RunError("give decoder tuning a budget: tune.max_minutes > 0 or tune.max_steps > 0")
    return run_stage(DecoderStage(run, kind, tune, data, fresh, progress))


class DecoderStage(Stage):
    """Decoder tuning for run_stage: the slipped maps of the run's ``kind`` prior and the real
    slices, DecoderTuningModule, then the tuning judge (rank 0) keeps or drops the decoder."""

    section, status = "tune", "tuned"

    def __init__(
        self, run, kind: str, tune: TuneConfig, data: str | None, fresh: bool, progress: bool
    ) -> None:
        self.tuned_run, self.kind, self.tune, self.data = run, kind, tune, data
        self.run, self.fresh, self.progress = run.dir, fresh, progress
        self.name, self.weights = f"decoder-{kind}", decoder_path(run.dir, kind)
        self.unjudged = False  # tuned to its budget, then stopped (Ctrl-C, a crash) before judged

    def budget(self) -> Budget:
        return tune_budget(self.tune)

    def decide(self) -> StageResult | None:
        run, kind, tune = self.tuned_run, self.kind, self.tune
        run.dir.ensure_writable()
        self.prior = load_prior(run, kind)
        self.root = run.data_root(self.data)
        self.maps = code_maps(run, self.root, progress=self.progress)
        self.real = torch.from_numpy(np.asarray(self.maps["train"])).long()
        self.settings = {
            "prior_sha256": file_digest(prior_path(run.dir, kind)),
            "maps": len(self.real),
            **{k: getattr(tune, k) for k in ("max_share", "variants", "lr", "batch_size", "seed")},
            **({"adversarial_weight": tune.adversarial_weight} if tune.adversarial_weight else {}),
        }
        self.done = read_finished(run.dir, self.name)
        want = json.dumps(self.settings, sort_keys=True)
        self.same = _pool_settings(run.dir.stage_state(self.name)) == want
        if not self.fresh and self.same and self.done is not None:
            if not can_continue(run.dir, self.name, self.budget()):
                if tuned_decoder_is_current(run.dir, kind) or tuning_refused(run.dir, kind):
                    return self.reused(kind=kind)
                self.unjudged = True
        return None

    def prepare(self, ckpt: Path | None) -> Prepared:
        run, tune, real = self.tuned_run, self.tune, self.real
        self.splits, self.arrays = load_data(self.root, run.config.data, progress=False)
        images = torch.from_numpy(np.asarray(self.arrays["train"], dtype=np.float32) / 255.0)[
            :, None
        ]
        state = run.dir.stage_state(self.name)
        t0 = time.perf_counter()
        args = run, self.prior, real, tune, self.settings, state, self.progress
        self.pool, reused = _slipped_pool(*args)
        self.slip_seconds = time.perf_counter() - t0
        if not reused:
            ckpt = None  # the state dir was made under other settings and is gone
        self.continued = ckpt is not None and self.done is not None and self.same
        self.continued = self.continued and not self.fresh
        t = stage_config(
            run.config.train, tune.batch_size, NO_EPOCH_LIMIT, tune.max_steps, tune.max_minutes,
            tune.seed,
        )  # fmt: skip
        L.seed_everything(t.seed, verbose=False)
        disc, self.disc_from = tuning_discriminator(run, tune)
        module = DecoderTuningModule(
            run.vqvae, tune.lr, run.config.train.ssim_loss_weight, disc, tune.adversarial_weight
        )
        loader = DataLoader(
            SlippedPairs(self.pool, images),
            batch_size=tune.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(tune.seed),
        )
        self.resumed_at = _checkpoint_step(ckpt)
        what = f"{len(self.pool) * len(real)} maps"
        done = None
        if self.unjudged and ckpt is not None:  # judge the weights it ended with; no training
            state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
            done = self.done
        self.t1 = time.perf_counter()
        return Prepared(module, loader, None, t, what, ckpt, done)

    def resumed_status(self, ckpt: Path | None) -> str:
        if self.unjudged and ckpt is not None:
            return "judged"
        return "continued" if self.continued else "resumed" if self.resumed_at else "tuned"

    def finish(self, module, trainer: L.Trainer | None, zero: bool) -> dict:
        tune_seconds = time.perf_counter() - self.t1
        vq = module.vq.cpu().eval()
        pool, real = self.pool, self.real
        shared = float((pool[1:] != real).float().mean()) if self.tune.variants else 0.0
        result = {"kind": self.kind, "resumed_at": self.resumed_at}
        result |= {"slip_seconds": self.slip_seconds, "tune_seconds": tune_seconds}
        result |= {"slipped_share": shared, "discriminator": self.disc_from}
        result["path"] = str(self.weights)
        return result | (self._judge(vq) if zero else {})

    def _judge(self, vq: VQVAE) -> dict:
        """The tuning judge's verdict on the tuned decoder ``vq`` (it is kept or dropped here)
        and the test reconstruction SSIM of both decoders."""
        run, kind, tune, prior = self.tuned_run, self.kind, self.tune, self.prior
        arrays, maps = self.arrays, self.maps
        val = validation_split(arrays, maps, self.splits)
        desc = "judging the tuned decoder on the validation split"
        with Progress(2 * len(val["images"]), desc, "slice", self.progress) as bar:
            folds = run.config.eval.c2st_folds
            judged = judge_decoders(prior, run.vqvae, vq, val, folds, tune.seed, bar.update)
        alike = sample_alikeness(prior, [run.vqvae, vq], CHECK_SAMPLES, tune.seed)
        out = judged | keep_or_refuse(
            run.dir, kind, vq, self.settings["prior_sha256"], tune, judged, alike
        )
        test = np.asarray(arrays["test"], dtype=np.float32) / 255.0
        test_maps = torch.from_numpy(np.asarray(maps["test"])).long()
        desc = "test reconstruction SSIM of both decoders"
        with Progress(2 * len(test), desc, "slice", self.progress) as bar:
            out["test_ssim_vqvae"] = recon_ssim(run.vqvae, test_maps, test, done=bar.update)
            out["test_ssim_tuned"] = recon_ssim(vq, test_maps, test, done=bar.update)
        return out

    def text(self, result: StageResult) -> StageText:
        return tuning_text(result, self.section)


def _checkpoint_step(ckpt: Path | None) -> int:
    """The global step a Lightning checkpoint was saved at (0 without one)."""
    if ckpt is None:
        return 0
    return int(torch.load(ckpt, map_location="cpu", weights_only=True).get("global_step", 0))


def tuning_text(result: StageResult, section: str = "tune") -> StageText:
    """How ``describe`` words what tune_decoder did: which limit of its budget ended it, how it
    was judged, and whether the tuned decoder was kept."""
    kind = result["kind"]
    text = StageText(f"decoder tuning to the {kind} prior", section, "done", "redoes it")
    text.show_weights = False
    if result.status == "reused" or not result.is_global_zero:
        return text
    notes = []
    if result.status == "judged":
        notes.append("judged a finished tuning that had not been judged (stopped while judging)")
    elif result.status == "continued":
        notes.append(f"continued a finished tuning from step {result['resumed_at']}")
    elif result["resumed_at"]:
        notes.append(f"resumed an unfinished tuning at step {result['resumed_at']}")
    done = (
        f"{result.steps} steps in {result['tune_seconds']:.0f}s{{ended}} on maps with "
        f"{result['slipped_share']:.1%} of codes redrawn; test reconstruction SSIM "
        f"{result['test_ssim_tuned']:.4f} (VQ-VAE decoder {result['test_ssim_vqvae']:.4f}); "
        f"samples' mean pairwise SSIM {result['samples_alike_tuned']:.3f} "
        f"(VQ-VAE decoder {result['samples_alike_vqvae']:.3f}); {judged_text(result)}"
    )
    if result.get("discriminator", "none") != "none":
        notes.append(f"tuned against a discriminator ({result['discriminator']})")
    text.notes = tuple(notes)
    if result["kept"]:
        text.line = f"decoder tuned to the {kind} prior: {done} -> {result['path']}"
    else:
        text.line = (
            f"decoder tuning to the {kind} prior dropped: {result['why_not_kept']}; "
            f"its samples stay decoded by the VQ-VAE's decoder ({done})"
        )
    return text
