"""`pytest-llmops sweep`: deletes what pytest-llmops left behind once it is due, and never
touches anything it did not tag."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from pytest_llmops import cli
from pytest_llmops.resources import remove_after
from pytest_llmops.sweep import Resource, parse_duration
from tests import test_databricks_support as support
from tests.test_databricks_support import SEEN, make_cluster

workspace_double = support.workspace_double

NOW = dt.datetime(2025, 6, 1, 12, 30, tzinfo=dt.UTC)
OURS = {"CreatedBy": "pytest-llmops"}


def resource(tags: dict[str, str], created: dt.datetime | None = None) -> Resource:
    return Resource("thing", "id-1", lambda: None, tags=tags, created=created)


@pytest.mark.parametrize(
    ("tags", "due"),
    [
        ({**OURS, "RemoveAfter": "2025060112"}, True),  # the hour has passed
        ({**OURS, "RemoveAfter": "2025060113"}, False),
        ({"RemoveAfter": "2025060100"}, False),  # not ours: never
        ({"CreatedBy": "someone-else", "RemoveAfter": "2025060100"}, False),
        ({**OURS, "RemoveAfter": "soon"}, False),  # unreadable: kept
        (OURS, False),
    ],
)
def test_a_resource_is_due_once_its_remove_after_hour_passed(tags, due):
    assert resource(tags).due(NOW) is due


def test_older_than_looks_at_the_age_instead():
    young = resource({**OURS, "RemoveAfter": "2025060114"}, created=NOW - dt.timedelta(minutes=20))
    assert not young.due(NOW)
    assert young.due(NOW, dt.timedelta(minutes=15))
    assert not young.due(NOW, dt.timedelta(hours=1))
    # Without a creation time, the age comes from RemoveAfter minus the lifetime.
    assert resource({**OURS, "RemoveAfter": "2025060113"}).due(NOW, dt.timedelta(minutes=30))
    foreign = resource({"RemoveAfter": "2025060100"}, created=NOW - dt.timedelta(days=9))
    assert not foreign.due(NOW, dt.timedelta(0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("45s", 45), ("90m", 5400), ("2h", 7200), ("1d12h", 129600), ("1w", 604800), ("1.5h", 5400)],
)
def test_durations(text, expected):
    assert parse_duration(text) == dt.timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["", "2", "h", "2 hours", "-1h", "1h-"])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"e\.g\. 90m, 2h"):
        parse_duration(text)


def test_without_a_configured_cloud_nothing_is_swept(capsys):
    assert cli.main(["sweep"]) == 2
    out = capsys.readouterr().out
    assert "skipped: Databricks clusters: no workspace configured. Set DATABRICKS_HOST" in out
    assert "Nothing was swept" in out


def test_sweep_deletes_only_due_clusters_of_ours(workspace_double, capsys):
    double = workspace_double
    due = make_cluster(double, name="due", tags={**OURS, "RemoveAfter": "2000010100", "LLMOpsSession": "abc"})
    fresh = make_cluster(double, name="fresh", tags={**OURS, "RemoveAfter": remove_after()}, terminated=True)
    untagged = make_cluster(double, name="untagged", tags={"RemoveAfter": "2000010100"})
    foreign = make_cluster(
        double, name="foreign", tags={"CreatedBy": "terraform", "RemoveAfter": "2000010100"}
    )

    def live() -> set[str]:
        return {c["cluster_id"] for c in double.databricks.live_clusters()}

    assert cli.main(["sweep", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would delete Databricks cluster {due} (due), RUNNING: RemoveAfter 2000010100, session abc" in out
    assert f"kept Databricks cluster {fresh} (fresh), TERMINATED" in out
    assert "would delete 1, kept 1 not due, failed 0; 2 resource(s) not created by pytest-llmops" in out
    assert live() == {due, fresh, untagged, foreign}

    assert cli.main(["sweep"]) == 0
    assert f"deleted Databricks cluster {due}" in capsys.readouterr().out
    assert live() == {fresh, untagged, foreign}
    assert double.databricks.clusters[due]["permanently_deleted"]

    assert cli.main(["sweep", "--older-than", "0"]) == 0
    assert f"deleted Databricks cluster {fresh}" in capsys.readouterr().out
    assert live() == {untagged, foreign}


def test_sweep_reports_a_failure_and_exits_1(workspace_double, capsys):
    due = make_cluster(workspace_double, tags={**OURS, "RemoveAfter": "2000010100"})
    workspace_double.databricks.tokens = {"dapi-only-for-listing"}  # every call is refused

    assert cli.main(["sweep"]) == 1
    out = capsys.readouterr().out
    assert "FAILED to list resources (pytest_llmops.databricks.sweep:find_clusters)" in out
    assert due in {c["cluster_id"] for c in workspace_double.databricks.live_clusters()}


def test_sweep_removes_what_a_run_kept(pytester: pytest.Pytester, workspace_double, capsys):
    pytester.makepyfile(test_seen=SEEN)
    result = pytester.runpytest("--llmops-live", "--llmops-provision", "--llmops-keep-resources")
    result.assert_outcomes(passed=1)
    [kept] = workspace_double.databricks.live_clusters()
    assert kept["custom_tags"]["CreatedBy"] == "pytest-llmops"

    assert cli.main(["sweep"]) == 0  # its RemoveAfter is two hours away
    assert workspace_double.databricks.live_clusters() != []
    assert cli.main(["sweep", "--older-than", "0"]) == 0
    assert f"deleted Databricks cluster {kept['cluster_id']} (pytest-llmops-" in capsys.readouterr().out
    assert workspace_double.databricks.live_clusters() == []
