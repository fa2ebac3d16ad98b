"""The checks each config section runs on its values (``validate``): one ConfigError naming the
setting and the rule it breaks."""

from __future__ import annotations

import re
from typing import Any

from brainvq.errors import ConfigError


def need(ok: bool, name: str, value: Any, rule: str) -> None:
    """Raise ConfigError 'name = value: rule' unless ok."""
    if not ok:
        raise ConfigError(f"{name} = {value!r}: {rule}")


def positive(section: Any, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        need(value >= 1, f"{prefix}.{name}", value, "must be a positive integer")


def non_negative(section: Any, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        need(value >= 0, f"{prefix}.{name}", value, "must be >= 0")


def one_of(section: Any, prefix: str, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(section, name)
    need(value in choices, f"{prefix}.{name}", value, f"use {' or '.join(choices)}")


def check_subject_pattern(pattern: str, name: str = "data.subject_pattern") -> None:
    """Refuse a subject pattern that is no regular expression or has more than one group."""
    if not pattern:
        return
    try:
        groups = re.compile(pattern).groups
    except (re.error, OverflowError, RecursionError) as e:
        raise ConfigError(f"{name} = '{pattern}': not a regular expression ({e})") from None
    if groups > 1:
        raise ConfigError(
            f"{name} = '{pattern}': has {groups} groups; put one group around the subject "
            "(e.g. 'patient(\\d+)'), or none to take the whole match"
        )
