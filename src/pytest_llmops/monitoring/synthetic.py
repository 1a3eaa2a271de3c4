"""Seeded synthetic traces (flat-dict form) for validating drift detection.

Realistic enough to calibrate the tests: prompts from templates, completion tokens lognormal
around a per-prompt typical length, latency lognormal (overhead plus time per output token),
answers assembled from per-task sentences to the drawn length, a small error rate, tool calls
on the tool task, and a mix of finish reasons.

Two ways to draw prompts, matching the two ways drift is looked for:

- ``"suite"``: a fixed list of prompts (a test suite run again), the same on both sides, so
  numeric features are compared per prompt;
- ``"traffic"``: every trace draws a fresh prompt (production-like traffic), nothing to pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

SYSTEM_PROMPT = "Assistant is a large language model trained by OpenAI."
SYSTEM_TOKENS = 12
MAX_TOKENS = 800

_FILL: dict[str, tuple[str, ...]] = {
    "animal": ("cats", "dogs", "penguins", "giraffes", "octopuses", "owls", "hedgehogs", "llamas"),
    "country": ("France", "Japan", "Kenya", "Peru", "Norway", "Canada", "Vietnam", "Egypt"),
    "language": ("French", "German", "Spanish", "Italian", "Japanese", "Swedish"),
    "phrase": ("Good morning", "Where is the station?", "The cluster is running", "Thank you very much"),
    "concept": (
        "Delta Lake",
        "MLflow tracking",
        "vector search",
        "model drift",
        "Spark partitions",
        "token budgets",
        "prompt injection",
    ),
    "city": ("Paris", "Oslo", "Lima", "Nairobi", "Tokyo", "Zurich", "Stockholm"),
    "ticket": (
        "The cluster fails to start with a quota error in East US 2.",
        "My notebook cannot reach the OpenAI endpoint since this morning.",
        "Billing shows two workspaces but I only created one.",
        "Runs in the experiment have no traces after the upgrade.",
    ),
}


@dataclass(frozen=True)
class _Task:
    name: str
    template: str
    typical_tokens: float  # median completion tokens of the task
    sentences: tuple[str, ...]
    uses_tools: bool = False


_TASKS: tuple[_Task, ...] = (
    _Task(
        "joke",
        "Tell me a joke about {animal}.",
        40,
        (
            "Why did the {animal} sit on the computer?",
            "To keep an eye on the mouse!",
            "Because it wanted to be outstanding in its field.",
            "It had too many bad puns to share.",
            "The punchline is that nobody expected it to fly.",
            "Everyone laughed, even the owl.",
        ),
    ),
    _Task(
        "capital",
        "What is the capital of {country}? Answer in one sentence.",
        14,
        (
            "The capital of {country} is its largest administrative city.",
            "It is the seat of the government and the main cultural centre.",
        ),
    ),
    _Task(
        "summary",
        "Summarise this support ticket in three sentences: {ticket}",
        85,
        (
            "The customer reports a problem with their Azure resources.",
            "The issue started after a recent change in the workspace.",
            "The recommended next step is to check the regional quota.",
            "Support should confirm the configuration and reply within a day.",
            "No data loss has been reported so far.",
        ),
    ),
    _Task(
        "translate",
        "Translate into {language}: '{phrase}'",
        20,
        (
            "Here is the translation into {language}.",
            "The phrase keeps its polite tone.",
            "A literal rendering would sound unnatural.",
        ),
    ),
    _Task(
        "explain",
        "Explain {concept} to a new data engineer.",
        230,
        (
            "{concept} is a building block of modern data platforms.",
            "It keeps track of versions so that experiments can be reproduced.",
            "In practice you configure it once per workspace and reuse it across jobs.",
            "Monitoring it over time helps you notice regressions early.",
            "A common pitfall is to mix environments without clear naming.",
            "Start with a small example, then scale to the full pipeline.",
            "The documentation has step-by-step guides for each cloud.",
        ),
    ),
    _Task(
        "weather",
        "What's the weather in {city}? Use the weather tool.",
        18,
        ("I will look up the current weather in {city}.",),
        uses_tools=True,
    ),
)


@dataclass(frozen=True)
class Shift:
    """A known change applied to the current side.

    ``completion_scale`` multiplies completion tokens (and so answer length and latency);
    ``latency_scale`` multiplies latency; ``finish_mix`` replaces the finish-reason
    probabilities of non-tool answers (keys ``stop``, ``length``, ``content_filter``);
    ``error_rate`` replaces the error rate; ``model`` replaces the model version;
    ``preamble`` is put in front of every answer (a change of wording, not of length in tokens).
    """

    completion_scale: float = 1.0
    latency_scale: float = 1.0
    finish_mix: dict[str, float] | None = None
    error_rate: float | None = None
    model: str | None = None
    preamble: str = ""


NO_SHIFT = Shift()
BASE_FINISH_MIX: dict[str, float] = {"stop": 0.95, "length": 0.04, "content_filter": 0.01}


@dataclass(frozen=True)
class Generator:
    """Draws synthetic traces; ``suite_seed`` fixes the prompt list and each prompt's typical length."""

    mode: Literal["suite", "traffic"] = "suite"
    suite_seed: int = 7
    within_prompt_sigma: float = 0.2  # run-to-run spread of one prompt's completion length (log)
    across_prompt_sigma: float = 0.5  # spread of typical length between prompts of a task (log)
    error_rate: float = 0.02
    model: str = "gpt-4o-2024-08-06"
    deployment: str = "gpt-4o"

    def traces(self, n: int, seed: int, shift: Shift = NO_SHIFT) -> list[dict[str, Any]]:
        """``n`` traces in flat-dict form, reproducible from ``seed``."""
        rng = np.random.default_rng(seed)
        prompts = self.suite(n) if self.mode == "suite" else [self._prompt(rng) for _ in range(n)]
        return [
            self._trace(task, prompt, typical, rng, shift, f"tr-{seed}-{i}")
            for i, (task, prompt, typical) in enumerate(prompts)
        ]

    def suite(self, n: int) -> list[tuple[_Task, str, float]]:
        """The suite's first ``n`` prompts with their typical completion tokens (fixed by ``suite_seed``)."""
        rng = np.random.default_rng(self.suite_seed)
        prompts: dict[str, tuple[_Task, str, float]] = {}
        while len(prompts) < n:  # a suite asks each question once; number repeats like test ids
            task, prompt, typical = self._prompt(rng)
            if prompt in prompts:
                prompt = f"{prompt} (case {len(prompts)})"
            prompts[prompt] = (task, prompt, typical)
        return list(prompts.values())

    def _prompt(self, rng: np.random.Generator) -> tuple[_Task, str, float]:
        task = _TASKS[int(rng.integers(len(_TASKS)))]
        fill = {key: str(rng.choice(values)) for key, values in _FILL.items()}
        typical = task.typical_tokens * math.exp(rng.normal(0.0, self.across_prompt_sigma))
        return task, task.template.format(**fill), typical

    def _trace(
        self, task: _Task, prompt: str, typical: float, rng: np.random.Generator, shift: Shift, trace_id: str
    ) -> dict[str, Any]:
        prompt_tokens = SYSTEM_TOKENS + round(len(prompt.split()) * 1.35) + 7
        error_rate = self.error_rate if shift.error_rate is None else shift.error_rate
        model = shift.model or self.model
        base: dict[str, Any] = {
            "trace_id": trace_id,
            "prompt": f"{SYSTEM_PROMPT}\n{prompt}",
            "model": model,
            "deployment": self.deployment,
        }
        if rng.random() < error_rate:
            latency = float(np.exp(rng.normal(math.log(120.0), 0.5)))
            return dict(base, error=True, latency_ms=latency * shift.latency_scale)
        completion = typical * shift.completion_scale * math.exp(rng.normal(0.0, self.within_prompt_sigma))
        completion_tokens = int(min(MAX_TOKENS, max(1, round(completion))))
        tool_calls = 0
        if task.uses_tools and rng.random() < 0.9:
            finish = "tool_calls"
            tool_calls = 1 if rng.random() < 0.85 else 2
            completion_tokens = 12 + 9 * tool_calls + int(rng.integers(0, 4))
            text = ""
        else:
            mix = shift.finish_mix or BASE_FINISH_MIX
            reasons = list(mix)
            probabilities = np.array([mix[r] for r in reasons], dtype=np.float64)
            finish = str(rng.choice(reasons, p=probabilities / probabilities.sum()))
            if completion_tokens >= MAX_TOKENS:
                finish = "length"
            answer = _answer(task, prompt, completion_tokens, rng)
            text = "" if finish == "content_filter" else shift.preamble + answer
        # latency: lognormal overhead plus a lognormal time per output token
        overhead = float(np.exp(rng.normal(math.log(350.0), 0.3)))
        per_token = float(np.exp(rng.normal(math.log(18.0), 0.15)))
        latency = (overhead + per_token * completion_tokens) * shift.latency_scale
        return dict(
            base,
            error=False,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency,
            finish_reason=finish,
            tool_calls=tool_calls,
            response=text,
        )


def _answer(task: _Task, prompt: str, tokens: int, rng: np.random.Generator) -> str:
    """An answer of about ``tokens`` tokens (0.75 words per token) from the task's sentences."""
    words_wanted = max(1, round(tokens * 0.75))
    fill = {key: prompt.split()[-1].strip(".?'") for key in _FILL}
    words: list[str] = []
    while len(words) < words_wanted:
        sentence = task.sentences[int(rng.integers(len(task.sentences)))]
        words.extend(sentence.format(**fill).split())
    return " ".join(words[:words_wanted])
