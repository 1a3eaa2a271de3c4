"""Examples for the report: the paired prompts whose answers changed most, side by side.

A prompt's change is the Jensen-Shannon distance between the n-gram profiles of its baseline
and current answers (wording) plus the absolute log ratio of their lengths in characters
(``|log((1 + chars_c) / (1 + chars_b))|``). The first answer of each side is shown. With many
pairs the text distance is computed for the 200 pairs whose length changed most and a seeded
sample of 2,000 others, so this stays cheap at 100,000 pairs.
"""

from __future__ import annotations

import numpy as np

from pytest_llmops.monitoring.columns import FeatureColumns
from pytest_llmops.monitoring.model import Detail, DriftSettings, Example
from pytest_llmops.monitoring.pairing import Pairing
from pytest_llmops.monitoring.text import js_distance, profile_matrix

CANDIDATES_BY_LENGTH = 200
CANDIDATES_AT_RANDOM = 2000
SHOWN_CHARS = 2000  # an answer longer than this is cut in the report


def find_examples(
    baseline: FeatureColumns, current: FeatureColumns, pairing: Pairing, settings: DriftSettings
) -> list[Example]:
    """Up to ``settings.examples`` paired prompts with the biggest change, biggest first."""
    if not pairing.count or settings.examples <= 0:
        return []
    base_row = _first_rows(pairing.base_codes, pairing.keys.size)
    cur_row = _first_rows(pairing.cur_codes, pairing.keys.size)
    prompts = np.flatnonzero(pairing.paired & (base_row >= 0) & (cur_row >= 0))
    base_rows, cur_rows = base_row[prompts], cur_row[prompts]
    base_len = np.array([len(t) for t in baseline["response_text"][base_rows]], dtype=np.float64)
    cur_len = np.array([len(t) for t in current["response_text"][cur_rows]], dtype=np.float64)
    length_score = np.abs(np.log1p(cur_len) - np.log1p(base_len))
    candidates = np.arange(prompts.size)
    if prompts.size > CANDIDATES_BY_LENGTH + CANDIDATES_AT_RANDOM:
        rng = np.random.default_rng(settings.seed)
        by_length = np.argsort(-length_score, kind="stable")[:CANDIDATES_BY_LENGTH]
        at_random = rng.choice(prompts.size, CANDIDATES_AT_RANDOM, replace=False)
        candidates = np.unique(np.concatenate([by_length, at_random]))
    texts_b = list(baseline["response_text"][base_rows[candidates]])
    texts_c = list(current["response_text"][cur_rows[candidates]])
    wording = js_distance(
        profile_matrix(texts_b, settings.ngram, settings.ngram_dim).toarray(),
        profile_matrix(texts_c, settings.ngram, settings.ngram_dim).toarray(),
    )
    empty = np.array([not (b or c) for b, c in zip(texts_b, texts_c, strict=True)])
    wording = np.where(empty, 0.0, np.nan_to_num(wording))
    score = wording + length_score[candidates]
    order = np.argsort(-score, kind="stable")[: settings.examples]
    examples = []
    for index in order:
        if score[index] <= 0:
            break
        position = candidates[index]
        b, c = int(base_rows[position]), int(cur_rows[position])
        examples.append(
            Example(
                key=str(pairing.keys[prompts[position]]),
                prompt=_cut(str(current["prompt_text"][c] or baseline["prompt_text"][b])),
                baseline=_cut(str(baseline["response_text"][b])),
                current=_cut(str(current["response_text"][c])),
                score=float(score[index]),
                baseline_details=_row_details(baseline, b),
                current_details=_row_details(current, c),
            )
        )
    return examples


def _first_rows(codes: np.ndarray, size: int) -> np.ndarray:
    """For each prompt, its first row on this side (-1: none)."""
    first = np.full(size, -1, dtype=np.int64)
    rows = np.flatnonzero(codes >= 0)
    unique, index = np.unique(codes[rows], return_index=True)
    first[unique] = rows[index]
    return first


def _row_details(columns: FeatureColumns, row: int) -> dict[str, Detail]:
    details: dict[str, Detail] = {}
    for name in ("finish_reason", "completion_tokens", "latency_ms", "model"):
        value = columns[name][row]
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            details[name] = value if isinstance(value, str) else float(value)
    if bool(columns["error"][row]):
        details["error"] = "true"
    return details


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + " [...]"
