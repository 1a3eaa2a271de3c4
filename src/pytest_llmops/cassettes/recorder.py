"""Cassettes on vcrpy: the session's :class:`Recorder` and a test's :class:`Cassette`.

vcrpy does the interception (httpx and httpx2 for openai, requests and urllib3 for
databricks-sdk and azure-core, aiohttp, ...). This module decides what is matched, how
a miss is explained, and when a cassette is written.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from vcr.cassette import Cassette as VcrCassette
from vcr.record_mode import RecordMode

from pytest_llmops.cassettes import storage
from pytest_llmops.cassettes.clock import NoSleep, no_sleep
from pytest_llmops.cassettes.interception import Interceptor
from pytest_llmops.cassettes.matching import DEFAULT_IGNORED_BODY_FIELDS, FIELDS, nearest, request_key
from pytest_llmops.cassettes.sanitize import Sanitizer
from pytest_llmops.cassettes.staleness import Staleness, answer_of
from pytest_llmops.cassettes.staleness import compare as compare_answers
from pytest_llmops.errors import ReplayMiss, SecretLeak
from pytest_llmops.secrets.known import KnownSecrets
from pytest_llmops.secrets.rules import Names
from pytest_llmops.secrets.scan import scan_text
from pytest_llmops.settings import Mode

Matcher = Callable[[Any, Any], Any]


def record_command(nodeid: str | None) -> str:
    """The command that records a test's cassette (or the whole suite's)."""
    return f"pytest --llmops-record '{nodeid}'" if nodeid and "::" in nodeid else "pytest --llmops-record"


class Recorder:
    """Session-wide cassette configuration: what is scrubbed and how requests match.

    Given to ``pytest_llmops_configure(config, recorder)`` so that a project can extend it.
    """

    def __init__(
        self,
        mode: Mode,
        cassette_dir: Path,
        environ: Mapping[str, str] | None = None,
        *,
        known: KnownSecrets | None = None,
        names: Names | None = None,
    ) -> None:
        self.mode: Mode = mode
        self.cassette_dir = cassette_dir
        # known/names: the session's (pytest_llmops.secrets.session), shared with MLflow's scrubbing.
        self.sanitizer = Sanitizer.from_environ(os.environ if environ is None else environ, known, names)
        self.ignored_body_fields: set[str] = set(DEFAULT_IGNORED_BODY_FIELDS)
        self.matchers: dict[str, Matcher] = {}
        self.interceptor = Interceptor()

    def close(self) -> None:
        """Remove the HTTP interception (end of session)."""
        self.interceptor.stop()

    # -- the extension API -----------------------------------------------------------
    def add_secret(self, value: str | None, name: str = "secret") -> None:
        """Scrub ``value`` (and its URL-encoded and base64 forms) from everything recorded."""
        self.sanitizer.add_secret(value, name)

    def add_sanitizer(
        self,
        request: Callable[[Any], Any] | None = None,
        response: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
    ) -> None:
        """Add vcrpy-style hooks run after the built-in scrubbing: ``request(vcr_request)``
        returns the request (or None to leave it unrecorded), ``response(dict)`` the response."""
        if request is not None:
            self.sanitizer.request_hooks.append(request)
        if response is not None:
            self.sanitizer.response_hooks.append(response)

    def add_secret_header(self, name: str) -> None:
        """Redact a header (requests and responses)."""
        self.sanitizer.secret_headers.add(name.lower())

    def add_secret_json_field(self, name: str) -> None:
        """Redact a JSON field, at any depth, in request and response bodies."""
        self.sanitizer.secret_json.add(name.lower())

    def add_ignored_body_field(self, name: str) -> None:
        """Ignore a JSON field (at any depth) when matching request bodies."""
        self.ignored_body_fields.add(name)

    def add_endpoint(self, url: str, role: str) -> None:
        """Replace the host of ``url`` by a placeholder (role: openai, databricks, arm, login)."""
        self.sanitizer.add_endpoint(url, role)

    def add_matcher(self, name: str, matcher: Matcher) -> None:
        """An extra vcrpy matcher ``matcher(r1, r2)`` (raise ``AssertionError`` or return False
        when they differ), checked after the built-in key matched."""
        self.matchers[name] = matcher

    # -- cassettes -------------------------------------------------------------------
    def cassette(
        self,
        path: Path,
        nodeid: str,
        *,
        match_on: tuple[str, ...] | None = None,
        allow_repeats: bool = False,
    ) -> Cassette:
        """The cassette of one test (or session fixture); loaded now in replay."""
        return Cassette(self, path, nodeid, match_on=match_on, allow_repeats=allow_repeats)


class _IndexedCassette(VcrCassette):  # type: ignore[misc]
    """vcrpy's cassette with O(1) matching on :func:`request_key` and the plugin's misses."""

    def __init__(self, owner: Cassette, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.owner = owner
        self._index: dict[Any, collections.deque[int]] | None = None
        self._stored_prepared: list[Any] = []
        self.no_sleep: NoSleep | None = None

    # request preparation, cached on the request object (vcrpy asks several times)
    def _prepare(self, request: Any) -> tuple[Any, Any]:
        fingerprint = (request.method, request.uri, id(request.body_bytes))
        cached = request.__dict__.get("_llmops_prepared")
        if cached is not None and cached[0] == fingerprint:
            return cached[1], cached[2]
        prepared = self._before_record_request(request)
        key = self.owner.key(prepared) if prepared is not None else None
        request.__dict__["_llmops_prepared"] = (fingerprint, prepared, key)
        return prepared, key

    def _ensure_index(self) -> dict[Any, collections.deque[int]]:
        if self._index is None:
            index: dict[Any, collections.deque[int]] = collections.defaultdict(collections.deque)
            self._stored_prepared = []
            for number, (stored, _) in enumerate(self.data):
                prepared = self._before_record_request(stored)
                self._stored_prepared.append(prepared)
                if prepared is not None:
                    index[self.owner.key(prepared)].append(number)
            self._index = index
        return self._index

    def _find(self, request: Any) -> int | None:
        prepared, key = self._prepare(request)
        if prepared is None:
            return None
        candidates = self._ensure_index().get(key, ())
        repeat: int | None = None
        for number in candidates:
            if not self.owner.extra_match(self._stored_prepared[number], prepared):
                continue
            if self.play_counts[number] == 0:
                return number
            if self.allow_playback_repeats and repeat is None:
                repeat = number
        return repeat

    def can_play_response_for(self, request: Any) -> bool:
        if self.record_mode == RecordMode.ALL:
            return False
        if self.no_sleep is not None:
            self.no_sleep.apply()  # the SDK making this request may be newly imported
        prepared, _ = self._prepare(request)
        if prepared is None:
            return False
        if self._find(request) is not None:
            return True
        if self.write_protected:
            raise self.owner.miss(request, prepared)
        return False

    def append(self, request: Any, response: Any) -> None:
        if self.owner.mode == "live":  # observed, compared with the recording, never stored
            self.owner.observe(request, response)
            return
        super().append(request, response)

    def play_response(self, request: Any) -> Any:
        number = self._find(request)
        if number is None:
            prepared, _ = self._prepare(request)
            raise self.owner.miss(request, prepared)
        self.play_counts[number] += 1
        return self.data[number][1]

    def __contains__(self, request: Any) -> bool:
        return self._find(request) is not None


class Cassette:
    """A test's cassette: its file, its mode, what was recorded and played.

    This is the value of the ``llmops_cassette`` fixture. In replay it is loaded from its
    file; in record it starts empty and is written (scanned, atomically) only by
    :meth:`save`, which the plugin calls for passing tests; in live it does nothing.
    """

    def __init__(
        self,
        recorder: Recorder,
        path: Path,
        nodeid: str,
        *,
        match_on: tuple[str, ...] | None = None,
        allow_repeats: bool = False,
    ) -> None:
        self.recorder = recorder
        self.path = path
        self.nodeid = nodeid
        self.mode: Mode = recorder.mode
        self.match_on = tuple(match_on) if match_on else FIELDS
        self._key_fields = [FIELDS.index(name) for name in self.match_on]
        self._ignored = frozenset(recorder.ignored_body_fields)
        self.exists = path.is_file()
        self.misses: list[ReplayMiss] = []
        self.metadata: dict[str, Any] = {}
        sanitizer = recorder.sanitizer
        self._vcr = _IndexedCassette(
            self,
            path=str(path),
            record_mode=RecordMode.NONE if self.mode == "replay" else RecordMode.ALL,
            before_record_request=sanitizer.request,
            before_record_response=sanitizer.response,
            allow_playback_repeats=allow_repeats,
        )
        self.stale: list[Staleness] = []
        # Live runs compare their answers with an existing recording (stale cassettes).
        self.observing = self.mode == "live" and self.exists
        if (self.mode == "replay" or self.observing) and self.exists:
            interactions, metadata = storage.load(path)
            self._vcr.data = interactions
            self._vcr._loaded_count = len(interactions)
            self._vcr.rewound = True
            self.metadata = dict(metadata)

    # -- what tests and reports can read ------------------------------------------------
    @property
    def interactions(self) -> list[tuple[Any, dict[str, Any]]]:
        """Recorded ``(request, response)`` pairs (loaded ones in replay)."""
        return list(self._vcr.data)

    @property
    def recorded(self) -> int:
        """How many interactions the cassette holds."""
        return len(self._vcr.data)

    @property
    def played(self) -> int:
        """How many recorded interactions were played back."""
        return int(self._vcr.play_count)

    def __repr__(self) -> str:
        return f"<llmops cassette {self.path} mode={self.mode} recorded={self.recorded} played={self.played}>"

    # -- matching ---------------------------------------------------------------------
    def key(self, request: Any) -> Any:
        full = request_key(request, self._ignored)
        return tuple(full[i] for i in self._key_fields)

    def extra_match(self, stored: Any, sent: Any) -> bool:
        for matcher in self.recorder.matchers.values():
            try:
                if matcher(sent, stored) is False:
                    return False
            except AssertionError:
                return False
        return True

    def observe(self, request: Any, response: dict[str, Any]) -> None:
        """Live mode: compare a live answer with the recorded answer to the same request."""
        import copy

        from vcr.filters import decode_response

        prepared, key = self._vcr._prepare(request)
        if prepared is None:
            return
        index = self._vcr._ensure_index()
        recorded = next((n for n in index.get(key, ()) if self._vcr.play_counts[n] == 0), None)
        if recorded is None:
            return  # a request the recording never made: nothing to compare
        self._vcr.play_counts[recorded] += 1
        before = answer_of(self._vcr.data[recorded][1])
        now = answer_of(decode_response(copy.deepcopy(response)))
        if before is None or now is None:
            return
        reasons = compare_answers(before, now)
        if reasons:
            where = f"{prepared.method} {prepared.parsed_uri.path}"
            self.stale.append(Staleness(str(self.path), where, reasons))

    def miss(self, request: Any, prepared: Any) -> ReplayMiss:
        """The error for a request with no recording; remembered for the test report."""
        shown = prepared if prepared is not None else request
        line = f"{shown.method} {shown.uri}"
        body = matching_preview(shown)
        lines = [
            f"ReplayMiss: {self.nodeid} made a request that its cassette has no recording for.",
            "",
            f"  {line}",
        ]
        if body:
            lines.append(f"  body: {body}")
        lines.append("")
        if not self.exists:
            lines.append(f"The cassette {self.path} does not exist: this test was never recorded.")
        else:
            lines.append(
                f"Cassette: {self.path} ({self.recorded} interactions, {self.played} played; "
                f"matching on {', '.join(self.match_on)})"
            )
            stored = list(enumerate(self._vcr._stored_prepared or [r for r, _ in self._vcr.data]))
            found = nearest(((n, r) for n, r in stored if r is not None), shown, self._ignored)
            if found is not None:
                number, near, diff = found
                differing = [name for name in self.match_on if diff.get(name)]
                if not differing:
                    lines.append(
                        f"It matches interaction #{number + 1}, which was already played: the test makes "
                        "this request more often than when it was recorded."
                    )
                else:
                    lines.append(f"Nearest recorded request, interaction #{number + 1}:")
                    lines.append(f"  {near.method} {near.uri}")
                    for name in self.match_on:
                        if diff.get(name):
                            lines.append(f"  {name} differs:")
                            lines.extend(f"    {text}" for text in diff[name])
                        else:
                            lines.append(f"  {name}: same")
        lines += ["", f"To record it: {record_command(self.nodeid)}"]
        error = ReplayMiss("\n".join(lines), nodeid=self.nodeid, request=line, cassette=str(self.path))
        self.misses.append(error)
        return error

    # -- lifecycle ---------------------------------------------------------------------
    @contextmanager
    def activate(self) -> Iterator[Cassette]:
        """Intercept HTTP for the duration of the block (in live mode only to compare the
        answers with an existing recording)."""
        if self.mode == "live" and not self.observing:
            yield self
            return
        interceptor = self.recorder.interceptor
        with ExitStack() as stack:
            interceptor.push(self._vcr)
            stack.callback(interceptor.pop, self._vcr)
            if self.mode == "replay":
                self._vcr.no_sleep = stack.enter_context(no_sleep())
            try:
                yield self
            finally:
                self._vcr.no_sleep = None

    def save(self) -> None:
        """Write the cassette (record mode): scanned first, atomically. A passing test that
        made no request leaves no cassette (a stale one is removed)."""
        if self.mode != "record":
            return
        interactions = list(self._vcr.data)
        if not interactions and not self.metadata:
            if self.path.is_file():
                self.path.unlink()
            return
        sanitizer = self.recorder.sanitizer
        # A value redacted in a later interaction is scrubbed from the earlier ones too.
        text = storage.dump(sanitizer.rescrub(interactions), self.metadata)
        findings = scan_text(text, sanitizer.known)
        if findings:
            raise SecretLeak(self.path, findings)
        storage.write_atomic(self.path, text)


def matching_preview(request: Any, limit: int = 300) -> str:
    """A short preview of a request body for messages."""
    body = request.body_bytes if hasattr(request, "body_bytes") else request.body
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
