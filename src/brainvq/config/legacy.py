"""Keys of configs written before the per-kind prior sections (flat keys such as
`prior.maskgit_steps`): ``LEGACY_KEYS`` maps each old key to its new place(s). Config files and
weight files that hold them still load; on the command line an old key is refused with a message
naming the new one. The list is history: a new kind adds nothing here."""

from __future__ import annotations

from dataclasses import fields

from brainvq.config.kinds.dcgan import DCGANConfig


def _old_prior_keys() -> dict[str, tuple[str, ...]]:
    """Flat prior.* keys of configs written before the per-kind sections -> their new places."""
    legacy: dict[str, tuple[str, ...]] = {
        f"prior.{f.name}": (f"prior.dcgan.{f.name}",) for f in fields(DCGANConfig)
    }
    shared = ("pixelcnn", "transformer", "maskgit")
    for name in ("lr", "weight_decay", "warmup_steps"):
        legacy[f"prior.{name}"] = tuple(f"prior.{k}.{name}" for k in shared)
    legacy["prior.dropout"] = ("prior.transformer.dropout", "prior.maskgit.dropout")
    for name in ("channels", "layers", "kernel"):
        legacy[f"prior.pixelcnn_{name}"] = (f"prior.pixelcnn.{name}",)
    for name in ("dim", "layers", "heads", "kv_heads"):
        legacy[f"prior.transformer_{name}"] = (f"prior.transformer.{name}", f"prior.maskgit.{name}")
    legacy["prior.transformer_window"] = ("prior.transformer.window",)
    legacy["prior.maskgit_steps"] = ("prior.maskgit.steps",)
    legacy["prior.maskgit_noise"] = ("prior.maskgit.noise",)
    legacy["prior.tune_decoder_minutes"] = ("tune.max_minutes",)
    return legacy


LEGACY_KEYS = _old_prior_keys()
