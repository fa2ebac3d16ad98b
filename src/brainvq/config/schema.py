"""The whole config (``Config``): its sections, TOML in and out, and `section.key=value` overrides.

Reading a value names the setting it fails on; keys of older brainvq versions (brainvq.config.legacy)
are read into their new places."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from brainvq.config.legacy import LEGACY_KEYS
from brainvq.config.prior import PriorConfig
from brainvq.config.sections import (
    AnomalyConfig,
    DataConfig,
    EvalConfig,
    TrainConfig,
    TuneConfig,
    VQVAEConfig,
)
from brainvq.errors import ConfigError
from brainvq.io import atomic_write_text

PRESETS = Path(__file__).parent.parent / "configs"  # named configs: `--config quick`


@dataclass
class Config:
    """The whole configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)

    def validate(self) -> Config:
        """Check values that would fail later; raise ConfigError naming the setting."""
        for name, value in _leaves(self):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name} = {value}: must be a finite number")
        for section in fields(self):
            getattr(self, section.name).validate()
        d, v = self.data, self.vqvae
        if d.image_size < v.downsample or d.image_size % v.downsample:
            raise ConfigError(
                f"data.image_size = {d.image_size} is not divisible by vqvae.downsample = "
                f"{v.downsample}: pick a multiple of {v.downsample} (e.g. 128 or 256)"
            )
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict of every value."""
        return _as_dict(self)

    def to_toml(self) -> str:
        """The config as TOML text."""
        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | Path) -> None:
        """Write the config to a TOML file atomically."""
        atomic_write_text(Path(path), self.to_toml())

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> Config:
        """Build a config from a nested dict; unknown sections or keys are errors. Keys of older
        brainvq versions (LEGACY_KEYS) are read into their new places."""
        cfg = cls()
        for dotted, value in _flatten(raw, source):
            for target in LEGACY_KEYS.get(dotted, (dotted,)):
                _set_value(cfg, target, value, source)
        return cfg.validate()

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a TOML file, or a preset by name (`quick`: PRESETS/quick.toml); raise ConfigError
        for a missing file, bad TOML or unknown keys."""
        path = Path(path)
        if not path.exists() and (PRESETS / f"{path}.toml").exists():
            path = PRESETS / f"{path}.toml"
        try:
            # bytes, not read_text: newline translation would turn a lone CR (invalid TOML) into
            # a line break and accept a file that TOML itself refuses
            raw = tomllib.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid TOML ({e})") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
        return cls.from_dict(raw, source=str(path))

    def budget_assignments(
        self, sections: tuple[str, ...], max_steps: int | None, max_minutes: float | None
    ) -> list[str]:
        """`section.max_steps=N` / `section.max_minutes=M` for each budgeted section given (train,
        prior, tune), for `override`; None leaves a key as it is. Decoder tuning is left off where
        it would otherwise be enabled by the new budget (``tune`` with no budget means: no tuning),
        unless it is the only section given."""
        out = []
        for section in sections:
            if section == "tune" and len(sections) > 1 and not self.tune.enabled():
                continue
            for key, value in (("max_steps", max_steps), ("max_minutes", max_minutes)):
                if value is not None:
                    out.append(f"{section}.{key}={value}")
        return out

    def override(self, assignments: list[str]) -> Config:
        """Apply `section.key=value` strings (values parsed as TOML, else taken as strings)."""
        for item in assignments:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: write it as section.key=value")
            dotted, text = (part.strip() for part in item.split("=", 1))
            if dotted.count(".") < 1:
                raise ConfigError(f"override {item!r}: the key must be section.key, e.g. vqvae.K")
            if dotted in LEGACY_KEYS:
                new = " and ".join(f"--{k}" for k in LEGACY_KEYS[dotted])
                raise ConfigError(f"--{dotted} is an old key: use {new}")
            _set_value(self, dotted, _parse_scalar(text), "command line")
        return self.validate()


def members(section: Any) -> dict[str, Any]:
    """{name: value} of a section's settings and sub-sections (the prior's kinds too)."""
    out = {f.name: getattr(section, f.name) for f in fields(section)}
    if hasattr(section, "kind_sections"):
        out |= section.kind_sections()
    return out


def _as_dict(section: Any) -> dict[str, Any]:
    """A section as a nested dict of plain values (lists copied)."""
    return {
        k: _as_dict(v) if dataclasses.is_dataclass(v) else list(v) if isinstance(v, list) else v
        for k, v in members(section).items()
    }


def _leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, value) of every setting under a config or section."""
    out = []
    for key, value in members(obj).items():
        name = f"{prefix}{key}"
        out += _leaves(value, name + ".") if dataclasses.is_dataclass(value) else [(name, value)]
    return out


def _flatten(raw: dict[str, Any], source: str, prefix: str = "") -> list[tuple[str, Any]]:
    """A nested TOML dict as (dotted key, value) pairs."""
    out = []
    for key, value in raw.items():
        if isinstance(value, dict):
            out += _flatten(value, source, f"{prefix}{key}.")
        elif not prefix:
            raise ConfigError(f"{source}: {key} = {value!r} must sit in a [section]")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _parse_scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_value(cfg: Config, dotted: str, value: Any, source: str) -> None:
    """Set the setting named like `prior.maskgit.steps`, converting and checking its type."""
    *path, key = dotted.split(".")
    sub: Any = cfg
    for depth, part in enumerate(path):
        known = {k for k, v in members(sub).items() if dataclasses.is_dataclass(v)}
        if part not in known:
            where = ".".join(path[:depth]) or "sections"
            raise ConfigError(
                f"{source}: unknown section {'.'.join(path[: depth + 1])}; known {where}: "
                f"{', '.join(sorted(known))}"
            )
        sub = getattr(sub, part)
    section = ".".join(path)
    known_keys = set(members(sub))
    if key not in known_keys:
        raise ConfigError(
            f"{source}: unknown key {dotted}; known keys of [{section}]: "
            f"{', '.join(sorted(known_keys))}"
        )
    default = getattr(type(sub)(), key)
    if dataclasses.is_dataclass(default):
        raise ConfigError(f"{source}: {dotted} is a section; set {dotted}.KEY")
    setattr(sub, key, _convert(default, value, f"{source}: {dotted}"))


def _convert(default: Any, value: Any, name: str) -> Any:
    """value as the type of default, or ConfigError."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            value = value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"{name} = {value!r} must be true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} = {value!r} must be an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} = {value!r} must be a number")
        value = float(value)
    elif kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{name} = {value!r} must be a string")
        value = str(value)
    elif kind is list:  # a list of names: ["cdr", "age"], or "cdr,age" on the command line
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f'{name} = {value!r} must be a list of names, e.g. ["cdr"]')
        value = list(value)
    return value
