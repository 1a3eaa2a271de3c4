"""The lab's cluster: runtime and node type chosen at run time, create-and-wait with progress,
attach to an existing cluster, and removal of what was created.

The lab's cluster is single node, Databricks Runtime 16.4 LTS ML (or a later ML LTS),
Photon off, ``Standard_D4ds_v5``. Single node is spelled the way every workspace accepts
(``num_workers=0``, the ``singleNode`` Spark profile and the ``ResourceClass`` tag):
databricks-sdk 0.162 also offers ``kind=CLASSIC_PREVIEW`` with ``is_single_node=True``, but
that form renames access modes and is refused by workspaces without the new compute form.

Every function takes the ``WorkspaceClient`` and a ``progress(message)`` callable, so it runs
the same under a live, recorded or replayed client.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_llmops.errors import ProvisioningError, QuotaExceeded
from pytest_llmops.resources import creation_line

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.mixins.compute import ClustersExt
    from databricks.sdk.service.compute import ClusterDetails

Progress = Callable[[str], None]
T = TypeVar("T")

LAB_RUNTIME = (16, 4)
DEFAULT_NODE_TYPE = "Standard_D4ds_v5"
NODE_TYPE_ENV = "DATABRICKS_NODE_TYPE"
NODE_TYPE_INI = "llmops_databricks_node_type"
AUTOTERMINATION_MINUTES = 60
WAIT_TIMEOUT = timedelta(minutes=30)
PROGRESS_EVERY_S = 15.0
LAB_REGIONS = ("eastus2", "northcentralus", "swedencentral", "switzerlandwest")
SINGLE_NODE_SPARK_CONF = {"spark.databricks.cluster.profile": "singleNode", "spark.master": "local[*]"}
SINGLE_NODE_TAGS = {"ResourceClass": "SingleNode"}

_QUOTA = re.compile(
    r"cores?\W+quota|quota\W*exceeded|cpu\W+(quota|limit)|vcpus?\W+(quota|limit)", re.IGNORECASE
)
_LOCATION = re.compile(r"Location:\s*([A-Za-z0-9]+)")
_VERSION = re.compile(r"^(\d+)\.(\d+)")


@dataclass(frozen=True)
class DatabricksCluster:
    """The cluster a session runs on (the value of ``databricks_cluster``)."""

    cluster_id: str
    cluster_name: str
    spark_version: str
    node_type_id: str | None
    provisioned: bool
    """True when this session created it (and removes it); False when it attached."""
    started: bool = False
    """Attach only: whether this session started it (it is left running: auto termination stops it)."""
    environment: tuple[str, ...] = ()
    """The names of the environment variables its spec gives it (``spark_env_vars``), never values."""

    def metadata(self) -> dict[str, Any]:
        """A JSON-able descriptor (shared across xdist workers, stored in session cassettes)."""
        data = asdict(self)
        data["environment"] = list(self.environment)
        return data

    @classmethod
    def from_metadata(cls, data: Mapping[str, Any]) -> DatabricksCluster:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["environment"] = tuple(known.get("environment") or ())
        return cls(**known)

    def require_environment(self, *names: str) -> None:
        """Fail, saying what to set on the cluster and how, unless its environment has every
        one of ``names`` (code run on it reads them from ``os.environ``)::

            def test_cell(databricks_cluster, databricks_command):
                databricks_cluster.require_environment("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY")
                databricks_command(CELL)
        """
        __tracebackhide__ = True
        from pytest_llmops.databricks.secrets import environment_problem

        problem = environment_problem(self.cluster_id, self.environment, names, provisioned=self.provisioned)
        if problem is not None:
            raise problem


def node_type(ini_value: str | None, environ: Mapping[str, str]) -> str:
    """The node type: the ``llmops_databricks_node_type`` ini option, else
    ``DATABRICKS_NODE_TYPE``, else the lab's ``Standard_D4ds_v5``."""
    return (ini_value or "").strip() or environ.get(NODE_TYPE_ENV, "").strip() or DEFAULT_NODE_TYPE


