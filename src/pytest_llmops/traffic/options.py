"""The pacing ini options, read and checked once per process."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_llmops.traffic.estimate import DEFAULT_COMPLETION_TOKENS

DEFAULT_MAX_429_RETRIES = 6


@dataclass(frozen=True)
class Options:
    """The pacing ini options, resolved once per process."""

    enabled: bool = True
    tokens: int | None = None
    requests: int | None = None
    window: float | None = None
    max_retries: int = DEFAULT_MAX_429_RETRIES
    completion_budget: int = DEFAULT_COMPLETION_TOKENS


def _ini_number(config: pytest.Config, name: str, kind: type[int] | type[float], example: str) -> Any:
    raw = str(config.getini(name) or "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < 0 or (kind is float and not math.isfinite(value)):
        noun = "whole number" if kind is int else "number"
        raise pytest.UsageError(f"{name} = {raw!r} is not a {noun} >= 0. Example: `{name} = {example}`.")
    return value


def options(config: pytest.Config) -> Options:
    """The pacing options of this session's ini file."""
    retries = _ini_number(config, "llmops_max_429_retries", int, "6")
    window = _ini_number(config, "llmops_rate_limit_window", float, "60")
    return Options(
        enabled=bool(config.getini("llmops_pacing")),
        tokens=_ini_number(config, "llmops_tokens_per_minute", int, "10000") or None,
        requests=_ini_number(config, "llmops_requests_per_minute", int, "60") or None,
        window=window or None,
        max_retries=DEFAULT_MAX_429_RETRIES if retries is None else retries,
    )
