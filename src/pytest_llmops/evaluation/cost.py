"""What a test's LLM calls cost, in US dollars: ``llmops.cost_usd``.

A trace's cost is MLflow's where MLflow has one: the trace's ``mlflow.trace.cost`` metadata
or a span's ``mlflow.llm.cost`` attribute (Databricks tracking computes them as the trace
ends), else what MLflow's SQL store will attach to the span when it is written (its model
and tokens priced from the model catalog bundled with MLflow; never downloaded here); else
the span's tokens times a price table: the ``llmops_prices`` ini option over
:data:`DEFAULT_PRICES`, for what MLflow cannot price (deployment names, fine-tuned models).
A judge's cost is MLflow's ``judgeCost`` of its feedback, else its tokens times the table.

Prices are US dollars per million tokens, input then output, one model per line::

    [tool.pytest.ini_options]
    llmops_prices = [
        "gpt-4o = 2.50 10.00",
        "my-deployment = 0.15 0.60",
    ]

A model is looked up by its name as the trace records it (``gpt-4o-2024-08-06`` finds
``gpt-4o``: a trailing release date is ignored), then by the deployment it was called
through (``azure:/my-deployment`` for judges).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmops.tracking.traces import LLM_SPAN_TYPES

if TYPE_CHECKING:
    from mlflow.entities import Trace


@dataclass(frozen=True)
class Price:
    """US dollars per million input (prompt) and output (completion) tokens."""

    input_per_million: float
    output_per_million: float

    def of(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1e6


DEFAULT_PRICES: dict[str, Price] = {"gpt-4o": Price(2.50, 10.00)}
"""gpt-4o (2024-08-06, Azure OpenAI global standard deployment; the same figures as MLflow's
own model catalog): $2.50 per million input tokens, $10.00 per million output tokens."""

PRICES_EXAMPLE = 'llmops_prices = ["gpt-4o = 2.50 10.00"]'
_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_prices_key = pytest.StashKey[dict[str, Price]]()


def model_key(model: str) -> str:
    """A model name as the price table is keyed: lower case, without a release date."""
    name = model.strip().lower()
    if ":/" in name:  # a model URI (azure:/gpt-4o): the deployment or model after the scheme
        name = name.split(":/", 1)[1]
    return _DATE_SUFFIX.sub("", name)


def parse_prices(lines: Iterable[str]) -> dict[str, Price]:
    """The ``llmops_prices`` lines over :data:`DEFAULT_PRICES`; a bad line is a usage error."""
    prices = dict(DEFAULT_PRICES)
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        model, sep, rest = line.partition("=")
        numbers = rest.split()
        try:
            values = [float(n) for n in numbers]
        except ValueError:
            values = []
        if not sep or not model.strip() or len(values) != 2 or any(v < 0 or v != v for v in values):
            raise pytest.UsageError(
                f"llmops_prices: {raw.strip()!r} is not `MODEL = INPUT OUTPUT` (US dollars per million "
                f"input and output tokens, numbers >= 0). Example: {PRICES_EXAMPLE}"
            )
        prices[model_key(model)] = Price(values[0], values[1])
    return prices


def prices(config: pytest.Config) -> dict[str, Price]:
    """This session's price table (read once)."""
    if _prices_key not in config.stash:
        config.stash[_prices_key] = parse_prices(config.getini("llmops_prices") or [])
    return config.stash[_prices_key]


def check_prices(config: pytest.Config) -> None:
    """Read the table at configuration, so that a bad line stops the session at once."""
    prices(config)


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _total(cost: Any) -> float | None:
    cost = _json(cost)
    if isinstance(cost, Mapping) and isinstance(cost.get("total_cost"), (int, float)):
        return float(cost["total_cost"])
    return None


def _tokens(usage: Any) -> tuple[int, int] | None:
    usage = _json(usage)
    if not isinstance(usage, Mapping) or not usage:
        return None
    return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)


def _mlflow_cost(model: str | None, usage: Any) -> float | None:
    """What MLflow's store prices a span at (its bundled catalog: no provider, no download)."""
    if not model or not isinstance(usage, Mapping):
        return None
    if any(key.startswith("cache_") and usage[key] for key in usage):  # priced apart by MLflow
        return _mlflow_total(model, dict(usage))
    price = _mlflow_price(model)
    if price is None:
        return None
    return price.of(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))