def runtime_version(spark_version: str | None) -> tuple[int, int]:
    """``16.4.x-cpu-ml-scala2.12`` -> ``(16, 4)``; ``(0, 0)`` when unreadable."""
    match = _VERSION.match(spark_version or "")
    return (int(match[1]), int(match[2])) if match else (0, 0)


def select_runtime(clusters: ClustersExt) -> str:
    """The newest ML LTS runtime, 16.4 or later (Scala 2.12 first: 16.4 LTS ML is the lab's).

    Raises :class:`ProvisioningError` when the workspace offers none.
    """
    older: list[str] = []
    for scala in ("2.12", "2.13"):
        try:
            key = clusters.select_spark_version(ml=True, long_term_support=True, latest=True, scala=scala)
        except ValueError:
            continue
        if runtime_version(key) >= LAB_RUNTIME:
            return key
        older.append(key)
    found = f" (its newest ML LTS runtime is {older[0]})" if older else " (it offers no ML LTS runtime)"
    raise ProvisioningError(
        f"The workspace offers no Databricks Runtime ML LTS {LAB_RUNTIME[0]}.{LAB_RUNTIME[1]} or "
        f"later{found}, which the lab's cluster needs. Use a workspace that offers 16.4 LTS ML "
        "(`DATABRICKS_HOST=https://<workspace> pytest --llmops-record --llmops-provision`), or attach a "
        "cluster that runs it: `DATABRICKS_CLUSTER_ID=<cluster id> pytest --llmops-record`."
    )


