"""The run folder: everything one run made, written atomically, and how to load it back.

    RUN/config.toml           the config the run was made with
    RUN/state/                resumable training checkpoints (last.ckpt) per stage
    RUN/vqvae.safetensors     VQ-VAE weights; the config sits in the file's metadata too
    RUN/logs/                 CSV logs of each stage
    RUN/figures/              PNG figures
    RUN/metrics.json          what `evaluate` measured
    RUN/data.json             which data the run was trained on

Weights are safetensors, so loading a model file never runs code.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from brainvq.config import Config
from brainvq.errors import RunError
from brainvq.io import atomic_path, atomic_write_text
from brainvq.nn.vqvae import VQVAE


def atomic_save_safetensors(tensors: dict, path: str | Path, meta: dict) -> None:
    """Tensors to a safetensors file atomically; ``meta`` values are stored as strings."""
    clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    try:
        with atomic_path(path) as tmp:
            save_file(clean, str(tmp), metadata={k: str(v) for k, v in meta.items()})
    except RunError:
        raise
    except Exception as e:  # safetensors reports a full disk as its own error type
        raise RunError(
            f"{path}: could not write weights ({e}); free disk space and rerun"
        ) from None


@dataclass
class RunDir:
    """Paths of one run folder."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser()

    config = property(lambda self: self.path / "config.toml")
    state = property(lambda self: self.path / "state")
    logs = property(lambda self: self.path / "logs")
    figures = property(lambda self: self.path / "figures")
    metrics = property(lambda self: self.path / "metrics.json")
    vqvae = property(lambda self: self.path / "vqvae.safetensors")
    data_source = property(lambda self: self.path / "data.json")

    def stage_state(self, stage: str) -> Path:
        """Checkpoint folder of one training stage."""
        return self.state / stage

    def ensure_writable(self) -> None:
        """Create the folder (and parents) or raise RunError naming it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise RunError(
                f"{self.path}: run folder is not writable ({e.strerror}); choose another --run"
            ) from None

    def read_metrics(self) -> dict[str, Any]:
        """metrics.json as a dict ({} when absent)."""
        if not self.metrics.exists():
            return {}
        return json.loads(self.metrics.read_text())

    def update_metrics(self, section: str, values: dict[str, Any]) -> dict[str, Any]:
        """Replace one section of metrics.json, keeping the others."""
        data = self.read_metrics()
        data[section] = values
        atomic_write_text(self.metrics, json.dumps(data, indent=2) + "\n")
        return data


# Settings that change the shape of the saved weights: a run made with other values can't resume.
_SHAPE_KEYS = ("downsample", "hidden", "res_hidden", "n_res_blocks", "codebook_size", "code_dim")


def check_compatible(run: RunDir, cfg: Config) -> None:
    """Refuse a run folder whose saved config differs from cfg in model shape or image size."""
    if not run.config.exists():
        return
    try:
        old = Config.load(run.config)
    except Exception as e:  # noqa: BLE001 - any unreadable config is a mismatch
        raise RunError(
            f"{run.config}: unreadable config in run folder ({e}); use --fresh"
        ) from None
    diffs = [
        f"vqvae.{k} {getattr(old.vqvae, k)} -> {getattr(cfg.vqvae, k)}"
        for k in _SHAPE_KEYS
        if getattr(old.vqvae, k) != getattr(cfg.vqvae, k)
    ]
    if old.data.image_size != cfg.data.image_size:
        diffs.append(f"data.image_size {old.data.image_size} -> {cfg.data.image_size}")
    if diffs:
        raise RunError(
            f"{run.path}: made with a different config ({'; '.join(diffs)}); "
            "use --fresh to start over or pick a new --run"
        )


def save_vqvae(model: VQVAE, path: Path, cfg: Config) -> None:
    """VQ-VAE weights and buffers to safetensors, with the config in the metadata."""
    atomic_save_safetensors(model.state_dict(), path, {"config": cfg.to_toml(), "kind": "vqvae"})


def load_vqvae(path: str | Path, cfg: Config | None = None) -> VQVAE:
    """A VQVAE from a safetensors file; the config comes from its metadata unless given."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: no VQ-VAE weights here; train one with `brainvq train-vqvae`")
    if cfg is None:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "config" not in meta:
            raise RunError(f"{path}: weights carry no config; pass the run's config.toml")
        cfg = Config.from_dict(tomllib.loads(meta["config"]), source=str(path))
    model = VQVAE(cfg.vqvae)
    state = load_file(str(path))
    expected = model.state_dict()
    bad = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    missing = [k for k in expected if k not in state]
    if bad or missing:
        what = bad[0] if bad else f"missing {missing[0]}"
        raise RunError(f"{path}: weights do not fit the config ({what}); use the run's config")
    model.load_state_dict(state)
    return model.eval()


@dataclass
class Run:
    """A loaded run: its folder, config and VQ-VAE."""

    dir: RunDir
    config: Config
    vqvae: VQVAE

    def data_root(self, data: str | None = None) -> str:
        """The data the run was trained on (RUN/data.json), unless another is given."""
        if data:
            return str(data)
        try:
            return json.loads(self.dir.data_source.read_text())["data"]
        except (OSError, ValueError, KeyError, TypeError):
            raise RunError(
                f"{self.dir.data_source}: no readable record of the training data; pass --data"
            ) from None


def load_run(path: str | Path) -> Run:
    """Load a run folder's config and VQ-VAE (no code is unpickled)."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise RunError(f"{run.path}: run folder not found")
    if not run.config.exists():
        raise RunError(f"{run.config}: missing; is {run.path} a brainvq run folder?")
    cfg = Config.load(run.config)
    return Run(run, cfg, load_vqvae(run.vqvae, cfg))
