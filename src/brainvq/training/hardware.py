"""What the machine can do: BF16 on the CPU, CUDA, and the Lightning precision to use."""

from __future__ import annotations

import functools
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU has native BF16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_accelerator(requested: str = "auto") -> str:
    """'cuda'/'gpu' when asked for or available under auto, else 'cpu'."""
    if requested in ("gpu", "cuda"):
        return "gpu"
    if requested == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return requested


def resolve_precision(requested: str, accelerator: str) -> str:
    """Lightning precision string for config train.precision (auto | 32 | bf16 | 16) without
    measuring: auto is bf16 on any BF16 CPU here. Stages measure instead (brainvq.training.
    precision.stage_precision); this serves a trainer built without that choice."""
    if requested == "32":
        return "32-true"
    if requested == "bf16":
        return "bf16-mixed"
    if requested == "16":
        return "16-mixed"
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"
