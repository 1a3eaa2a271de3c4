"""The mode and options of a pytest session, resolved once into an immutable record.

Precedence, decided here and nowhere else:
- mode: ``--llmops-live``/``--llmops-record``/``--llmops-record-mode``, then ``LLMOPS_MODE``
  and ``LLMOPS_RECORD_MODE``, then replay;
- record mode: ``--llmops-record-mode``, then (``--llmops-record`` being the short form of
  ``all``) ``LLMOPS_RECORD_MODE`` when the command line chose no mode, then ``all``;
- which tests get a cassette: the ``llmops_cassettes`` ini option (``fixtures`` or ``all``);
- tracking URI: ``--llmops-tracking-uri``, then the ``llmops_tracking_uri`` ini option,
  then ``MLFLOW_TRACKING_URI``, then the embedded store (None here);
- experiment: ``--llmops-experiment``, then the ``llmops_experiment`` ini option.


PYTEST_DONT_REWRITE: loaded at start-up (see :mod:`pytest_llmops.plugin`)."""

# No ``from __future__ import annotations``: NamedTuple would compile each field's string
# annotation (a ForwardRef) at every plugin load.
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, NamedTuple

import pytest

Mode = Literal["replay", "live", "record"]
MODES: tuple[Mode, ...] = ("replay", "live", "record")
RecordMode = Literal["all", "missing", "new"]
RECORD_MODES: tuple[RecordMode, ...] = ("all", "missing", "new")
CassetteScope = Literal["fixtures", "all"]
CASSETTE_SCOPES: tuple[CassetteScope, ...] = ("fixtures", "all")

settings_key = pytest.StashKey["Settings"]()


class Settings(NamedTuple):
    """Everything the plugin needs to know about this session's options (immutable; a
    NamedTuple rather than a frozen dataclass, whose generated methods cost a compile at
    every plugin load)."""

    mode: Mode
    rootdir: Path
    cassette_dir: Path
    record_mode: RecordMode = "all"
    """In record mode: ``all`` re-records every test, ``missing`` only tests without a
    cassette, ``new`` also appends the requests a cassette lacks."""
    cassettes: CassetteScope = "fixtures"
    """``fixtures``: tests that use an llmops fixture or marker get a cassette; ``all``: every test."""
    provision: bool = False
    keep_resources: bool = False
    strict: bool = False
    tracking_uri: str | None = None
    """The tracking URI the user configured, or None for the embedded default store."""
    tracking_uri_source: str | None = None
    """Where it was configured: the option, the ini option or the environment variable."""
    experiment: str | None = None
    report: Path | None = None
    drift_baseline: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    """Hosts reachable in replay besides loopback: ``--llmops-allow-host``, then the
    ``llmops_allowed_hosts`` ini option."""
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


def _env_choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...], noun: str) -> str | None:
    value = environ.get(name, "").strip().lower()
    if not value:
        return None
    if value not in choices:
        raise pytest.UsageError(
            f"{name}={environ[name]!r} is not {noun}. Use one of: {', '.join(choices)} (for example "
            f"`{name}={choices[-1]} pytest`), or unset it."
        )
    return value


