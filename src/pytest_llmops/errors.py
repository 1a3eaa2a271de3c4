"""Every error a user of pytest-llmops can see, each with the fix in its message."""

from __future__ import annotations

import os


class LLMOpsError(Exception):
    """Base class of the plugin's errors."""


class MissingExtra(LLMOpsError):
    """A fixture, marker, option or command whose optional extra is not installed; the
    message names the ``pip install 'pytest-llmops[...]'`` that fixes it."""


class CassetteError(LLMOpsError):
    """A cassette file that cannot be used: not a cassette, truncated, unsafe YAML tags."""

    def __init__(self, path: object, problem: str, fix: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        fix = fix or (
            "Fix or delete the file, then record it again with `pytest --llmops-record` "
            "(against the real service or a local double)."
        )
        super().__init__(f"Cassette {self.path} cannot be used: {problem}\n{fix}")


class CassetteWriteError(LLMOpsError):
    """A cassette could not be written: its folder is full, read-only or not writable."""

    def __init__(self, path: object, why: str) -> None:
        self.path = str(path)
        folder = os.path.dirname(self.path) or "."
        super().__init__(
            f"Cannot write cassette {self.path}: its folder {folder} cannot take it ({why}). Nothing "
            "was written and the previous file, if any, is unchanged. Free space or make the folder "
            "writable (or point the `llmops_cassette_dir` ini option at another folder), then "
            "record again with `pytest --llmops-record`."
        )


class ReplayMiss(LLMOpsError):
    """A request made during replay that the test's cassette has no recording for."""

    def __init__(self, message: str, *, nodeid: str = "", request: str = "", cassette: str = "") -> None:
        self.nodeid = nodeid
        self.request = request
        self.cassette = cassette
        super().__init__(message)


class SecretLeak(LLMOpsError):
    """A cassette about to be written still holds something secret-shaped."""

    def __init__(self, path: object, findings: list[tuple[int, str]]) -> None:
        self.path = str(path)
        self.findings = findings
        where = ", ".join(f"line {line}: {rule}" for line, rule in findings[:10])
        more = f" and {len(findings) - 10} more" if len(findings) > 10 else ""
        super().__init__(
            f"Not writing cassette {self.path}: it still holds secret-shaped data ({where}{more}). "
            "Nothing was written. Scrub it by adding a sanitizer in the `pytest_llmops_configure` "
            "hook of your conftest.py (recorder.add_secret(value) or recorder.add_sanitizer(fn)), "
            "then record again with `pytest --llmops-record`."
        )


class UnrecordedRequests(UserWarning):
    """Record mode: a test without a cassette made HTTP requests; nothing was recorded."""


class MissingCredential(LLMOpsError):
    """A variable needed in live or record mode is not set (raised under --llmops-strict)."""


class ProvisioningError(LLMOpsError):
    """A cloud resource could not be created, started or removed."""


class QuotaExceeded(ProvisioningError):
    """A cloud resource could not start for lack of regional quota (CPU cores, ...)."""


class RemoteCommandError(LLMOpsError):
    """Python code run on a Databricks cluster raised; the message holds the remote traceback."""

    def __init__(self, message: str, *, summary: str = "", remote_traceback: str = "") -> None:
        self.summary = summary
        self.remote_traceback = remote_traceback
        super().__init__(message)


class WorkspaceConfigError(LLMOpsError):
    """The Databricks SDK refused the workspace configuration (a bad profile, host, ...)."""


class SweepUnavailable(LLMOpsError):
    """A sweeper cannot run: its cloud is not configured (the message says what to set)."""


class RateLimitExhausted(LLMOpsError):
    """A paced request was still answered 429 after its retry budget (``llmops_max_429_retries``)."""


class EvaluationError(LLMOpsError):
    """A scorer or judge of ``llmops_eval`` could not give a result (it raised, or the judge's
    answer could not be read), or ``llmops_eval`` was used where it cannot score."""


class ClusterEnvironmentMissing(LLMOpsError):
    """A Databricks cluster lacks environment variables its code reads (the message says
    what to set on the cluster, and how)."""


class TrackingError(LLMOpsError):
    """The MLflow tracking store cannot be used: its URI, or the store itself (unreachable,
    read-only, corrupt, locked, full). The message names the store and the fix; ``kind``
    says which (``"unreachable"``, ``"read_only"``, ``"corrupt"``, ``"locked"``, ``"full"``...)."""

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind
