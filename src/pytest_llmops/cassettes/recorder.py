"""Cassettes on vcrpy: the session's :class:`Recorder` and a test's :class:`Cassette`.

vcrpy does the interception (httpx and httpx2 for openai, requests and urllib3 for
databricks-sdk and azure-core, aiohttp, ...). This module decides what is matched, what
a cassette replays and records in each mode, and when it is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from vcr.record_mode import RecordMode as VcrMode

from pytest_llmops.cassettes import misses, storage, writing
from pytest_llmops.cassettes.clock import no_sleep
from pytest_llmops.cassettes.indexed import IndexedCassette
from pytest_llmops.cassettes.interception import Interceptor
from pytest_llmops.cassettes.matching import DEFAULT_IGNORED_BODY_FIELDS, FIELDS, request_key
from pytest_llmops.cassettes.sanitize import DATABRICKS_HOST, OPENAI_HOST, Sanitizer
from pytest_llmops.cassettes.staleness import Staleness, answer_of
from pytest_llmops.cassettes.staleness import compare as compare_answers
from pytest_llmops.errors import CassetteError, LLMOpsError, ReplayMiss, SecretLeak
from pytest_llmops.secrets.known import KnownSecrets
from pytest_llmops.secrets.rules import Names
from pytest_llmops.secrets.scan import scan_text
from pytest_llmops.settings import Mode, RecordMode

Matcher = Callable[[Any, Any], Any]


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
        record_mode: RecordMode = "all",
        provision: bool = False,
        run_dir: Path | None = None,
        known: KnownSecrets | None = None,
        names: Names | None = None,
    ) -> None:
        self.mode: Mode = mode
        self.record_mode: RecordMode = record_mode
        self.provision = provision
        """Whether fixtures may create resources: then, in ``missing``/``new`` record modes, a
        session fixture whose cassette exists replays the creation it recorded."""
        self.files = writing.SessionFiles(run_dir)
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
        shared: bool = False,
        session_fixture: bool = False,
    ) -> Cassette:
        """The cassette of one test (or session fixture); loaded now when it replays."""
        return Cassette(
            self, path, nodeid, match_on=match_on, allow_repeats=allow_repeats, shared=shared,
            session_fixture=session_fixture,
        )


class Cassette:
    """A test's cassette: its file, its mode, what was recorded and played.

    This is the value of the ``llmops_cassette`` fixture. When it *replays* (replay mode,
    or a cassette that exists under ``--llmops-record-mode=missing|new``) it is loaded from
    its file; in record mode it is written (scanned, atomically, merged with what other
    tests of the session wrote into the same file) by :meth:`save`, which the plugin calls
    for every test whose body ran; in live mode it does nothing.
    """

    def __init__(
        self,
        recorder: Recorder,
        path: Path,
        nodeid: str,
        *,
        match_on: tuple[str, ...] | None = None,
        allow_repeats: bool = False,
        shared: bool = False,
        session_fixture: bool = False,
    ) -> None:
        self.recorder = recorder
        self.path = path
        self.nodeid = nodeid
        self.mode: Mode = recorder.mode
        self.shared = shared
        """Named by ``llmops_cassette(name=...)``: other tests may write the same file."""
        self.match_on = tuple(match_on) if match_on else FIELDS
        self._key_fields = [FIELDS.index(name) for name in self.match_on]
        self.ignored_fields = frozenset(recorder.ignored_body_fields)
        self.exists = path.is_file()
        self.misses: list[ReplayMiss] = []
        self.metadata: dict[str, Any] = {}
        self.recorded_before = self.exists and recorder.mode == "record" and not recorder.files.written(path)
        """The file holds a recording of an earlier session (not one a test of this session wrote)."""
        self.keeps_file = self.recorded_before and recorder.record_mode != "all"
        """``--llmops-record-mode=missing|new`` keep what an earlier session recorded."""
        self.replaying = self.mode == "replay" or (
            # A session fixture's cassette replays only a creation (--llmops-provision): creating
            # again costs minutes; attaching again costs nothing and lets new tests record.
            self.keeps_file and (not session_fixture or recorder.provision)
        )
        """Whether requests are answered from the file (replay mode, or a cassette recorded
        before this session under ``--llmops-record-mode=missing|new``)."""
        self.appending = self.replaying and self.mode == "record" and recorder.record_mode == "new"
        """``--llmops-record-mode=new``: requests the file lacks are recorded and appended."""
        sanitizer = recorder.sanitizer
        if self.replaying:
            vcr_mode = VcrMode.NEW_EPISODES if self.appending else VcrMode.NONE
        else:
            vcr_mode = VcrMode.ALL
        self._vcr = IndexedCassette(
            self,
            path=str(path),
            record_mode=vcr_mode,
            before_record_request=sanitizer.request,
            before_record_response=sanitizer.response,
            allow_playback_repeats=allow_repeats,
        )
        self._loaded = 0
        self.stale: list[Staleness] = []
        # Live runs compare their answers with an existing recording (stale cassettes).
        self.observing = self.mode == "live" and self.exists
        if (self.replaying or self.observing) and self.exists:
            interactions, metadata = storage.load(path)
            self._vcr.data = interactions
            self._vcr._loaded_count = self._loaded = len(interactions)
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
        full = request_key(request, self.ignored_fields)
        return tuple(full[i] for i in self._key_fields)

    def extra_match(self, stored: Any, sent: Any) -> bool:
        for matcher in self.recorder.matchers.values():
            try:
                if matcher(sent, stored) is False:
                    return False
            except AssertionError:
                return False
        return True

    def stored_requests(self) -> list[Any]:
        """The recorded requests as matched (scrubbed; None for those never matched)."""
        return list(self._vcr._stored_prepared or [r for r, _ in self._vcr.data])

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

    def check_live_host(self, request: Any) -> None:
        """Record mode: refuse a request to a placeholder host before it leaves (a session
        fixture replayed a recorded creation, so no real resource stands behind it)."""
        if self.mode != "record":
            return
        host = (request.host or "").lower()
        if host in (OPENAI_HOST, DATABRICKS_HOST):
            raise LLMOpsError(
                f"{self.nodeid} sent a request to {host}, the placeholder host of a replayed session "
                "fixture: with --llmops-provision, --llmops-record-mode=missing|new replays the creation "
                "recorded in an existing _session cassette, so there is no real resource to record this "
                "test against. Record it with `pytest --llmops-record-mode=all --llmops-provision` "
                "(creates the resources again), or delete the _session cassettes first."
            )

    def miss(self, request: Any, prepared: Any) -> ReplayMiss:
        """The error for a request with no recording; remembered for the test report."""
        error = misses.explain(self, request, prepared)
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
            if self.replaying:
                self._vcr.no_sleep = stack.enter_context(no_sleep())
            try:
                yield self
            finally:
                self._vcr.no_sleep = None

    def save(self) -> None:
        """Record mode: write what this test recorded, scanned first, atomically.

        A cassette recorded before this session under ``--llmops-record-mode=missing`` is
        left as it is; under ``new`` the requests it lacked are appended. A file another
        test of this session wrote (a shared name) gets this test's interactions merged in.
        Interactions equal to the stored ones but for volatile headers keep their stored
        bytes. A test that made no request leaves a shared file alone and removes its own
        stale file (``all``)."""
        if self.mode != "record" or (self.keeps_file and not self.appending):
            return  # missing: kept as recorded; a session fixture that attached again: kept too
        recorded = list(self._vcr.data)[self._loaded:]
        files = self.recorder.files
        with files.locked(self.path):
            keep = self.keeps_file or files.written(self.path)
            if not recorded and not self.metadata:
                if not keep and not self.shared and self.path.is_file():
                    self.path.unlink()  # the test no longer makes requests
                return
            stored, stored_metadata = self._stored(keep)
            # A value redacted in a later interaction is scrubbed from the earlier ones too.
            fresh = storage.to_raw(self.recorder.sanitizer.rescrub(recorded))
            if keep:
                result = writing.merge_into(stored, fresh)
                metadata = {**stored_metadata, **self.metadata}
            else:
                result = writing.reuse_stored(fresh, stored)
                metadata = dict(self.metadata)
            if result != stored or metadata != stored_metadata or not self.path.is_file():
                text = storage.dump(result, metadata)
                findings = scan_text(text, self.recorder.sanitizer.known)
                if findings:
                    raise SecretLeak(self.path, findings)
                storage.write_atomic(self.path, text)
            files.mark(self.path)

    def _stored(self, keep: bool) -> tuple[list[storage.Raw], dict[str, Any]]:
        """What the file holds now (another worker may have written it since this test
        started). A file about to be replaced may be unreadable: then nothing is reused."""
        try:
            return storage.load_raw(self.path)
        except CassetteError:
            if keep:
                raise
            return [], {}