def resolve_mode(
    live: bool, record: bool, environ: Mapping[str, str], record_mode: str | None = None
) -> tuple[Mode, RecordMode]:
    """The mode and record mode from the flags, else ``LLMOPS_MODE``/``LLMOPS_RECORD_MODE``,
    else replay. The command line wins over the environment."""
    if record_mode is not None and record_mode not in RECORD_MODES:
        raise pytest.UsageError(
            f"--llmops-record-mode={record_mode!r} is not one of {', '.join(RECORD_MODES)}. Example: "
            "`pytest --llmops-record-mode=missing` records only the tests that have no cassette yet."
        )
    if live and (record or record_mode):
        flag = "--llmops-record" if record else "--llmops-record-mode"
        raise pytest.UsageError(
            f"--llmops-live and {flag} contradict each other: live runs neither read nor "
            "write cassettes, record writes them. Pass one of them."
        )
    if live:
        return "live", "all"
    if record_mode:
        return "record", record_mode  # type: ignore[return-value,unused-ignore]
    if record:
        return "record", "all"  # the short form of --llmops-record-mode=all
    env_mode = _env_choice(environ, "LLMOPS_MODE", MODES, "a mode")
    env_record_mode = _env_choice(environ, "LLMOPS_RECORD_MODE", RECORD_MODES, "a record mode")
    if env_record_mode is not None:
        if env_mode not in (None, "record"):
            raise pytest.UsageError(
                f"LLMOPS_MODE={env_mode} and LLMOPS_RECORD_MODE={env_record_mode} contradict each other: "
                "a record mode implies record. Unset one of them."
            )
        return "record", env_record_mode  # type: ignore[return-value]
    return (env_mode or "replay"), "all"  # type: ignore[return-value]


def _ini_choice(config: pytest.Config, name: str, choices: tuple[str, ...], example: str) -> str:
    value = str(config.getini(name) or "").strip().lower() or choices[0]
    if value not in choices:
        raise pytest.UsageError(
            f"{name} = {config.getini(name)!r} is not one of {', '.join(choices)}. Example: "
            f"`{name} = {example}` in the [pytest] section of pytest.ini (or [tool.pytest.ini_options] "
            "of pyproject.toml)."
        )
    return value


def from_config(config: pytest.Config, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve the session's settings from pytest's config and the environment."""
    env = os.environ if environ is None else environ
    option = config.option
    rootdir = Path(config.rootpath)
    cassette_dir = Path(str(config.getini("llmops_cassette_dir")) or "cassettes")
    if not cassette_dir.is_absolute():
        cassette_dir = rootdir / cassette_dir
    tracking_uri, tracking_uri_source = _tracking_uri(config, env)
    report = Path(option.llmops_report) if option.llmops_report else None
    mode, record_mode = resolve_mode(
        option.llmops_live, option.llmops_record, env, getattr(option, "llmops_record_mode", None)
    )
    return Settings(
        mode=mode,
        rootdir=rootdir,
        cassette_dir=cassette_dir,
        record_mode=record_mode,
        cassettes=_ini_choice(config, "llmops_cassettes", CASSETTE_SCOPES, "all"),  # type: ignore[arg-type]
        provision=option.llmops_provision,
        keep_resources=option.llmops_keep_resources,
        strict=option.llmops_strict,
        tracking_uri=tracking_uri,
        tracking_uri_source=tracking_uri_source,
        experiment=option.llmops_experiment or str(config.getini("llmops_experiment") or "") or None,
        report=report,
        drift_baseline=option.llmops_drift_baseline,
        allowed_hosts=(*option.llmops_allow_host, *config.getini("llmops_allowed_hosts")),
        drift_fail=option.llmops_fail_on_drift,
        drift_html=_invocation_path(config, option.llmops_drift_html),
        drift_min_effect=tuple(option.llmops_min_effect or ()),
    )


def _tracking_uri(config: pytest.Config, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The configured tracking URI and where it was set (the first one not blank)."""
    candidates = (
        ("--llmops-tracking-uri", config.option.llmops_tracking_uri),
        ("the llmops_tracking_uri ini option", str(config.getini("llmops_tracking_uri") or "")),
        ("MLFLOW_TRACKING_URI", env.get("MLFLOW_TRACKING_URI")),
    )
    for source, value in candidates:
        if value and value.strip():
            return value.strip(), source
    return None, None


def _invocation_path(config: pytest.Config, value: str | None) -> Path | None:
    """A path option, relative to the folder pytest was started in."""
    return Path(config.invocation_params.dir, value) if value else None


def get(config: pytest.Config) -> Settings:
    """The settings resolved in ``pytest_configure``."""
    return config.stash[settings_key]
