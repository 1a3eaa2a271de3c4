"""Character n-gram profiles: a content signal that needs no network and no model.

Each text becomes a frequency vector of its byte n-grams (lower-cased, whitespace collapsed),
hashed into ``dim`` buckets and normalised to sum 1, so every trace weighs the same whatever
its length. Two groups of traces are compared through the Jensen-Shannon distance of their
mean profiles.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.special import rel_entr

FloatArray = npt.NDArray[np.float64]

_WHITESPACE = re.compile(r"\s+")
# Multipliers of a polynomial rolling hash over bytes; fixed so profiles are stable across runs.
_HASH_BASES = (1_000_003, 8_191, 131)


def normalise_text(text: str) -> str:
    """Lower-case and collapse whitespace: formatting alone is not content drift."""
    return _WHITESPACE.sub(" ", text.lower()).strip()


def ngram_profiles(texts: Sequence[str], n: int = 3, dim: int = 2048) -> FloatArray:
    """One row per text: its hashed byte n-gram frequencies, summing to 1 (zeros for short texts)."""
    profiles = np.zeros((len(texts), dim), dtype=np.float64)
    for row, text in enumerate(texts):
        data = np.frombuffer(normalise_text(text).encode("utf-8"), dtype=np.uint8).astype(np.int64)
        if data.size < n:
            continue
        hashed = np.zeros(data.size - n + 1, dtype=np.int64)
        for offset in range(n):
            base = _HASH_BASES[offset % len(_HASH_BASES)] ** (offset + 1)
            hashed = (hashed + data[offset : data.size - n + 1 + offset] * base) % 2_147_483_647
        counts = np.bincount(hashed % dim, minlength=dim).astype(np.float64)
        profiles[row] = counts / counts.sum()
    return profiles


def js_distance(p: FloatArray, q: FloatArray) -> FloatArray:
    """Jensen-Shannon distance (base 2, in [0, 1]) between the rows of ``p`` and ``q``."""
    p = np.atleast_2d(p)
    q = np.atleast_2d(q)
    p = p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)
    q = q / np.maximum(q.sum(axis=-1, keepdims=True), 1e-300)
    m = 0.5 * (p + q)
    divergence = (rel_entr(p, m).sum(axis=-1) + rel_entr(q, m).sum(axis=-1)) / (2 * math.log(2))
    distance: FloatArray = np.sqrt(np.clip(divergence, 0.0, 1.0))
    return distance


def top_ngram_shifts(
    baseline: Sequence[str], current: Sequence[str], n: int = 3, top: int = 8
) -> list[tuple[str, float, float]]:
    """The n-grams whose share of text changed most: ``(ngram, baseline share, current share)``.

    For the report only (readable n-grams, not hashed buckets); each text weighs the same.
    """

    def shares(texts: Sequence[str]) -> dict[str, float]:
        total: dict[str, float] = {}
        used = 0
        for text in texts:
            clean = normalise_text(text)
            grams = [clean[i : i + n] for i in range(len(clean) - n + 1)]
            if not grams:
                continue
            used += 1
            for gram, count in Counter(grams).items():
                total[gram] = total.get(gram, 0.0) + count / len(grams)
        return {gram: value / used for gram, value in total.items()}

    base, cur = shares(baseline), shares(current)
    grams = set(base) | set(cur)
    ranked = sorted(grams, key=lambda gram: abs(cur.get(gram, 0.0) - base.get(gram, 0.0)), reverse=True)
    return [(gram, base.get(gram, 0.0), cur.get(gram, 0.0)) for gram in ranked[:top]]
