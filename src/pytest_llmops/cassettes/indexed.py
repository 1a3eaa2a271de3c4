"""vcrpy's cassette with O(1) matching on the plugin's request key, and the plugin's misses."""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Any

from vcr.cassette import Cassette as VcrCassette
from vcr.record_mode import RecordMode

from pytest_llmops.cassettes.clock import NoSleep

if TYPE_CHECKING:
    from pytest_llmops.cassettes.recorder import Cassette


class IndexedCassette(VcrCassette):  # type: ignore[misc]
    """vcrpy's cassette with O(1) matching on :func:`request_key` and the plugin's misses."""

    def __init__(self, owner: Cassette, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.owner = owner
        self._index: dict[Any, collections.deque[int]] | None = None
        self._stored_prepared: list[Any] = []
        self.no_sleep: NoSleep | None = None
        self._lock = threading.RLock()
        """Threads of one test (MLflow's judges, an app's pool) may replay identical requests
        at once: each finds and takes its interaction under this lock, none plays one twice."""

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
        with self._lock:
            return self._find_unlocked(request)

    def _find_unlocked(self, request: Any) -> int | None:
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
            self.owner.check_live_host(request)
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
        self.owner.check_live_host(request)
        return False

    def append(self, request: Any, response: Any) -> None:
        if self.owner.mode == "live":  # observed, compared with the recording, never stored
            self.owner.observe(request, response)
            return
        with self._lock:
            super().append(request, response)

    def play_response(self, request: Any) -> Any:
        with self._lock:
            number = self._find_unlocked(request)
            if number is not None:
                self.play_counts[number] += 1
                return self.data[number][1]
        prepared, _ = self._prepare(request)
        raise self.owner.miss(request, prepared)

    def __contains__(self, request: Any) -> bool:
        return self._find(request) is not None
