"""This process's limiters, one per deployment (host and deployment name) for the whole
invocation, each backed by a file under ``resources.state_dir(config)`` that every process
of the run (the xdist controller and its workers) shares."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_llmops.traffic.limiter import Limiter, ReplayLimiter
from pytest_llmops.traffic.options import Options, options


def host_key(scheme: str, host: str, port: int | None) -> str:
    """``name:port`` of a URL, the port filled in from the scheme."""
    return f"{host}:{port or (443 if scheme == 'https' else 80)}"


class Pacer:
    """This process's limiters, one per deployment, all backed by files in ``directory``."""

    def __init__(self, directory: Path | None, opts: Options) -> None:
        self.directory = directory
        """None in replay: nothing is shared and nothing waits."""
        self.options = opts
        self.capacities: dict[tuple[str, str], int] = {}
        self._limiters: dict[tuple[str, str], Limiter] = {}
        self._lock = threading.Lock()

    def limiter(self, host: str, deployment: str) -> Limiter:
        """The limiter of ``deployment`` at ``host`` (``name:port``)."""
        key = (host, deployment)
        with self._lock:
            found = self._limiters.get(key)
            if found is None:
                if self.directory is None:
                    found = ReplayLimiter(deployment, host, self.options)
                else:
                    digest = hashlib.sha1(f"{host}/{deployment}".encode()).hexdigest()[:12]
                    path = self.directory / f"pacing-{digest}.json"
                    found = Limiter(path, deployment, host, self.options, self.capacities.get(key))
                self._limiters[key] = found
            return found

    def close(self) -> None:
        """Close the limiters' files (end of session)."""
        with self._lock:
            for found in self._limiters.values():
                found.close()

    def note_deployment(self, deployment: Any) -> None:
        """Remember the capacity of a deployment this run provisioned (capacity 10 = 10K TPM)."""
        capacity = getattr(deployment, "capacity", None)
        if capacity is None and getattr(deployment, "provisioned", False):
            from pytest_llmops.azure.provision import CAPACITY

            capacity = CAPACITY
        if not capacity:
            return
        from urllib.parse import urlsplit

        parts = urlsplit(deployment.endpoint)
        key = (host_key(parts.scheme, parts.hostname or "", parts.port), deployment.deployment)
        with self._lock:
            self.capacities[key] = int(capacity)
            if key in self._limiters:
                self._limiters[key].capacity = int(capacity)


pacer_key = pytest.StashKey["Pacer | None"]()
_making = threading.Lock()


def pacer(config: pytest.Config) -> Pacer | None:
    """This process's pacer (one that never waits in replay); None with ``llmops_pacing = false``."""
    with _making:  # one per process, whichever thread (an app's own client's, say) asks first
        return _pacer(config)


def _pacer(config: pytest.Config) -> Pacer | None:
    if pacer_key not in config.stash:
        from pytest_llmops import resources
        from pytest_llmops import settings as settings_mod

        opts = options(config)
        live = settings_mod.get(config).network
        made = Pacer(resources.state_dir(config) if live else None, opts) if opts.enabled else None
        if made is not None:
            config.add_cleanup(made.close)
        config.stash[pacer_key] = made
    return config.stash[pacer_key]
