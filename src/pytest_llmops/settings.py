"""The mode and options of a pytest session, resolved once into a frozen dataclass.

Precedence, decided here and nowhere else:
- mode: ``--llmops-live``/``--llmops-record``, then ``LLMOPS_MODE``, then replay;
- tracking URI: ``--llmops-tracking-uri``, then the ``llmops_tracking_uri`` ini option,
  then ``MLFLOW_TRACKING_URI``, then the embedded store (None here);
- experiment: ``--llmops-experiment``, then the ``llmops_experiment`` ini option.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

if TYPE_CHECKING:
    from collections.abc import Mapping

Mode = Literal["replay", "live", "record"]
MODES: tuple[Mode, ...] = ("replay", "live", "record")

settings_key = pytest.StashKey["Settings"]()


@dataclass(frozen=True)
class Settings:
    """Everything the plugin needs to know about this session's options."""

    mode: Mode
    rootdir: Path
    cassette_dir: Path
    provision: bool = False
    keep_resources: bool = False
    strict: bool = False
    tracking_uri: str | None = None
    """The tracking URI the user configured, or None for the embedded default store."""
    experiment: str | None = None
    report: Path | None = None
    drift_baseline: str | None = None
    drift_fail: bool = False
    drift_html: Path | None = None
    drift_min_effect: tuple[str, ...] = ()

    @property
    def is_replay(self) -> bool:
        return self.mode == "replay"

    @property
    def network(self) -> bool:
        """Whether tests may reach real services."""
        return self.mode != "replay"


def resolve_mode(live: bool, record: bool, environ: Mapping[str, str]) -> Mode:
    """The mode from the flags, else ``LLMOPS_MODE``, else replay."""
    if live and record:
        raise pytest.UsageError(
            "--llmops-live and --llmops-record contradict each other: live runs neither read nor "
            "write cassettes, record writes them. Pass one of them."
        )
    if live:
        return "live"
    if record:
        return "record"
    value = environ.get("LLMOPS_MODE", "").strip().lower()
    if not value:
        return "replay"
    if value not in MODES:
        raise pytest.UsageError(
            f"LLMOPS_MODE={environ['LLMOPS_MODE']!r} is not a mode. Use one of: "
            f"{', '.join(MODES)} (for example `LLMOPS_MODE=replay pytest`), or unset it."
        )
    return value  # type: ignore[return-value,unused-ignore]


def from_config(config: pytest.Config, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve the session's settings from pytest's config and the environment."""
    env = os.environ if environ is None else environ
    option = config.option
    rootdir = Path(config.rootpath)
    cassette_dir = Path(str(config.getini("llmops_cassette_dir")) or "cassettes")
    if not cassette_dir.is_absolute():
        cassette_dir = rootdir / cassette_dir
    tracking_uri = (
        option.llmops_tracking_uri
        or str(config.getini("llmops_tracking_uri") or "")
        or env.get("MLFLOW_TRACKING_URI")
        or None
    )
    report = Path(option.llmops_report) if option.llmops_report else None
    return Settings(
        mode=resolve_mode(option.llmops_live, option.llmops_record, env),
        rootdir=rootdir,
        cassette_dir=cassette_dir,
        provision=option.llmops_provision,
        keep_resources=option.llmops_keep_resources,
        strict=option.llmops_strict,
        tracking_uri=tracking_uri,
        experiment=option.llmops_experiment or str(config.getini("llmops_experiment") or "") or None,
        report=report,
        drift_baseline=option.llmops_drift_baseline,
        drift_fail=option.llmops_fail_on_drift,
        drift_html=_invocation_path(config, option.llmops_drift_html),
        drift_min_effect=tuple(option.llmops_min_effect or ()),
    )


def _invocation_path(config: pytest.Config, value: str | None) -> Path | None:
    """A path option, relative to the folder pytest was started in."""
    return Path(config.invocation_params.dir, value) if value else None


def get(config: pytest.Config) -> Settings:
    """The settings resolved in ``pytest_configure``."""
    return config.stash[settings_key]