@functools.lru_cache(maxsize=256)
def _mlflow_price(model: str) -> Price | None:
    """MLflow's price of a model per million tokens (a catalog lookup costs ~0.7 ms: once),
    probed with a thousand tokens (some models cost more per token past 200K)."""
    per_input = _mlflow_total(model, {"input_tokens": 1000, "output_tokens": 0})
    per_output = _mlflow_total(model, {"input_tokens": 0, "output_tokens": 1000})
    if per_input is None and per_output is None:
        return None
    return Price((per_input or 0.0) * 1000, (per_output or 0.0) * 1000)


def _mlflow_total(model: str, usage: dict[str, Any]) -> float | None:
    from mlflow.tracing.utils import calculate_cost_by_model_and_token_usage

    try:
        return _total(calculate_cost_by_model_and_token_usage(model, usage, None))
    except Exception:  # a model MLflow cannot price: the table's turn
        return None


@dataclass
class Cost:
    """The cost of a test so far, and the models it found no price for."""

    table: Mapping[str, Price]
    usd: float = 0.0
    unpriced: set[str] = field(default_factory=set)

    def price(self, *names: str | None) -> Price | None:
        for name in names:
            if name:
                found = self.table.get(model_key(name))
                if found is not None:
                    return found
        return None

    def add_tokens(self, tokens: tuple[int, int], *names: str | None) -> None:
        price = self.price(*names)
        if price is None:
            if any(tokens):
                self.unpriced.add(next((n for n in names if n), "an unnamed model"))
            return
        self.usd += price.of(*tokens)

    def add_trace(self, trace: Trace) -> None:
        """The cost of one trace's LLM calls."""
        known = _total(trace.info.trace_metadata.get("mlflow.trace.cost"))
        if known is not None:
            self.usd += known
            return
        priced = False
        first_model: str | None = None
        for span in trace.data.spans:
            if span.span_type not in LLM_SPAN_TYPES:
                continue
            model = span.get_attribute("mlflow.llm.model")
            inputs = span.inputs if isinstance(span.inputs, Mapping) else {}
            requested = inputs.get("model") if isinstance(inputs.get("model"), str) else None
            first_model = first_model or model or requested
            span_cost = _total(span.get_attribute("mlflow.llm.cost"))
            if span_cost is not None:
                self.usd += span_cost
                priced = True
                continue
            usage = _json(span.get_attribute("mlflow.chat.tokenUsage"))
            tokens = _tokens(usage)
            if tokens is None:
                continue
            priced = True
            mlflow_cost = _mlflow_cost(model, usage)
            if mlflow_cost is not None:
                self.usd += mlflow_cost
            else:
                self.add_tokens(tokens, model, requested)
        if not priced:  # no span carried usage: the trace's total (as CallStats counts it)
            tokens = _tokens(trace.info.token_usage)
            if tokens is not None and first_model is not None:
                self.add_tokens(tokens, first_model)

    def add_judge(self, metadata: Mapping[str, Any] | None, model_uri: str | None) -> None:
        """The cost of one judge's feedback (its metadata as MLflow's judges write it)."""
        if not metadata:
            return
        known = metadata.get("mlflow.assessment.judgeCost")
        try:
            if known is not None:
                self.usd += float(known)
                return
            tokens = (
                int(metadata.get("mlflow.assessment.judgeInputTokens") or 0),
                int(metadata.get("mlflow.assessment.judgeOutputTokens") or 0),
            )
        except (TypeError, ValueError):
            return
        self.add_tokens(tokens, model_uri)

    def note(self) -> str | None:
        """What the summary says when some calls had no price."""
        if not self.unpriced:
            return None
        models = ", ".join(sorted(self.unpriced))
        return (
            f"no price for {models}: llmops.cost_usd leaves those calls out; add "
            f"`{sorted(self.unpriced)[0]} = INPUT OUTPUT` (US dollars per million tokens) to llmops_prices"
        )
