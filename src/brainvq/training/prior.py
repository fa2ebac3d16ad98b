"""The prior stage: a run's code maps -> a trained prior in RUN/prior-<kind>.safetensors."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from safetensors import safe_open
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from brainvq.codes import code_maps
from brainvq.config import PRIOR_KINDS, Config, TrainConfig, kind_spec
from brainvq.data import load_data
from brainvq.data.levels import check_level_order, levels_per_subject, slice_below
from brainvq.data.subjects import warn_once
from brainvq.errors import DataError, RunError
from brainvq.priors import PRIOR_CLASSES, load_prior_file, prior_path
from brainvq.runs import Run, load_run
from brainvq.training.budget import Budget
from brainvq.training.code_prior import CodePredictionModule
from brainvq.training.covariates import check_same_covariates, covariate_conditions
from brainvq.training.dcgan import DCGANModule
from brainvq.training.loaders import LevelledCodes
from brainvq.training.stage import Prepared, Stage, StageResult, StageText, run_stage
from brainvq.training.stage import describe as describe  # the stage's lines (a re-export)
from brainvq.training.trainer import stage_config


def prior_train_config(cfg: Config) -> TrainConfig:
    """The TrainConfig of the prior stage: prior's batch, budget and seed (see stage_config)."""
    p = cfg.prior
    return stage_config(cfg.train, p.batch_size, p.max_epochs, p.max_steps, p.max_minutes, p.seed)


def _budget(cfg: Config, kind: str) -> Budget:
    p = copy.copy(cfg.prior)
    p.kind = kind
    return Budget(p.step_budget(), p.max_epochs, p.max_minutes)


def _stale(run, kind: str) -> bool:
    """Whether the run's prior of this kind (or its unfinished checkpoint) was trained on another
    codebook than the run's VQ-VAE has now (the VQ-VAE was retrained or went on): its code maps
    are gone, so it must be trained anew. Judged by the codebook each file carries, so a run
    folder copied without its file times keeps its prior; by file times where one carries none."""
    current = run.vqvae.quantizer.embedding.detach().float().cpu()
    weights = prior_path(run.dir, kind)
    last = run.dir.stage_state(f"prior-{kind}") / "last.ckpt"
    for path, read in ((weights, _file_codebook), (last, _checkpoint_codebook)):
        if not path.exists():
            continue
        stored = read(path)
        if stored is None:
            if path.stat().st_mtime_ns < run.dir.vqvae.stat().st_mtime_ns:
                return True
        elif stored.shape != current.shape or not torch.equal(stored, current.to(stored.dtype)):
            return True
    return False


def _file_codebook(path: Path) -> torch.Tensor | None:
    """The codebook a prior file was trained on (None if it carries none or is unreadable)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor("codebook") if "codebook" in f.keys() else None
    except Exception:  # unreadable: loading it later says why
        return None


def _checkpoint_codebook(path: Path) -> torch.Tensor | None:
    """The codebook in an unfinished prior stage's last.ckpt (None if it carries none)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: resuming from it says why
        return None
    return state.get("state_dict", {}).get("prior.codebook")


def _dcgan_loader(codes: torch.Tensor, batch_size: int, steps_per_epoch: int, seed: int):
    # Real maps are few (hundreds to thousands): an "epoch" is steps_per_epoch batches drawn as
    # back-to-back shuffles, so checkpoints and epoch logs come at a sensible pace.
    data = TensorDataset(codes)
    n = steps_per_epoch * batch_size
    sampler = RandomSampler(data, num_samples=n, generator=torch.Generator().manual_seed(seed))
    return DataLoader(data, batch_size, sampler=sampler, drop_last=len(codes) >= batch_size)