def single_node_spec(
    *,
    name: str,
    spark_version: str,
    node_type_id: str,
    tags: Mapping[str, str],
    user_name: str | None,
    autotermination_minutes: int = AUTOTERMINATION_MINUTES,
    spark_env_vars: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``clusters.create`` for the lab's single node ML cluster, with
    ``spark_env_vars`` (its notebooks' environment variables) when given."""
    from databricks.sdk.service.compute import DataSecurityMode, RuntimeEngine

    spec: dict[str, Any] = {
        "cluster_name": name,
        "spark_version": spark_version,
        "node_type_id": node_type_id,
        "num_workers": 0,
        "spark_conf": dict(SINGLE_NODE_SPARK_CONF),
        "custom_tags": {**tags, **SINGLE_NODE_TAGS},
        "runtime_engine": RuntimeEngine.STANDARD,  # Photon off
        "autotermination_minutes": autotermination_minutes,
        "data_security_mode": DataSecurityMode.SINGLE_USER,  # ML runtimes need a dedicated cluster
        "single_user_name": user_name,
    }
    if spark_env_vars:
        spec["spark_env_vars"] = dict(spark_env_vars)
    return spec


class _Watcher:
    """The waiters' callback: state and elapsed time on the terminal (on every change, and
    every ``PROGRESS_EVERY_S`` seconds), and the last state seen (for error messages)."""

    def __init__(self, cluster_id: str, progress: Progress) -> None:
        self.cluster_id = cluster_id
        self.progress = progress
        self.started = time.monotonic()
        self.last: ClusterDetails | None = None
        self._shown: tuple[str, float] | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, details: ClusterDetails) -> None:
        self.last = details
        state = details.state.value if details.state is not None else "UNKNOWN"
        shown = self._shown
        if shown is None or shown[0] != state or self.elapsed - shown[1] >= PROGRESS_EVERY_S:
            message = f": {details.state_message}" if details.state_message else ""
            self.progress(f"cluster {self.cluster_id}: {state} after {self.elapsed:.0f} s{message}")
            self._shown = (state, self.elapsed)

    def running(self) -> None:
        self.progress(f"cluster {self.cluster_id}: RUNNING after {self.elapsed:.0f} s")


def _wait_running(
    clusters: ClustersExt, cluster_id: str, watcher: _Watcher, node_type_id: str | None, *, provisioned: bool
) -> ClusterDetails:
    """Wait for RUNNING through the SDK's waiter; a quota failure becomes QuotaExceeded."""
    from databricks.sdk.errors import OperationFailed

    try:
        details = clusters.wait_get_cluster_running(cluster_id, timeout=WAIT_TIMEOUT, callback=watcher)
    except OperationFailed as error:
        problem = quota_problem(watcher.last, str(error))
        if problem is not None:
            cluster = f"Cluster {cluster_id}"
            raise quota_exceeded(cluster, node_type_id, problem, removed=provisioned) from error
        raise ProvisioningError(
            f"Cluster {cluster_id} did not start: {error}\n"
            + ("It was removed. " if provisioned else "")
            + "Check the cluster's event log in the workspace, then rerun."
        ) from error
    watcher.running()
    return details


def quota_problem(details: ClusterDetails | None, message: str = "") -> str | None:
    """The quota message of a failed start (termination reason, state message or error), or None."""
    texts = [message]
    if details is not None:
        reason = details.termination_reason
        parameters = dict(reason.parameters or {}) if reason is not None else {}
        code = reason.code.value if reason is not None and reason.code is not None else ""
        if "QUOTA" in code.upper():
            return str(parameters.get("azure_error_message") or details.state_message or code)
        texts += [details.state_message or "", *map(str, parameters.values())]
    return next((text for text in texts if _QUOTA.search(text)), None)


def quota_exceeded(cluster: str, node_type_id: str | None, problem: str, *, removed: bool) -> QuotaExceeded:
    """The error for a cluster (``"Cluster <id>"``) that could not start for lack of CPU quota,
    with the lab's fix."""
    location = _LOCATION.search(problem)
    where = f" in {location[1]}" if location else ""
    others = ", ".join(region for region in LAB_REGIONS if not location or region != location[1])
    node = node_type_id or "its node type"
    return QuotaExceeded(
        f"{cluster} could not start: the subscription has no CPU (cores) quota left{where} "
        f"for {node}.{' The cluster was removed.' if removed else ''}\n"
        f"  Azure said: {problem}\n"
        f"As the lab advises, use another region: a Databricks workspace in another region (the lab "
        f"picks one of {others}), then `DATABRICKS_HOST=https://<that workspace> pytest --llmops-record "
        "--llmops-provision`. Or pick a node type from a VM family with quota left "
        f"(`{NODE_TYPE_ENV}=<node type> pytest --llmops-record --llmops-provision`), or request more "
        "quota at https://aka.ms/ProdportalCRP."
    )


def _quota_checked(call: Callable[[], T], cluster: str, node_type_id: str | None) -> T:
    """Run a create or start request; a quota refusal becomes QuotaExceeded."""
    from databricks.sdk.errors.base import DatabricksError

    try:
        return call()
    except DatabricksError as error:
        problem = quota_problem(None, str(error))
        if problem is None:
            raise
        raise quota_exceeded(cluster, node_type_id, problem, removed=False) from error


def provision(
    workspace: WorkspaceClient,
    *,
    name: str,
    node_type_id: str,
    tags: Mapping[str, str],
    progress: Progress,
    spark_env_vars: Mapping[str, str] | None = None,
    replaying: bool = False,
) -> DatabricksCluster:
    """Create the lab's cluster (environment variables ``spark_env_vars``) and wait until it runs.

    Whatever stops the wait (a failed start, a quota error, Ctrl-C) removes the cluster
    before the error propagates: nothing is left behind.
    """
    spark_version = select_runtime(workspace.clusters)
    user_name = workspace.current_user.me().user_name
    spec = single_node_spec(
        name=name,
        spark_version=spark_version,
        node_type_id=node_type_id,
        tags=tags,
        user_name=user_name,
        spark_env_vars=spark_env_vars,
    )
    progress(
        creation_line(
            f"cluster {name}",
            replaying=replaying,
            detail=f"{spark_version}, {node_type_id}, single node, Photon off",
            duration="usually 4 to 8 minutes",
        )
    )
    cluster_id = _quota_checked(
        lambda: workspace.clusters.create(**spec).cluster_id, "The new cluster", node_type_id
    )
    watcher = _Watcher(cluster_id, progress)
    try:
        _wait_running(workspace.clusters, cluster_id, watcher, node_type_id, provisioned=True)
    except BaseException as error:
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed to start"
        progress(f"cluster {cluster_id} {reason}: removing it")
        try:
            remove(workspace, cluster_id, progress)
        except Exception as cleanup:
            progress(f"could not remove cluster {cluster_id}: {cleanup}")
        raise
    names = tuple(sorted(spark_env_vars or {}))
    return DatabricksCluster(
        cluster_id, name, spark_version, node_type_id, provisioned=True, environment=names
    )


def attach(workspace: WorkspaceClient, cluster_id: str, progress: Progress) -> DatabricksCluster:
    """Use an existing cluster: start it if it is terminated and wait until it runs. It is
    never terminated or deleted by pytest-llmops."""
    from databricks.sdk.errors import NotFound
    from databricks.sdk.errors.base import DatabricksError
    from databricks.sdk.service.compute import State

    clusters = workspace.clusters
    try:
        details = clusters.get(cluster_id)
    except NotFound as error:
        raise ProvisioningError(
            f"DATABRICKS_CLUSTER_ID={cluster_id}: the workspace has no such cluster ({error}). Set it to "
            "an existing cluster's id (`databricks clusters list`), or unset it and let pytest-llmops "
            "create one: `pytest --llmops-record --llmops-provision`."
        ) from error
    name = details.cluster_name or cluster_id
    runtime = details.spark_version or "?"
    if "-ml-" not in runtime or runtime_version(runtime) < LAB_RUNTIME:
        progress(f"cluster {cluster_id} runs {runtime}; the lab expects 16.4 LTS ML or a later ML runtime")
    watcher = _Watcher(cluster_id, progress)
    state = details.state
    started = False
    if state == State.RUNNING:
        progress(f"attached to running cluster {cluster_id} ({name}, {runtime})")
    elif state in (State.ERROR, State.UNKNOWN, None):
        raise ProvisioningError(
            f"Cluster {cluster_id} is {state.value if state else 'in an unknown state'}: "
            f"{details.state_message or 'no message'}. Restart it from the workspace's Compute page, "
            "then rerun."
        )
    else:
        if state == State.TERMINATING:
            progress(f"cluster {cluster_id} is terminating: waiting to start it again")
            clusters.wait_get_cluster_terminated(cluster_id, timeout=WAIT_TIMEOUT, callback=watcher)
            state = State.TERMINATED
        if state == State.TERMINATED:
            progress(f"starting cluster {cluster_id} ({name}, {runtime}); pytest-llmops leaves it running")
            try:
                _quota_checked(
                    lambda: clusters.start(cluster_id), f"Cluster {cluster_id}", details.node_type_id
                )
                started = True
            except DatabricksError as error:
                if error.error_code != "INVALID_STATE":  # else: someone else started it meanwhile
                    raise
        else:
            progress(f"cluster {cluster_id} is {state.value}: waiting until it runs")
        _wait_running(clusters, cluster_id, watcher, details.node_type_id, provisioned=False)
    return DatabricksCluster(
        cluster_id,
        name,
        runtime,
        details.node_type_id,
        provisioned=False,
        started=started,
        environment=tuple(sorted(details.spark_env_vars or {})),
    )


def remove(workspace: WorkspaceClient, cluster_id: str, progress: Progress) -> None:
    """Terminate the cluster, then delete it permanently (without waiting for TERMINATED:
    a permanent delete terminates too). A cluster that is already gone is fine."""
    from databricks.sdk.errors import NotFound
    from databricks.sdk.errors.base import DatabricksError

    progress(f"removing cluster {cluster_id}: terminate, then permanent delete")
    failures: list[str] = []
    for step in (workspace.clusters.delete, workspace.clusters.permanent_delete):
        try:
            step(cluster_id)
        except NotFound:
            return
        except DatabricksError as error:
            failures.append(f"{step.__name__}: {error}")
    if failures:
        raise ProvisioningError(
            f"Could not remove cluster {cluster_id} ({'; '.join(failures)}). Remove it with "
            f"`databricks clusters permanent-delete {cluster_id}`, or run `pytest-llmops sweep` once "
            "its RemoveAfter tag has passed."
        )
