"""`train.precision auto`, measured: fp32 or bf16 autocast, whichever trains this model faster here.

BF16 autocast is not faster on every CPU that has BF16 instructions, nor for every model on one
CPU: on a 2-core Xeon with AVX512-BF16 and AMX it trained the default 128 px VQ-VAE 1.6x faster
than fp32 and the quick preset's VQ-VAE 3x slower (bench/results/precision.md). So on a CPU with
BF16, ``auto`` times a few training steps of the stage's own model at its own batch size in each
precision (forward, backward and optimizer step on one real batch, on a copy of the model, warm-up
steps excluded, the RNG state put back so the stage trains exactly as it would have without the
measurement) and takes bf16 only where it is at least ``MARGIN`` times faster. The choice is
remembered in the user's cache (precision.json beside the decoded slices: $BRAINVQ_CACHE or
~/.cache/brainvq), keyed by the CPU, its flags, torch, the thread count, the stage and the shapes
of the model and batch, so a second run does not measure again. Without BF16 on the CPU, ``auto``
is fp32 and nothing is timed; on CUDA it is bf16 where the GPU has it, else fp16 (as before).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import random
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

from brainvq.io import atomic_write_text
from brainvq.training.hardware import cpu_has_bf16

MARGIN = 1.15  # bf16 must be at least this many times faster than fp32 to be chosen
WARMUP_STEPS = 2  # steps run before the clock starts (allocations, oneDNN kernel choice)
TIMED_STEPS = 4
NAMES = {"32-true": "fp32", "bf16-mixed": "bf16-mixed", "16-mixed": "fp16-mixed"}
EXPLICIT = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}


@dataclass
class PrecisionChoice:
    """The Lightning precision a stage trains in and why; ``seconds``: measured seconds per step
    by precision (empty where nothing was timed)."""

    precision: str
    reason: str
    seconds: dict[str, float] = field(default_factory=dict)

    def line(self, stage: str) -> str:
        """The stage's first line, e.g. 'vqvae: precision fp32 (auto: no BF16 on this CPU)'."""
        return f"{stage}: precision {NAMES.get(self.precision, self.precision)} ({self.reason})"

    def record(self) -> dict:
        """What finished.json keeps of it, so the run can be reproduced."""
        return {"precision_used": self.precision, "precision_reason": self.reason}


def cache_file() -> Path:
    """precision.json in the user's cache ($BRAINVQ_CACHE or ~/.cache/brainvq)."""
    env = os.environ.get("BRAINVQ_CACHE")
    return (
        Path(env).expanduser() if env else Path.home() / ".cache" / "brainvq"
    ) / "precision.json"


def machine_key() -> str:
    """The CPU model, its BF16/AMX flags, torch's version and thread count: what speed depends on."""
    model, flags = "unknown CPU", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                wanted = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2")
                flags = ",".join(f for f in line.split(":", 1)[1].split() if f in wanted)
    return f"{model}|{flags}|torch {torch.__version__}|{torch.get_num_threads()} threads"