def level_conditions(run: Run, cfg: Config, kind: str, data: str) -> dict:
    """What a prior of ``kind`` is conditioned on (prior.levels, prior.slice_below), and why.

    Returns {"conditions": ("level", "below") or fewer, "why": one line, "check": the order
    check (brainvq.data.levels.check_level_order) or None, and where conditioned "levels"
    {split: relative levels}, "below" {split: index of the slice below or -1}, "info" (the
    training levels' percentiles and levels per subject, saved with the prior)}. Levels that fail
    the order check are warned of once and not used (prior.levels on: an error)."""
    p = cfg.prior
    if p.levels == "off":
        return {"conditions": (), "why": "prior.levels off", "check": None}
    if not PRIOR_CLASSES[kind].can_condition:
        if p.levels == "on":
            raise RunError(
                f"prior.levels on: a {kind} prior takes no level; use --kind maskgit or "
                "transformer, or prior.levels auto"
            )
        return {"conditions": (), "why": f"a {kind} prior takes no level", "check": None}
    splits, arrays = load_data(data, run.config.data, progress=False)
    sub, lev = splits.subjects["train"], splits.levels["train"]
    check = check_level_order(arrays["train"], sub, lev, seed=p.seed)
    if not check["ok"]:
        why = f"levels unused: {check['reason']}"
        if p.levels == "on":
            raise DataError(
                f"{data}: prior.levels on, but the slice_Z levels of its training slices fail "
                f"the order check ({check['reason']}); fix the names or set prior.levels auto"
            )
        if check["pairs"]:  # levels there, but not in anatomical order
            warn_once(
                f"{data}: the slice_Z numbering does not follow anatomy ({check['reason']}; "
                "neighbouring levels should be far more alike): the prior is trained without "
                "levels (prior.levels off silences this)"
            )
        return {"conditions": (), "why": why, "check": check}
    rel = splits.relative_levels()
    known = rel["train"][~np.isnan(rel["train"])]
    return {
        "conditions": ("level", "below") if p.slice_below else ("level",),
        "why": f"levels checked: {check['reason']}",
        "check": check,
        "levels": rel,
        "below": {k: slice_below(splits.subjects[k], splits.levels[k]) for k in splits.subjects},
        "info": {
            "quantiles": [round(float(q), 5) for q in np.percentile(known, np.arange(101))],
            "per_subject": levels_per_subject(sub, lev),
        },
    }


def _code_data(codes: torch.Tensor, split: str, cond: dict, covs: dict, codebook_size: int):
    """The dataset of a split: its maps, with their levels and slices below where conditioned
    on levels, and their covariates where on covariates."""
    values = covs["values"].get(split) if covs["specs"] else None
    if not cond["conditions"] and values is None:
        return TensorDataset(codes)
    n = len(cond["levels"][split]) if cond["conditions"] else len(values)
    if n != len(codes):
        raise RunError(
            f"the {split} split has {n} slices but {len(codes)} code maps; re-encode them with "
            "`brainvq train-prior --fresh`"
        )
    if cond["conditions"]:
        levels, below = cond["levels"][split], cond["below"][split]
    else:
        levels, below = np.full(n, np.nan, np.float32), np.full(n, -1, np.int64)
    return LevelledCodes(codes, levels, below, codebook_size, values)


