"""Marker arguments checked at collection, each mistake a usage error naming the test."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

MATCH_FIELDS = ("method", "host", "path", "query", "body")


@dataclass(frozen=True)
class CassetteOptions:
    """Arguments of ``@pytest.mark.llmops_cassette``."""

    name: str | None = None
    match_on: tuple[str, ...] | None = None
    allow_repeats: bool = False


@dataclass(frozen=True)
class RunOptions:
    """Arguments of ``@pytest.mark.llmops``."""

    experiment: str | None = None
    run_name: str | None = None
    params: Mapping[str, Any] | None = None
    tags: Mapping[str, str] | None = None
    autolog: bool = True
    repeat: int = 1
    """How many times the test body runs (each repetition its own child run and cassette)."""
    min_pass_rate: float = 1.0
    """The share of repetitions that must pass for the test to pass (0..1)."""


def _fail(nodeid: str, marker: str, problem: str, signature: str) -> pytest.UsageError:
    return pytest.UsageError(f"{nodeid}: @pytest.mark.{marker}: {problem}. Signature: {signature}.")


def _kwargs(
    nodeid: str, mark: pytest.Mark, allowed: Iterable[str], signature: str, positional: tuple[str, ...] = ()
) -> dict[str, Any]:
    allowed = tuple(allowed)
    if len(mark.args) > len(positional):
        raise _fail(nodeid, mark.name, f"takes keyword arguments only, got {mark.args!r}", signature)
    kwargs = dict(zip(positional, mark.args, strict=False))
    for key, value in mark.kwargs.items():
        if key in kwargs:
            raise _fail(nodeid, mark.name, f"{key!r} given twice", signature)
        kwargs[key] = value
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise _fail(
            nodeid, mark.name, f"unknown argument(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})",
            signature,
        )
    return kwargs


CASSETTE_SIGNATURE = "llmops_cassette(name=None, match_on=None, allow_repeats=False)"
RUN_SIGNATURE = (
    "llmops(experiment=None, run_name=None, params=None, tags=None, autolog=True, repeat=1, "
    "min_pass_rate=1.0)"
)
RUN_ARGUMENTS = ("experiment", "run_name", "params", "tags", "autolog", "repeat", "min_pass_rate")


def cassette_options(nodeid: str, mark: pytest.Mark | None) -> CassetteOptions:
    """Validated ``llmops_cassette`` arguments (defaults when the test has no marker)."""
    if mark is None:
        return CassetteOptions()
    sig = CASSETTE_SIGNATURE
    kwargs = _kwargs(nodeid, mark, ("name", "match_on", "allow_repeats"), sig, positional=("name",))
    name = kwargs.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise _fail(nodeid, mark.name, f"name must be a non-empty path string, got {name!r}", sig)
    if name is not None and (name.startswith("/") or ".." in name.replace("\\", "/").split("/")):
        raise _fail(nodeid, mark.name, f"name must be relative to the cassette folder, got {name!r}", sig)
    match_on = kwargs.get("match_on")
    if match_on is not None:
        if isinstance(match_on, str) or not isinstance(match_on, Iterable):
            raise _fail(nodeid, mark.name, f"match_on must be a list of fields, got {match_on!r}", sig)
        match_on = tuple(match_on)
        bad = [f for f in match_on if f not in MATCH_FIELDS]
        if bad or not match_on:
            raise _fail(
                nodeid, mark.name,
                f"match_on fields must be among {', '.join(MATCH_FIELDS)}, got {list(match_on)!r}", sig,
            )
    allow_repeats = kwargs.get("allow_repeats", False)
    if not isinstance(allow_repeats, bool):
        raise _fail(nodeid, mark.name, f"allow_repeats must be True or False, got {allow_repeats!r}", sig)
    return CassetteOptions(name=name, match_on=match_on, allow_repeats=allow_repeats)


def run_options(nodeid: str, mark: pytest.Mark) -> RunOptions:
    """Validated ``llmops`` marker arguments."""
    sig = RUN_SIGNATURE
    kwargs = _kwargs(nodeid, mark, RUN_ARGUMENTS, sig)
    for key in ("experiment", "run_name"):
        value = kwargs.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise _fail(nodeid, mark.name, f"{key} must be a non-empty string, got {value!r}", sig)
    for key in ("params", "tags"):
        value = kwargs.get(key)
        if value is not None and (
            not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value)
        ):
            raise _fail(nodeid, mark.name, f"{key} must be a dict with string keys, got {value!r}", sig)
    autolog = kwargs.get("autolog", True)
    if not isinstance(autolog, bool):
        raise _fail(nodeid, mark.name, f"autolog must be True or False, got {autolog!r}", sig)
    repeat = kwargs.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise _fail(nodeid, mark.name, f"repeat must be a whole number >= 1, got {repeat!r}", sig)
    min_pass_rate = kwargs.get("min_pass_rate", 1.0)
    if (
        isinstance(min_pass_rate, bool)
        or not isinstance(min_pass_rate, (int, float))
        or not 0.0 <= min_pass_rate <= 1.0
    ):
        raise _fail(
            nodeid, mark.name,
            f"min_pass_rate must be a number from 0 to 1 (the share of repetitions that must pass, "
            f"e.g. min_pass_rate=0.8 with repeat=5), got {min_pass_rate!r}", sig,
        )
    return RunOptions(
        experiment=kwargs.get("experiment"),
        run_name=kwargs.get("run_name"),
        params=kwargs.get("params"),
        tags=kwargs.get("tags"),
        autolog=autolog,
        repeat=repeat,
        min_pass_rate=float(min_pass_rate),
    )
