"""Drift at production scale: thousands of traces per side, asymptotic p-values where exact
ones are infeasible, statistics from value counts equal to scipy's, and the practical minimum
effect that keeps large samples from flagging noise."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from pytest_llmops.monitoring import DriftSettings, MinEffect, compare_features, compare_traces
from pytest_llmops.monitoring.effects import DEFAULT_MIN_EFFECTS, parse_min_effects
from pytest_llmops.monitoring.engine import compare_columns
from pytest_llmops.monitoring.features import extract_all
from pytest_llmops.monitoring.stats import Weighted, min_attainable_p, numeric_test
from pytest_llmops.monitoring.stats.weighted import ks_asymptotic_p, ks_distance, mann_whitney, wasserstein
from pytest_llmops.monitoring.synthetic import Generator, Shift
from pytest_llmops.monitoring.synthetic_columns import draw_columns
from pytest_llmops.monitoring.validation import simulate_columns

TRAFFIC = Generator(mode="traffic")


def test_2000_traces_per_side_do_not_overflow() -> None:
    """``math.comb(n + m, n)`` overflowed a float past about 1,000 per side (OverflowError in
    ``stats.min_attainable_p``); 2,000 traffic traces per side now give a report."""
    baseline = extract_all(TRAFFIC.traces(2000, seed=1))
    current = extract_all(TRAFFIC.traces(2000, seed=2))
    report = compare_features(baseline, current)
    assert report.n_baseline == report.n_current == 2000
    assert report.features["completion_tokens"].p_value is not None
    assert min_attainable_p(2000, 2000) == 0.0  # 2 / C(4000, 2000) underflows to 0, no overflow
    assert min_attainable_p(3, 3) == pytest.approx(0.1)
    assert min_attainable_p(1000, 1000) == pytest.approx(2 * math.exp(-math.log(math.comb(2000, 1000))))


def test_statistics_from_value_counts_equal_scipys() -> None:
    rng = np.random.default_rng(5)
    base = np.round(rng.lognormal(3, 0.6, 3000))  # counts: many ties
    cur = np.round(rng.lognormal(3.05, 0.6, 2500))
    b, c = Weighted.of(base), Weighted.of(cur)
    u, p = mann_whitney(c, b)
    expected = stats.mannwhitneyu(cur, base, alternative="two-sided", method="asymptotic")
    assert u == pytest.approx(float(expected.statistic)) and p == pytest.approx(float(expected.pvalue))
    ks = stats.ks_2samp(cur, base, method="asymp")
    assert ks_distance(c, b) == pytest.approx(float(ks.statistic))
    assert ks_asymptotic_p(float(ks.statistic), cur.size, base.size) == pytest.approx(float(ks.pvalue))
    assert wasserstein(b, c) == pytest.approx(float(stats.wasserstein_distance(base, cur)))
    for q in (0.1, 0.5, 0.9, 0.37):
        assert b.quantile(q) == pytest.approx(float(np.quantile(base, q)))
    assert b.std() == pytest.approx(float(np.std(base, ddof=1)))
    # a group-by's (value, count) rows in any order, duplicates included, are the same sample
    merged = Weighted.from_counts(
        np.concatenate([b.values[::-1], [b.values[0]]]), np.concatenate([b.counts[::-1], [0]])
    )
    assert np.array_equal(merged.values, b.values) and np.array_equal(merged.counts, b.counts)


def test_large_samples_use_asymptotic_p_values_and_the_report_says_so() -> None:
    rng = np.random.default_rng(1)
    small = numeric_test(rng.normal(size=50), rng.normal(size=50), kind="continuous", alpha=0.05)
    big = numeric_test(rng.normal(size=12_000), rng.normal(size=12_000), kind="continuous", alpha=0.05)
    assert (small.p_method, big.p_method) == ("exact", "asymptotic")
    counts = numeric_test(rng.integers(0, 9, 40), rng.integers(0, 9, 40), kind="count", alpha=0.05)
    assert counts.p_method == "asymptotic"  # ties: scipy's exact distribution does not apply

    report = compare_columns(draw_columns(TRAFFIC, 12_000, 1), draw_columns(TRAFFIC, 12_000, 2))
    data = json.loads(report.to_json())
    assert data["features"]["latency_ms"]["p_method"] == "asymptotic"
    assert data["features"]["finish_reason"]["p_method"] == "asymptotic"
    assert data["features"]["response_text"]["p_method"] == "permutation"
    assert "KS (asymp.)" in report.to_text()
    # text: the permutation test runs on a sample, the JS distance on every text
    text = report.features["response_text"]
    assert "on a sample of 2000/2000" in text.test and text.details["sample_baseline"] == 2000
    assert text.n_baseline > 9000


def test_significant_but_small_is_changed_below_threshold_not_drift() -> None:
    """20,000 traces per side, latency 2 % slower: KS finds it (q <= alpha) but the tail
    moved less than the 20 % minimum: "changed (below threshold)". 40 % slower is DRIFT."""
    baseline = draw_columns(TRAFFIC, 20_000, 1)
    wobble = compare_columns(baseline, draw_columns(TRAFFIC, 20_000, 2, Shift(latency_scale=1.02)))
    latency = wobble.features["latency_ms"]
    assert latency.p_adjusted is not None and latency.p_adjusted <= 0.05
    assert latency.status == "changed (below threshold)" and not latency.drifted
    assert latency.min_effect == MinEffect("p90_change", 0.20)
    assert latency.practical_effect is not None and latency.practical_effect < 0.05
    assert not wobble.drifted and wobble.changed_below_threshold == ["latency_ms"]
    assert "changed (below threshold)" in wobble.to_text()
    assert wobble.to_text().strip().splitlines()[-1].endswith("changed below the minimum effect: latency_ms.")

    slower = compare_columns(baseline, draw_columns(TRAFFIC, 20_000, 2, Shift(latency_scale=1.4)))
    assert slower.features["latency_ms"].status == "drift" and slower.drifted_features == ["latency_ms"]

    strict = compare_columns(
        baseline,
        draw_columns(TRAFFIC, 20_000, 2, Shift(latency_scale=1.02)),
        settings=DriftSettings(min_effect={"latency_ms": 0}),  # significance alone, as before
    )
    assert strict.features["latency_ms"].drifted


def test_min_effect_overrides_and_their_errors() -> None:
    assert parse_min_effects(["latency_ms=0.3", "finish_reason = js:0.2"]) == {
        "latency_ms": 0.3,
        "finish_reason": MinEffect("js", 0.2),
    }
    settings = DriftSettings(min_effect=parse_min_effects(["latency_ms=psi:0.25"]))
    assert settings.thresholds()["latency_ms"] == MinEffect("psi", 0.25)
    assert settings.thresholds()["completion_tokens"] == DEFAULT_MIN_EFFECTS["completion_tokens"]
    for bad, message in (
        ("latency", "use FEATURE=VALUE"),
        ("nope=0.1", "unknown drift feature"),
        ("latency_ms=fast", "is not a number"),
        ("latency_ms=-1", ">= 0"),
        ("latency_ms=js:0.1", "does not apply to latency_ms"),
        ("error=zeta:1", "unknown effect metric"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_min_effects([bad])


def test_categorical_tables_too_big_for_monte_carlo_pool_rare_categories() -> None:
    base = {"stop": 95_000, "length": 4_999, "content_filter": 1}
    cur = {"stop": 94_000, "length": 5_997, "content_filter": 3}
    from pytest_llmops.monitoring.stats import categorical_test

    result = categorical_test(base, cur, alpha=0.05)
    assert result.test == "chi-square (rare categories pooled)" and result.p_value is not None


def test_no_false_alarms_with_a_latency_wobble_at_10k_per_side() -> None:
    """The fast version of the 100,000-per-side validation in docs/monitoring.md: traffic,
    2 % latency wobble, 10,000 traces per side, 12 comparisons (199 permutations for the
    text tests): no DRIFT. The wobble is significant in some of them, and stays below its
    minimum effect there."""
    settings = DriftSettings(permutations=199)
    outcome = simulate_columns(Shift(latency_scale=1.02), n=10_000, repetitions=12, seed=3, settings=settings)
    assert outcome.flagged == 0, outcome
    assert outcome.below_threshold >= 2, outcome  # the wobble is seen, and judged small


def test_text_effect_at_scale_finds_a_stock_phrase() -> None:
    baseline = draw_columns(TRAFFIC, 6_000, 1)
    phrased = compare_columns(
        baseline, draw_columns(TRAFFIC, 6_000, 2, Shift(preamble="Certainly! Here is my answer: "))
    )
    text = phrased.features["response_text"]
    assert text.status == "drift" and text.effect is not None and text.effect > 0.1


def test_compare_traces_and_columns_agree() -> None:
    generator = Generator()
    traces_b, traces_c = generator.traces(40, 1), generator.traces(40, 2, Shift(completion_scale=1.5))
    from pytest_llmops.monitoring.columns import FeatureColumns

    by_traces = compare_traces(traces_b, traces_c)
    by_columns = compare_columns(
        FeatureColumns.from_features(extract_all(traces_b)),
        FeatureColumns.from_features(extract_all(traces_c)),
    )
    assert by_traces.to_dict()["features"] == by_columns.to_dict()["features"]
