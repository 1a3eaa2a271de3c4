"""``pytest-llmops sweep``: delete the cloud resources pytest-llmops created and left behind.

A resource is swept only if it carries ``CreatedBy=pytest-llmops`` (see ``resources.tags``)
and is due: its ``RemoveAfter`` hour (UTC) has passed, or, with ``--older-than DURATION``,
it was created at least that long ago (whatever ``RemoveAfter`` says). Untagged
resources are never touched. The decision is made here, once, for every kind of resource.

Each kind of resource has a finder; adding one is one line in :data:`SWEEPERS`, naming a
function ``"module:function"`` that takes no argument and returns the resources it sees as
:class:`Resource` objects (tags, creation time if known, and a ``delete`` callable), or
raises :class:`~pytest_llmops.errors.SweepUnavailable` when its cloud is not configured.
Modules are imported only when a sweep runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from pytest_llmops.errors import SweepUnavailable
from pytest_llmops.resources import (
    CREATED_BY,
    DEFAULT_LIFETIME,
    TAG_CREATED_BY,
    TAG_REMOVE_AFTER,
    TAG_SESSION,
    parse_remove_after,
)

SWEEPERS: tuple[str, ...] = (
    "pytest_llmops.databricks.sweep:find_clusters",
    "pytest_llmops.databricks.sweep:find_secret_scopes",
    "pytest_llmops.azure.sweep:find_resources",
)
"""Every finder, as ``"module:function"`` (one line each)."""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Resource:
    """A cloud resource a finder saw: its tags, its creation time when the cloud says, and
    how to delete it."""

    kind: str
    id: str
    delete: Callable[[], None] = field(repr=False, compare=False)
    name: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    created: dt.datetime | None = None
    detail: str = ""
    """Shown in the listing, e.g. ``resource group rg, eastus2``."""

    @property
    def ours(self) -> bool:
        """Whether pytest-llmops created it (only such resources are ever swept)."""
        return self.tags.get(TAG_CREATED_BY) == CREATED_BY

    @property
    def remove_after(self) -> dt.datetime | None:
        return parse_remove_after(self.tags.get(TAG_REMOVE_AFTER, ""))

    def age(self, now: dt.datetime) -> dt.timedelta | None:
        """How long ago it was created (from its ``RemoveAfter`` tag when the cloud does not say)."""
        created = self.created
        if created is None and self.remove_after is not None:
            created = self.remove_after - DEFAULT_LIFETIME
        return None if created is None else now - created

    def due(self, now: dt.datetime, older_than: dt.timedelta | None = None) -> bool:
        """Whether a sweep deletes it now."""
        if not self.ours:
            return False
        if older_than is not None:
            age = self.age(now)
            return age is not None and age >= older_than
        return self.remove_after is not None and self.remove_after <= now

    def describe(self) -> str:
        name = f" ({self.name})" if self.name and self.name != self.id else ""
        detail = f", {self.detail}" if self.detail else ""
        session = self.tags.get(TAG_SESSION)
        extra = f", session {session}" if session else ""
        remove_after = self.tags.get(TAG_REMOVE_AFTER, "-")
        return f"{self.kind} {self.id}{name}{detail}: RemoveAfter {remove_after}{extra}"


Finder = Callable[[], Iterable[Resource]]


def load(spec: str) -> Finder:
    """The finder named ``"module:function"``."""
    module, _, function = spec.partition(":")
    finder: Finder = getattr(importlib.import_module(module), function)
    return finder


def parse_duration(text: str) -> dt.timedelta:
    """``90m``, ``2h``, ``1h30m``, ``1d``, ``0`` -> a timedelta (argparse type)."""
    value = text.strip().replace(" ", "")
    if value == "0":
        return dt.timedelta(0)
    parts = _DURATION.findall(value)
    if not parts or "".join(f"{n}{u}" for n, u in parts).lower() != value.lower():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use a number and a unit (s, m, h, d, w), e.g. 90m, 2h or 1d12h"
        )
    return dt.timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in parts))


def sweep(
    sweepers: Iterable[str] = SWEEPERS,
    *,
    dry_run: bool = False,
    older_than: dt.timedelta | None = None,
    now: dt.datetime | None = None,
    out: TextIO | None = None,
) -> int:
    """Find and delete due resources; returns the exit code (0 done, 1 a deletion failed,
    2 no sweeper could run)."""
    out = out or sys.stdout
    now = now or dt.datetime.now(dt.UTC)
    ran = failed = deleted = kept = untouched = 0
    for spec in sweepers:
        try:
            found = list(load(spec)())
        except SweepUnavailable as error:
            print(f"skipped: {error}", file=out)
            continue
        except Exception as error:
            ran += 1
            failed += 1
            print(f"FAILED to list resources ({spec}): {error}", file=out)
            continue
        ran += 1
        for resource in found:
            if not resource.ours:
                untouched += 1
                continue
            if not resource.due(now, older_than):
                kept += 1
                print(f"kept {resource.describe()} (not due yet)", file=out)
                continue
            if dry_run:
                print(f"would delete {resource.describe()}", file=out)
                deleted += 1
                continue
            try:
                resource.delete()
            except Exception as error:
                failed += 1
                print(f"FAILED to delete {resource.describe()}: {error}", file=out)
            else:
                deleted += 1
                print(f"deleted {resource.describe()}", file=out)
    if not ran:
        print(
            "Nothing was swept: no sweeper could run (see `skipped:` above). Configure a cloud (for "
            "Databricks: DATABRICKS_HOST and DATABRICKS_TOKEN, or a profile), then rerun "
            "`pytest-llmops sweep`.",
            file=out,
        )
        return 2
    verb = "would delete" if dry_run else "deleted"
    print(
        f"{verb} {deleted}, kept {kept} not due, failed {failed}; {untouched} resource(s) not created by "
        "pytest-llmops were not touched.",
        file=out,
    )
    if failed:
        print("Rerun `pytest-llmops sweep` to retry the failed deletions.", file=out)
    return 1 if failed else 0


def _command(args: argparse.Namespace) -> int:
    from pytest_llmops import extras

    extras.require("pytest-llmops sweep", *extras.ARM_MODULES, "databricks.sdk")  # main() prints it
    return sweep(dry_run=args.dry_run, older_than=args.older_than)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``pytest-llmops sweep``."""
    parser = subparsers.add_parser(
        "sweep",
        help="delete cloud resources pytest-llmops created and left behind",
        description="Delete resources tagged CreatedBy=pytest-llmops whose RemoveAfter hour (UTC) has "
        "passed (Databricks clusters: terminated, then permanently deleted; secret scopes named "
        "pytest-llmops-<session>-removeafter-<hour>: deleted). Untagged resources are "
        "never touched. Exit status: 0 done, 1 a deletion failed, 2 nothing configured.",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    parser.add_argument(
        "--older-than",
        metavar="DURATION",
        type=parse_duration,
        default=None,
        help="instead of RemoveAfter, sweep tagged resources created at least DURATION ago "
        "(e.g. 30m, 2h, 1d; 0 for every tagged resource)",
    )
    parser.set_defaults(command=_command)
