"""Synthetic traces drawn straight into feature columns, vectorised: the same distributions as
:class:`~pytest_llmops.monitoring.synthetic.Generator` (tasks and fillers, lognormal lengths
per prompt and per call, lognormal latency, error rate, tool calls, finish-reason mix, the
shifts), at about a microsecond per trace instead of a millisecond, for the benchmarks and
validations at 10^5 to 10^6 traces per side.

What differs from the per-trace generator: an answer is the first words of one of 16 fixed
sentence orders of its task (drawn per trace), with the task's fillers left as "it".
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from pytest_llmops.monitoring.columns import FeatureColumns, ObjectArray
from pytest_llmops.monitoring.synthetic import (
    _FILL,
    _TASKS,
    BASE_FINISH_MIX,
    MAX_TOKENS,
    NO_SHIFT,
    SYSTEM_PROMPT,
    SYSTEM_TOKENS,
    Generator,
    Shift,
)

VARIANTS = 16


def draw_columns(generator: Generator, n: int, seed: int, shift: Shift = NO_SHIFT) -> FeatureColumns:
    """``n`` traces as feature columns, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    if generator.mode == "suite":
        suite = generator.suite(n)
        task = np.array([_TASKS.index(t) for t, _, _ in suite], dtype=np.int64)
        prompts = [p for _, p, _ in suite]
        typical = np.array([t for _, _, t in suite], dtype=np.float64)
    else:
        task = rng.integers(len(_TASKS), size=n)
        picks = {key: rng.integers(len(values), size=n) for key, values in _FILL.items()}
        prompts = [
            _TASKS[t].template.format(**{key: _FILL[key][picks[key][i]] for key in _FILL})
            for i, t in enumerate(task)
        ]
        typical_tokens = np.array([t.typical_tokens for t in _TASKS], dtype=np.float64)
        typical = typical_tokens[task] * np.exp(rng.normal(0.0, generator.across_prompt_sigma, n))
    full_prompts = [f"{SYSTEM_PROMPT}\n{p}" for p in prompts]
    prompt_tokens = np.array(
        [SYSTEM_TOKENS + round(len(p.split()) * 1.35) + 7 for p in prompts], dtype=np.float64
    )
    error_rate = generator.error_rate if shift.error_rate is None else shift.error_rate
    error = rng.random(n) < error_rate

    completion = typical * shift.completion_scale * np.exp(rng.normal(0.0, generator.within_prompt_sigma, n))
    tokens = np.clip(np.round(completion), 1, MAX_TOKENS)
    tool_task = np.array([t.uses_tools for t in _TASKS])[task]
    calls_tool = tool_task & (rng.random(n) < 0.9)
    tool_calls = np.where(calls_tool, np.where(rng.random(n) < 0.85, 1, 2), 0).astype(np.float64)
    tokens = np.where(calls_tool, 12 + 9 * tool_calls + rng.integers(0, 4, n), tokens)
    mix = shift.finish_mix or BASE_FINISH_MIX
    reasons = np.array(list(mix), dtype=object)
    probabilities = np.array([mix[r] for r in mix], dtype=np.float64)
    finish = reasons[rng.choice(len(reasons), size=n, p=probabilities / probabilities.sum())]
    finish[tokens >= MAX_TOKENS] = "length"
    finish[calls_tool] = "tool_calls"

    overhead = np.exp(rng.normal(math.log(350.0), 0.3, n))
    per_token = np.exp(rng.normal(math.log(18.0), 0.15, n))
    latency = (overhead + per_token * tokens) * shift.latency_scale
    error_latency = np.exp(rng.normal(math.log(120.0), 0.5, n)) * shift.latency_scale
    latency = np.where(error, error_latency, latency)

    texts = _answers(task, tokens, rng.integers(VARIANTS, size=n), shift.preamble)
    silent = calls_tool | (finish == "content_filter") | error
    response = _objects(["" if quiet else text for quiet, text in zip(silent.tolist(), texts, strict=True)])
    chars = np.array([len(t) for t in response], dtype=np.float64)
    words = np.array([len(t.split()) for t in response], dtype=np.float64)

    def missing_on_error(values: np.ndarray) -> np.ndarray:
        return np.where(error, np.nan, values)

    columns = {
        "prompt_tokens": missing_on_error(prompt_tokens),
        "completion_tokens": missing_on_error(tokens),
        "total_tokens": missing_on_error(prompt_tokens + tokens),
        "latency_ms": latency,
        "response_chars": missing_on_error(chars),
        "response_words": missing_on_error(words),
        "tool_calls": missing_on_error(tool_calls),
        "finish_reason": _blank(finish, error),
        "error": error,
        "model": _constant(shift.model or generator.model, n),
        "deployment": _constant(generator.deployment, n),
        "prompt_text": _objects(full_prompts),
        "response_text": response,
    }
    keys = _objects([hashlib.sha1(p.encode("utf-8")).hexdigest()[:16] for p in full_prompts])
    return FeatureColumns(columns, keys, _objects([f"tr-{seed}-{i}" for i in range(n)]))


def _answers(task: np.ndarray, tokens: np.ndarray, variant: np.ndarray, preamble: str) -> list[str]:
    """Each trace's answer: the first ``0.75 * tokens`` words of its task's sentence order."""
    wanted = np.maximum(1, np.round(tokens * 0.75)).astype(np.int64)
    texts, ends = _variants(int(wanted.max(initial=1)))
    return [
        preamble + texts[t][v][: ends[t][v][w - 1]]
        for t, v, w in zip(task.tolist(), variant.tolist(), wanted.tolist(), strict=True)
    ]


def _variants(words: int) -> tuple[list[list[str]], list[list[list[int]]]]:
    """Per task, ``VARIANTS`` long answers (fixed seed) and the end offset of each word."""
    rng = np.random.default_rng(20_261_203)
    texts: list[list[str]] = []
    ends: list[list[list[int]]] = []
    for task in _TASKS:
        task_texts, task_ends = [], []
        for _ in range(VARIANTS):
            chosen: list[str] = []
            while len(chosen) < words:
                sentence = task.sentences[int(rng.integers(len(task.sentences)))]
                chosen.extend(sentence.format(**dict.fromkeys(_FILL, "it")).split())
            offsets = np.cumsum([len(word) + 1 for word in chosen]) - 1
            task_texts.append(" ".join(chosen))
            task_ends.append(offsets.tolist())
        texts.append(task_texts)
        ends.append(task_ends)
    return texts, ends


def _blank(values: ObjectArray, where: np.ndarray) -> ObjectArray:
    result = values.copy()
    result[where] = None
    return result


def _constant(value: str, n: int) -> ObjectArray:
    array = np.empty(n, dtype=object)
    array[:] = value
    return array


def _objects(values: list[str]) -> ObjectArray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
