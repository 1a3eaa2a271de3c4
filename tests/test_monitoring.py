"""Drift detection on traces in memory: features, test selection, corrections, reports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pytest_llmops.monitoring import DriftSettings, compare_traces, extract_features
from pytest_llmops.monitoring.features import FEATURES, from_trace_dict
from pytest_llmops.monitoring.stats import (
    categorical_test,
    min_attainable_p,
    numeric_test,
    profile_test,
    proportion_test,
    psi,
)
from pytest_llmops.monitoring.synthetic import Generator, Shift
from pytest_llmops.monitoring.text import js_distance, ngram_profiles


def _chat_trace(
    *,
    content: str | None = "Why did the cat sit on the computer?",
    state: str = "OK",
    finish: str = "stop",
    tool_calls: int = 0,
    usage: bool = True,
) -> dict[str, object]:
    """A trace in ``Trace.to_dict()`` form, shaped like MLflow 3.17's autolog output."""
    message: dict[str, object] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [{"id": f"t{i}", "type": "function"} for i in range(tool_calls)]
    inputs = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Tell me a joke."}]}
    outputs = {
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    attributes = {
        "mlflow.spanType": json.dumps("CHAT_MODEL"),
        "mlflow.spanInputs": json.dumps(inputs),
        "model": json.dumps("gpt-4o"),
    }
    if state == "OK":
        attributes["mlflow.spanOutputs"] = json.dumps(outputs)
        if usage:
            attributes["mlflow.chat.tokenUsage"] = json.dumps(
                {"input_tokens": 25, "output_tokens": 17, "total_tokens": 42}
            )
    return {
        "info": {
            "trace_id": "tr-1",
            "state": state,
            "execution_duration_ms": 47,
            "trace_metadata": {"mlflow.sourceRun": "run-1"},
            "tags": {"llmops.nodeid": "tests/test_x.py::test_joke"},
        },
        "data": {
            "spans": [
                {
                    "name": "Completions",
                    "start_time_unix_nano": 1,
                    "end_time_unix_nano": 47_000_001,
                    "parent_span_id": None,
                    "status": {"code": "STATUS_CODE_OK" if state == "OK" else "STATUS_CODE_ERROR"},
                    "attributes": attributes,
                }
            ]
        },
    }


# --- features ---------------------------------------------------------------------------------


def test_features_of_an_autolog_shaped_trace() -> None:
    features = from_trace_dict(_chat_trace())
    assert (features.prompt_tokens, features.completion_tokens, features.total_tokens) == (25, 17, 42)
    assert features.latency_ms == 47
    assert features.response_chars == len("Why did the cat sit on the computer?")
    assert features.response_words == 8
    assert (features.finish_reason, features.error, features.tool_calls) == ("stop", False, 0)
    assert (features.model, features.deployment) == ("gpt-4o-2024-08-06", "gpt-4o")
    assert (features.run_id, features.nodeid) == ("run-1", "tests/test_x.py::test_joke")
    assert features.prompt_text == "Tell me a joke."


def test_error_traces_have_no_tokens_or_text_but_keep_latency() -> None:
    features = from_trace_dict(_chat_trace(state="ERROR"))
    assert features.error is True
    assert features.completion_tokens is None and features.response_chars is None
    assert features.finish_reason is None and features.tool_calls is None
    assert features.latency_ms == 47 and features.deployment == "gpt-4o"


def test_tool_calls_are_counted_and_usage_falls_back_to_the_response() -> None:
    features = from_trace_dict(_chat_trace(content=None, finish="tool_calls", tool_calls=2, usage=False))
    assert (features.tool_calls, features.finish_reason, features.response_chars) == (2, "tool_calls", 0)
    assert features.completion_tokens is None  # neither span attribute nor response usage


def test_several_llm_spans_sum_tokens_and_keep_the_last_answer() -> None:
    trace = _chat_trace()
    second = json.loads(json.dumps(trace["data"]["spans"][0]))  # type: ignore[index]
    second["start_time_unix_nano"] = 2
    outputs = json.loads(second["attributes"]["mlflow.spanOutputs"])
    outputs["choices"][0]["message"]["content"] = "final answer"
    second["attributes"]["mlflow.spanOutputs"] = json.dumps(outputs)
    trace["data"]["spans"].append(second)  # type: ignore[index]
    features = from_trace_dict(trace)
    assert features.total_tokens == 84 and features.completion_tokens == 34
    assert features.response_text == "final answer"


def test_flat_dicts_and_objects_with_to_dict_are_accepted() -> None:
    flat = extract_features(
        {
            "prompt": "hi",
            "response": "hello there",
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "latency_ms": 10.5,
            "finish_reason": "stop",
        }
    )
    assert (flat.total_tokens, flat.response_words, flat.tool_calls) == (5, 2, 0)
    assert flat.key == extract_features({"prompt": "hi"}).key

    class FakeTrace:
        def to_dict(self) -> dict[str, object]:
            return _chat_trace()

    assert extract_features(FakeTrace()) == from_trace_dict(_chat_trace())
    with pytest.raises(TypeError, match="Cannot extract drift features"):
        extract_features(42)


# --- statistics -------------------------------------------------------------------------------


def test_numeric_test_is_chosen_by_kind() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(4, 0.3, 60), rng.lognormal(4.3, 0.3, 60)
    counts = numeric_test(np.round(a), np.round(b), kind="count", alpha=0.05)
    assert counts.test == "Mann-Whitney U" and counts.p_value is not None and counts.p_value < 1e-4
    assert counts.effect is not None and counts.effect > 0.5  # rank-biserial: current larger
    latency = numeric_test(a, b, kind="continuous", alpha=0.05)
    assert latency.test == "Kolmogorov-Smirnov" and latency.effect_name == "KS D"
    for key in ("ks_p", "mwu_p", "wasserstein_norm", "psi", "psi_band", "psi_null", "median_change"):
        assert key in latency.details


def test_paired_numeric_test_uses_the_per_prompt_change() -> None:
    rng = np.random.default_rng(1)
    typical = rng.lognormal(4, 1.0, 40)  # prompts differ a lot; each grows by 10 %
    pairs = [([t * rng.lognormal(0, 0.05)], [1.1 * t * rng.lognormal(0, 0.05)]) for t in typical]
    base, cur = [p[0][0] for p in pairs], [p[1][0] for p in pairs]
    paired = numeric_test(base, cur, kind="count", alpha=0.05, pairs=pairs)
    unpaired = numeric_test(base, cur, kind="count", alpha=0.05)
    assert paired.test.startswith("Wilcoxon") and paired.p_value is not None and paired.p_value < 1e-5
    assert unpaired.p_value is not None and unpaired.p_value > 0.1  # drowned by the prompt spread
    assert paired.details["median_ratio_change"] == pytest.approx(0.1, abs=0.03)


def test_constant_or_tiny_samples_are_not_tested() -> None:
    assert numeric_test([3, 3, 3], [3, 3], kind="count", alpha=0.05).p_value is None
    tiny = numeric_test([1.0], [2.0, 3.0], kind="continuous", alpha=0.05)
    assert tiny.p_value is None and tiny.warning and "too few" in tiny.warning


def test_small_samples_warn_that_nothing_can_be_detected() -> None:
    assert min_attainable_p(3, 3) == pytest.approx(0.1)
    result = numeric_test([1.0, 2.0, 3.0], [10.0, 11.0, 12.0], kind="continuous", alpha=0.05)
    assert result.warning and "cannot detect anything" in result.warning
    medium = numeric_test(list(range(12)), list(range(12)), kind="count", alpha=0.05)
    assert medium.warning and "only large shifts" in medium.warning
    big = numeric_test(list(range(60)), list(range(60)), kind="count", alpha=0.05)
    assert big.warning is None


def test_categorical_test_switches_to_fisher_for_small_counts() -> None:
    big = categorical_test(["stop"] * 80 + ["length"] * 20, ["stop"] * 50 + ["length"] * 50, alpha=0.05)
    assert big.test == "chi-square" and big.p_value is not None and big.p_value < 1e-4
    assert big.effect_name == "JS distance" and 0 < (big.effect or 0) < 1 and "cramers_v" in big.details
    small = categorical_test(["stop"] * 19 + ["length"] * 1, ["stop"] * 15 + ["length"] * 5, alpha=0.05)
    assert small.test == "Fisher exact"
    three = categorical_test(["a"] * 18 + ["b"] * 2, ["a"] * 10 + ["b"] * 7 + ["c"] * 3, alpha=0.05, seed=1)
    assert three.test == "Fisher exact (Monte Carlo)"
    assert (
        three.p_value
        == categorical_test(
            ["a"] * 18 + ["b"] * 2, ["a"] * 10 + ["b"] * 7 + ["c"] * 3, alpha=0.05, seed=1
        ).p_value
    )  # seeded: reproducible
    assert categorical_test(["x"] * 5, ["x"] * 7, alpha=0.05).p_value is None  # one category


def test_error_rate_uses_two_proportions_or_fisher() -> None:
    z = proportion_test([True] * 30 + [False] * 170, [True] * 60 + [False] * 140, alpha=0.05)
    assert z.test == "two-proportion z" and z.p_value is not None and z.p_value < 0.001
    assert z.effect is not None and z.effect > 0  # Cohen's h, current higher
    fisher = proportion_test([True] + [False] * 49, [True] * 4 + [False] * 46, alpha=0.05)
    assert fisher.test == "Fisher exact"
    assert proportion_test([False] * 10, [False] * 10, alpha=0.05).p_value is None


def test_psi_bands_and_small_sample_bias() -> None:
    rng = np.random.default_rng(2)
    same = [psi(rng.normal(size=50), rng.normal(size=50))[0] for _ in range(200)]
    assert float(np.mean(same)) > 0.1  # "moderate" or worse by chance at 50 per side: report, not decide
    value, bins = psi(rng.normal(size=5000), rng.normal(size=5000))
    assert value < 0.01 and bins == 10
    assert psi(rng.normal(size=5000), rng.normal(1.0, size=5000))[0] > 0.25


def test_text_profiles_and_permutation_test() -> None:
    profiles = ngram_profiles(["Hello   World", "hello world", "ab"])
    assert np.allclose(profiles[0], profiles[1]) and profiles[2].sum() == 0  # normalised; too short
    assert js_distance(profiles[0], profiles[0])[0] == pytest.approx(0, abs=1e-6)
    jokes = [f"Why did the cat number {i} sit on the computer? To watch the mouse." for i in range(30)]
    refusals = [f"I am sorry, but I cannot help with request {i}." for i in range(30)]
    same = profile_test(ngram_profiles(jokes[:15]), ngram_profiles(jokes[15:]), alpha=0.05, permutations=199)
    other = profile_test(
        ngram_profiles(jokes[:15]), ngram_profiles(refusals[:15]), alpha=0.05, permutations=199
    )
    assert same.p_value is not None and same.p_value > 0.05
    assert other.p_value == pytest.approx(1 / 200) and (other.effect or 0) > 0.5


# --- comparisons and reports ------------------------------------------------------------------


def test_no_shift_no_drift_and_a_shift_is_found() -> None:
    generator = Generator()
    baseline = generator.traces(50, seed=1)
    same = compare_traces(baseline, generator.traces(50, seed=2))
    assert not same.drifted and same.paired_prompts == 50
    shifted = compare_traces(baseline, generator.traces(50, seed=2, shift=Shift(completion_scale=1.5)))
    assert shifted.drifted and "completion_tokens" in shifted.drifted_features
    feature = shifted.features["completion_tokens"]
    assert feature.test == "Wilcoxon signed-rank (paired by prompt)"
    assert (
        feature.p_adjusted is not None
        and feature.p_value is not None
        and feature.p_adjusted >= feature.p_value
    )


def test_benjamini_hochberg_adjusts_over_tested_features_only() -> None:
    generator = Generator()
    report = compare_traces(
        generator.traces(40, seed=1), generator.traces(40, seed=2, shift=Shift(model="new"))
    )
    tested = [f for f in report.features.values() if f.tested]
    ps = sorted(f.p_value for f in tested if f.p_value is not None)
    expected = [min(1.0, min(ps[j] * len(ps) / (j + 1) for j in range(i, len(ps)))) for i in range(len(ps))]
    assert sorted(f.p_adjusted for f in tested if f.p_adjusted is not None) == pytest.approx(expected)
    assert all(f.p_adjusted is None and not f.drifted for f in report.features.values() if not f.tested)
    assert report.features["model"].drifted and report.features["deployment"].p_value is None


def test_traffic_is_not_paired_and_pairing_can_be_switched_off() -> None:
    traffic = Generator(mode="traffic")
    report = compare_traces(traffic.traces(60, seed=1), traffic.traces(60, seed=2))
    assert report.paired_prompts == 0
    assert report.features["completion_tokens"].test == "Mann-Whitney U"
    assert report.features["latency_ms"].test == "Kolmogorov-Smirnov"
    suite = Generator()
    off = compare_traces(suite.traces(30, 1), suite.traces(30, 2), settings=DriftSettings(pairing="off"))
    assert off.paired_prompts == 0 and off.features["completion_tokens"].test == "Mann-Whitney U"


def test_settings_select_features_and_check_alpha() -> None:
    generator = Generator()
    report = compare_traces(
        generator.traces(20, 1),
        generator.traces(20, 2),
        settings=DriftSettings(features=("error", "latency_ms"), alpha=0.1),
    )
    assert list(report.features) == ["latency_ms", "error"] and report.alpha == 0.1
    with pytest.raises(ValueError, match="unknown drift feature"):
        compare_traces([], [], settings=DriftSettings(features=("nope",)))
    with pytest.raises(ValueError, match="alpha"):
        DriftSettings(alpha=1.5)


def test_empty_sides_give_a_report_with_a_warning() -> None:
    report = compare_traces([], Generator().traces(5, 1))
    assert not report.drifted and "nothing to compare" in report.warnings[0]
    assert all(not f.tested for f in report.features.values())


def test_report_json_text_and_small_sample_warnings() -> None:
    """8 traces per side cannot show a doubled answer length across different prompts (the
    warnings say so): the verdict the data imply is no drift."""
    generator = Generator()
    report = compare_traces(
        generator.traces(8, 1),
        generator.traces(8, 2, Shift(completion_scale=2.0)),
        baseline_label="run:a",
        current_label="run:b",
    )
    data = json.loads(report.to_json())
    assert data["schema"] == "pytest-llmops/drift/2" and data["baseline"] == {"ref": "run:a", "traces": 8}
    assert set(data["features"]) == {spec.name for spec in FEATURES}
    assert data["features"]["latency_ms"]["warning"]  # 8 traces per side: warned
    assert data["features"]["latency_ms"]["p_method"] == "exact"
    assert data["features"]["completion_tokens"]["min_effect"]["metric"] == "median_change"
    text = report.to_text()
    assert "latency_ms" in text and "Warnings (!):" in text and "run:a" in text
    assert not report.drifted
    assert text.strip().splitlines()[-1].startswith("No drift detected (")


def test_report_verdict_names_the_drifted_features() -> None:
    """The same shift at 50 prompts asked on both sides is found: the verdict says DRIFT and
    names completion tokens."""
    generator = Generator()
    report = compare_traces(generator.traces(50, 1), generator.traces(50, 2, Shift(completion_scale=2.0)))
    verdict = report.to_text().strip().splitlines()[-1]
    assert report.drifted and verdict.startswith("DRIFT in ")
    assert "completion_tokens" in verdict.split(":", 1)[1]


def test_importing_monitoring_is_free() -> None:
    code = (
        "import sys, pytest_llmops.monitoring, pytest_llmops.monitoring.cli; "
        "heavy = [m for m in ('numpy', 'scipy', 'mlflow', 'matplotlib') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