def _check_resumable(ckpt, module: CodePredictionModule) -> None:
    """Refuse a checkpoint of a prior with other conditions (e.g. made before levels)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True).get("state_dict", {})
    if set(state) != set(module.state_dict()):
        on = [*module.prior.conditions, *(c["name"] for c in module.prior.covariates)]
        what = ", ".join(on) or "no conditions"
        raise RunError(
            f"{ckpt}: a checkpoint of a prior with other conditions than this one ({what}); "
            "use --fresh to start over"
        )


def _start_from(module: CodePredictionModule, path: str, kind: str) -> None:
    """prior.init: load a prior file's weights into a fresh module (conditions it lacks keep
    their initial weights)."""
    src = load_prior_file(path)
    own = module.prior.state_dict()
    if src.kind != kind:
        raise RunError(f"{path}: a {src.kind} prior; prior.init takes a {kind} prior file")
    if src.codebook.shape != own["codebook"].shape or not torch.allclose(
        src.codebook, own["codebook"]
    ):
        raise RunError(f"{path}: trained on another codebook; prior.init needs this run's priors")
    state = src.state_dict()
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise RunError(f"{path}: its weights do not fit this prior ({bad[0]}); set prior.init ''")
    module.prior.load_state_dict(state, strict=False)


def train_prior(
    run_path: str,
    cfg: Config,
    kind: str | None = None,
    data: str | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> StageResult:
    """Train (or resume, or reuse) the prior of a run; returns its StageResult (extras: kind,
    epochs, the losses and what the prior is conditioned on).

    The VQ-VAE settings come from the run's own config; cfg contributes the `prior` section (and
    accelerator/devices from `train`); kind (default cfg.prior.kind) picks dcgan, pixelcnn,
    transformer or maskgit. Weights go to RUN/prior-<kind>.safetensors, checkpoints to
    RUN/state/prior-<kind>/, CSV logs to RUN/logs/prior-<kind>/.

    The budget is ``cfg.prior``'s max_steps (a DCGAN step: one discriminator and one generator
    update; 0: the kind's own prior.KIND.step_budget), max_epochs and max_minutes (of training: encoding the code maps is shown on a line
    of its own and not counted). A trained prior is reused unless ``fresh``, its budget is larger than the one it
    finished under (then it goes on from its last checkpoint, "continued"), or the run's VQ-VAE
    changed since (then it is trained anew, "retrained").
    """
    kind = kind or cfg.prior.kind
    if kind not in PRIOR_KINDS:
        raise RunError(f"prior kind {kind!r}: use one of {', '.join(PRIOR_KINDS)}")
    return run_stage(PriorStage(load_run(run_path), cfg, kind, data, fresh, progress))


def stage_settings(run: Run, cfg: Config, kind: str) -> Config:
    """The prior stage's settings: the run's own config with ``cfg``'s prior section (kind,
    its step batch and budget) and its accelerator, precision, devices and logging."""
    pcfg = copy.deepcopy(run.config)
    pcfg.prior = copy.deepcopy(cfg.prior)
    pcfg.prior.kind = kind
    pcfg.prior.batch_size = pcfg.prior.step_batch_size()
    pcfg.prior.max_steps = pcfg.prior.step_budget()
    pcfg.train.accelerator, pcfg.train.precision = cfg.train.accelerator, cfg.train.precision
    pcfg.train.devices, pcfg.train.num_nodes = cfg.train.devices, cfg.train.num_nodes
    pcfg.train.tensorboard = cfg.train.tensorboard
    pcfg.train.save_rank_states = cfg.train.save_rank_states
    return pcfg.validate()


class PriorStage(Stage):
    """The prior stage for run_stage: the run's code maps, the kind's module (DCGANModule or
    CodePredictionModule), RUN/prior-<kind>.safetensors."""

    section = "prior"

    def __init__(
        self, run: Run, cfg: Config, kind: str, data: str | None, fresh: bool, progress: bool
    ) -> None:
        self.prior_run, self.cfg, self.kind, self.data = run, cfg, kind, data
        self.run, self.fresh, self.progress = run.dir, fresh, progress
        self.name, self.weights = f"prior-{kind}", prior_path(run.dir, kind)
        self.spec = spec = kind_spec(kind)  # which training path, its losses (brainvq.config.kinds)
        if spec.training == "gan":
            self.updates_per_step, self.unused_parameters = spec.updates_per_step, True

    def budget(self) -> Budget:
        return _budget(self.cfg, self.kind)

    def decide(self) -> StageResult | None:
        if not self.fresh and _stale(self.prior_run, self.kind):
            self.fresh, self.status = True, "retrained"  # trained on codes of an earlier VQ-VAE
        if not self.fresh and self.weights.exists():
            check_same_covariates(self.weights, self.cfg.prior.conditions)
        return super().decide()

    def reused(self, **extras) -> StageResult:
        return super().reused(kind=self.kind, **extras)

    def prepare(self, ckpt: Path | None) -> Prepared:
        run, kind = self.prior_run, self.kind
        self.pcfg = pcfg = stage_settings(run, self.cfg, kind)
        maps = code_maps(run, run.data_root(self.data), progress=self.progress)
        self.codes = codes = torch.from_numpy(maps["train"]).long()
        if codes.numel() == 0:
            raise RunError(f"{run.dir.path}: the training split has no code maps to fit a prior on")
        h, w = codes.shape[1:]
        if h != w:
            raise RunError(f"{run.dir.path}: code maps are {h}x{w}; the priors need square maps")
        t = prior_train_config(pcfg)
        L.seed_everything(t.seed, verbose=False)
        torch.set_float32_matmul_precision("high")
        p = pcfg.prior
        codebook = run.vqvae.quantizer.embedding.detach().float().cpu()
        what = f"the code maps of {len(codes)} training slices"
        if self.spec.training == "gan":
            module = DCGANModule(pcfg, codebook, h, decoder=run.vqvae.decoder)
            loader = _dcgan_loader(codes, p.batch_size, p.settings().steps_per_epoch, t.seed)
            return Prepared(module, loader, None, t, what, ckpt)
        module, loader, val = self._code_prediction(maps, codebook, ckpt)
        return Prepared(module, loader, val, t, what, ckpt)

    def _code_prediction(self, maps: dict, codebook: torch.Tensor, ckpt: Path | None):
        """The CodePredictionModule of the kind and its training and validation loaders."""
        run, kind, pcfg, codes = self.prior_run, self.kind, self.pcfg, self.codes
        p = pcfg.prior
        self.cond = cond = level_conditions(run, pcfg, kind, run.data_root(self.data))
        pcfg.prior.levels = "on" if cond["conditions"] else "off"  # as trained, for the record
        self.covs = covs = covariate_conditions(run, pcfg, kind, run.data_root(self.data))
        k = codebook.shape[0]
        module = CodePredictionModule(
            pcfg, codebook, codes.shape[1], cond["conditions"], cond.get("info"), covs["specs"]
        )
        if ckpt:
            _check_resumable(ckpt, module)
        elif p.init:
            _start_from(module, p.init, kind)
        val_codes = torch.from_numpy(maps["validate"]).long()
        loader = DataLoader(_code_data(codes, "train", cond, covs, k), p.batch_size, shuffle=True)
        val_data = _code_data(val_codes, "validate", cond, covs, k)
        val = DataLoader(val_data, p.batch_size) if len(val_codes) else None
        return module, loader, val

    def finish(self, module, trainer: L.Trainer | None, zero: bool) -> dict:
        kind, seed = self.kind, self.pcfg.prior.seed
        if self.spec.training == "gan":
            prior = copy.deepcopy(module.sampler()).float().cpu()
            prior.recalibrate_bn(seed=seed)
            sample = prior.sample(min(256, 4 * len(self.codes)), seed=seed)
            extra = {"sample_codes_used": int(torch.unique(sample).numel())}
        else:
            prior = module.best_prior().float()
            extra = {"best_val_bpc": module.best_val, "conditions": list(self.cond["conditions"])}
            extra["levels"] = self.cond["why"]
            extra["covariates"] = [c["name"] for c in self.covs["specs"]]
        if zero:
            prior.save(self.weights, self.pcfg)
        metrics = trainer.callback_metrics
        for name in self.spec.losses:
            value = metrics.get(f"{name}_epoch", metrics.get(name))
            extra[name] = float(value) if value is not None else float("nan")
        return {"kind": kind, "epochs": trainer.current_epoch, **extra}

    def text(self, result: StageResult) -> StageText:
        kind = self.kind
        text = StageText(f"{kind} prior", self.section)
        if result.status == "reused":
            return text
        if "best_val_bpc" in result:
            loss = f"validation {result['best_val_bpc']:.3f} {self.spec.loss_unit} (best)"
            if not math.isfinite(result["best_val_bpc"]):
                loss = "not validated yet (it ended before an epoch's end)"
        else:
            loss = f"G loss {result['g_loss']:.3f}, D loss {result['d_loss']:.3f}"
        conditioned = {("level",): ", by level", ("level", "below"): ", by level and slice below"}
        on = conditioned.get(tuple(result.get("conditions", ())), "")
        if result.get("covariates"):
            on += f", on {', '.join(result['covariates'])}"
        text.line = f"{kind} prior {result.status}{on}: {{work}}{{ended}}; {loss} -> "
        text.line += result.weights
        return text
