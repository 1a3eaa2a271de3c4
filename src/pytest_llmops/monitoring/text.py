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
from scipy import sparse
from scipy.special import rel_entr

FloatArray = npt.NDArray[np.float64]

_WHITESPACE = re.compile(r"\s+")
# Multipliers of a polynomial rolling hash over bytes; fixed so profiles are stable across runs.
_HASH_BASES = (1_000_003, 8_191, 131)
_NO_ROWS = np.zeros(0, dtype=np.int64)
_CHUNK = 20_000  # texts hashed at once: bounds the memory of the byte buffer and its hashes


def _encoded(texts: Sequence[str]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The normalised texts' UTF-8 bytes, one after the other, and each text's length in bytes.

    Normalised all at once: joined by NUL, lower-cased and collapsed as one string, then split
    at the NULs (texts that hold a NUL themselves are normalised one by one).
    """
    joined = "\x00".join(texts)
    if joined.count("\x00") == max(len(texts) - 1, 0):
        # str.split() splits at the same whitespace as the regex (str.isspace), and is faster
        clean = " ".join(joined.lower().split()).replace(" \x00", "\x00").replace("\x00 ", "\x00")
        raw = clean.encode("utf-8")
        data = np.frombuffer(raw, dtype=np.uint8)
        cuts = np.flatnonzero(data == 0)
        bounds = np.concatenate([[-1], cuts, [data.size]])
        lengths = np.diff(bounds) - 1
        return data[data != 0], lengths.astype(np.int64)
    encoded = [normalise_text(text).encode("utf-8") for text in texts]
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), lengths


def normalise_text(text: str) -> str:
    """Lower-case and collapse whitespace: formatting alone is not content drift."""
    return _WHITESPACE.sub(" ", text.lower()).strip()


def ngram_profiles(texts: Sequence[str], n: int = 3, dim: int = 2048) -> FloatArray:
    """One row per text: its hashed byte n-gram frequencies, summing to 1 (zeros for short texts)."""
    dense: FloatArray = profile_matrix(texts, n, dim).toarray()
    return dense


def profile_matrix(texts: Sequence[str], n: int = 3, dim: int = 2048) -> sparse.csr_matrix:
    """:func:`ngram_profiles` as a sparse matrix (a text has a few hundred distinct n-grams)."""
    parts = [_profile_rows(texts[start : start + _CHUNK], n, dim) for start in range(0, len(texts), _CHUNK)]
    if not parts:
        return sparse.csr_matrix((0, dim), dtype=np.float64)
    return sparse.vstack(parts, format="csr")


def profile_sum(texts: Sequence[str], n: int = 3, dim: int = 2048) -> FloatArray:
    """The sum of the texts' profiles (their mean, times their number), in bounded memory."""
    total = np.zeros(dim, dtype=np.float64)
    for start in range(0, len(texts), _CHUNK):
        _, buckets, weights = _ngram_entries(texts[start : start + _CHUNK], n, dim, with_rows=False)
        total += np.bincount(buckets, weights=weights, minlength=dim)
    return total


def _profile_rows(texts: Sequence[str], n: int, dim: int) -> sparse.csr_matrix:
    rows, buckets, weights = _ngram_entries(texts, n, dim)
    kept = weights > 0
    rows, buckets, weights = rows[kept], buckets[kept], weights[kept]
    matrix = sparse.coo_matrix((weights, (rows, buckets)), shape=(len(texts), dim)).tocsr()
    matrix.sum_duplicates()
    return matrix


def _ngram_entries(
    texts: Sequence[str], n: int, dim: int, *, with_rows: bool = True
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray]:
    """For every position of the texts' bytes: its row (unless ``with_rows`` is false), the
    bucket of the n-gram starting there, and its weight, 1 / (n-grams in its text), or 0
    where the n-gram would run past the end of its text.

    All texts are hashed at once over one byte buffer: the polynomial hash of the n bytes at
    each position.
    """
    data, lengths = _encoded(texts)
    grams = np.maximum(lengths - n + 1, 0)
    if data.size < n or not grams.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float64)
    # sum of byte * base over the n bytes, reduced once (mod is compatible with the sums; the
    # largest sum, 255 * (1000003 + 8191**2 + 131**3), fits in int64)
    size = data.size - n + 1
    hashed = np.zeros(size, dtype=np.int64)
    for offset in range(n):
        base = _HASH_BASES[offset % len(_HASH_BASES)] ** (offset + 1)
        hashed += np.multiply(data[offset : size + offset], base, dtype=np.int64)
    hashed %= 2_147_483_647
    buckets = hashed & (dim - 1) if dim & (dim - 1) == 0 else hashed % dim
    rows = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)[:size] if with_rows else _NO_ROWS
    per_text = np.divide(1.0, grams, out=np.zeros(grams.size, dtype=np.float64), where=grams > 0)
    weights = np.repeat(per_text, lengths)[:size]
    ends = np.cumsum(lengths)
    for back in range(1, n):  # the last n - 1 positions of each text start no n-gram of it
        crossing = ends - back
        weights[crossing[(crossing >= 0) & (crossing < size)]] = 0.0
    return rows, buckets, weights


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
