"""Pairing by prompt: a suite run twice asks the same prompts as often on each side.

Pairing needs at least ``min_pairs`` prompts asked equally often on both sides, covering at
least half of each side's traces. Traffic that merely repeats popular prompts does not pair.
All of it is vectorised over the key columns (one ``np.unique`` over both sides).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pytest_llmops.monitoring.columns import FeatureColumns, ObjectArray
from pytest_llmops.monitoring.model import DriftSettings

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Pairing:
    """Each row's prompt as an index into ``keys`` (-1: no key), and which prompts pair."""

    keys: ObjectArray
    base_codes: IntArray
    cur_codes: IntArray
    paired: npt.NDArray[np.bool_]

    @property
    def count(self) -> int:
        """Number of paired prompts (0: the sides are compared unpaired)."""
        return int(self.paired.sum())

    def differences(
        self, base_values: FloatArray, cur_values: FloatArray, min_pairs: int
    ) -> FloatArray | None:
        """Per paired prompt with as many values on each side: the change in mean ``log1p``
        (current minus baseline), or None when fewer than ``min_pairs`` prompts remain.

        Only prompts with as many values on each side: the difference of two means of equally
        many exchangeable values is symmetric about 0, which the signed-rank test needs.
        """
        if not self.count:
            return None
        size = self.keys.size
        sums, counts = [], []
        for codes, values in ((self.base_codes, base_values), (self.cur_codes, cur_values)):
            keep = (codes >= 0) & ~np.isnan(values)
            keep &= self.paired[np.where(codes >= 0, codes, 0)]
            sums.append(np.bincount(codes[keep], weights=np.log1p(values[keep]), minlength=size))
            counts.append(np.bincount(codes[keep], minlength=size))
        usable = self.paired & (counts[0] > 0) & (counts[0] == counts[1])
        if int(usable.sum()) < min_pairs:
            return None
        result: FloatArray = sums[1][usable] / counts[1][usable] - sums[0][usable] / counts[0][usable]
        return result

    def blocks(self, base_rows: npt.NDArray[np.bool_], cur_rows: npt.NDArray[np.bool_]) -> IntArray:
        """Block ids (the prompt) of the selected baseline rows, then the selected current rows;
        rows without a key share one block."""
        codes = np.concatenate([self.base_codes[base_rows], self.cur_codes[cur_rows]])
        result: IntArray = np.where(codes >= 0, codes, self.keys.size)
        return result


def pair_prompts(baseline: FeatureColumns, current: FeatureColumns, settings: DriftSettings) -> Pairing:
    """Which prompts to pair on (none with ``pairing="off"`` or when the sides do not pair)."""
    keys, base_codes, cur_codes = _codes(baseline.key, current.key)
    size = keys.size
    base_counts = np.bincount(base_codes[base_codes >= 0], minlength=size)
    cur_counts = np.bincount(cur_codes[cur_codes >= 0], minlength=size)
    paired = (base_counts > 0) & (base_counts == cur_counts)
    enough = (
        settings.pairing != "off"
        and int(paired.sum()) >= settings.min_pairs
        and int(base_counts[paired].sum()) >= len(baseline) / 2
        and int(cur_counts[paired].sum()) >= len(current) / 2
    )
    return Pairing(keys, base_codes, cur_codes, paired if enough else np.zeros(size, dtype=np.bool_))


def _codes(base: ObjectArray, cur: ObjectArray) -> tuple[ObjectArray, IntArray, IntArray]:
    both = np.concatenate([base, cur])
    present = np.array([bool(key) for key in both], dtype=np.bool_)
    codes = np.full(both.size, -1, dtype=np.int64)
    keys = np.empty(0, dtype=object)
    if present.any():
        unique, inverse = np.unique(both[present].astype(str), return_inverse=True)
        keys = unique.astype(object)
        codes[present] = inverse
    return keys, codes[: base.size], codes[base.size :]