def shape_signature(module: torch.nn.Module, batch) -> str:
    """A short digest of the module's parameter names and shapes and of the batch's shapes."""
    h = hashlib.sha1()
    for name, p in module.named_parameters():
        h.update(f"{name}:{tuple(p.shape)};".encode())
    for t in batch if isinstance(batch, (list, tuple)) else [batch]:
        h.update(f"batch:{tuple(t.shape)}:{t.dtype};".encode())
    return h.hexdigest()[:16]


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(path: Path, key: str, entry: dict) -> None:
    """Add one measured choice to the cache (a cache that cannot be written is only a warning)."""
    data = _read_cache(path)
    data[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    except Exception as e:  # an unwritable cache costs a measurement next time, nothing more
        warnings.warn(f"{path}: precision choice not remembered ({e})", stacklevel=3)


def _decide(fp32_s: float, bf16_s: float) -> tuple[str, str]:
    speedup = fp32_s / bf16_s
    if speedup >= MARGIN:
        return "bf16-mixed", f"auto: measured {speedup:.2f}x faster than fp32 on this CPU"
    return "32-true", f"auto: bf16 measured {speedup:.2f}x the speed of fp32 (needs {MARGIN}x)"


def choose_precision(
    requested: str,
    accelerator: str,
    key: str,
    timer: Callable[[str], float],
    processes: int = 1,
) -> PrecisionChoice:
    """The precision of a stage asked for ``requested`` (train.precision: auto | 32 | bf16 | 16).

    ``key``: the stage and its shape signature (machine_key is added); ``timer(precision)``:
    seconds per training step in that Lightning precision, called only when auto has to measure.
    Under several processes (DDP) a BF16 CPU takes bf16 unmeasured: ranks must agree."""
    if requested in EXPLICIT:
        return PrecisionChoice(EXPLICIT[requested], f"train.precision = {requested!r}")
    if accelerator == "gpu":
        bf16 = torch.cuda.is_bf16_supported()
        why = "auto: the GPU has bf16" if bf16 else "auto: fp16 AMP, the GPU lacks bf16"
        return PrecisionChoice("bf16-mixed" if bf16 else "16-mixed", why)
    if not cpu_has_bf16():
        return PrecisionChoice("32-true", "auto: no BF16 on this CPU")
    if processes > 1:
        return PrecisionChoice("bf16-mixed", "auto: BF16 CPU, not measured under DDP")
    path, full_key = cache_file(), f"{machine_key()}|{key}"
    entry = _read_cache(path).get(full_key)
    if isinstance(entry, dict) and entry.get("precision") in NAMES and "reason" in entry:
        return PrecisionChoice(entry["precision"], f"{entry['reason']}, cached")
    try:
        seconds = {p: timer(p) for p in ("32-true", "bf16-mixed")}
    except Exception as e:  # a model that cannot be copied or timed trains as it always could
        return PrecisionChoice("32-true", f"auto: could not time bf16 ({type(e).__name__})")
    precision, reason = _decide(seconds["32-true"], seconds["bf16-mixed"])
    entry = {"precision": precision, "reason": reason, "seconds_per_step": seconds}
    _remember(path, full_key, entry | {"when": time.strftime("%Y-%m-%d %H:%M:%S")})
    return PrecisionChoice(precision, reason, seconds)


def first_batch(loader) -> object:
    """The loader's first batch in dataset order, without iterating the loader (whose shuffle
    generator would advance and change the stage's data order)."""
    ds = loader.dataset
    idx = list(range(min(loader.batch_size or 1, len(ds))))
    items = ds.__getitems__(idx) if hasattr(ds, "__getitems__") else [ds[i] for i in idx]
    return loader.collate_fn(items)


class _Repeat(Dataset):
    """The same batch n times (a DataLoader with batch_size=None serves it as it is)."""

    def __init__(self, batch, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.batch


class _StepClock(Callback):
    """Seconds of each training step (forward, backward and optimizer step)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self._t)


@contextlib.contextmanager
def kept_rng():
    """Every RNG a stage draws from (torch, numpy, random) as it was before the block."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(py)
    np.random.set_state(npy)


def time_steps(
    module: L.LightningModule,
    batch,
    precision: str,
    steps: int = TIMED_STEPS,
    warmup: int = WARMUP_STEPS,
    updates_per_step: int = 1,
) -> float:
    """Seconds per training step of a copy of ``module`` on ``batch`` in a Lightning precision
    (the fastest of ``steps`` timed steps after ``warmup``; the module and every RNG are left as
    they were)."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    clock = _StepClock()
    with kept_rng(), tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            precision=precision,
            max_steps=(warmup + steps) * updates_per_step,
            max_epochs=1,
            callbacks=[clock],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            default_root_dir=tmp,
        )
        loader = DataLoader(_Repeat(batch, warmup + steps), batch_size=None)
        trainer.fit(copy.deepcopy(module), loader)
    return min(clock.times[warmup:])


def stage_precision(
    stage: str,
    requested: str,
    accelerator: str,
    module: L.LightningModule,
    loader,
    processes: int = 1,
    updates_per_step: int = 1,
) -> PrecisionChoice:
    """choose_precision for a stage about to train ``module`` on ``loader``'s batches."""
    if requested in EXPLICIT or accelerator == "gpu" or not cpu_has_bf16():
        return choose_precision(requested, accelerator, stage, _no_timer, processes)
    batch = first_batch(loader)
    key = f"{stage}|{shape_signature(module, batch)}"

    def timer(precision: str) -> float:
        return time_steps(module, batch, precision, updates_per_step=updates_per_step)

    return choose_precision(requested, accelerator, key, timer, processes)


def _no_timer(precision: str) -> float:
    raise AssertionError("no measurement is needed here")
