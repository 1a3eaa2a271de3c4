"""What the double's clusters look like in ``clusters/get``: a new cluster's JSON, its nodes
once it runs, and why it terminated. Shapes follow ``clusters/get`` answers of real Azure
workspaces (``realworld/terraform-provider-databricks``)."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from . import databricks_catalog as catalog

PENDING_MESSAGE = "Finding instances for new nodes, acquiring more instances if necessary"


def new_cluster_info(cluster_id: str, body: dict[str, Any], user_name: str, now_ms: int) -> dict[str, Any]:
    """A cluster just created from the ``clusters/create`` ``body``: PENDING."""
    node = catalog.NODE_TYPES_BY_ID[body["node_type_id"]]
    nodes = 1 + int(body.get("num_workers") or 0)
    name = body.get("cluster_name", "")
    return {
        **copy.deepcopy(body),
        "cluster_id": cluster_id,
        "cluster_name": name,
        "driver_node_type_id": body.get("driver_node_type_id", body["node_type_id"]),
        "num_workers": int(body.get("num_workers") or 0),
        "autotermination_minutes": int(body.get("autotermination_minutes") or 0),
        "azure_attributes": {
            "availability": "ON_DEMAND_AZURE",
            "first_on_demand": 1,
            "spot_bid_max_price": -1,
            **body.get("azure_attributes", {}),
        },
        "cluster_cores": node["num_cores"] * nodes,
        "cluster_memory_mb": node["memory_mb"] * nodes,
        "cluster_source": "API",
        "creator_user_name": user_name,
        "default_tags": {
            "ClusterId": cluster_id,
            "ClusterName": name,
            "Creator": user_name,
            "Vendor": "Databricks",
        },
        "disk_spec": {},
        "enable_elastic_disk": True,
        "enable_local_disk_encryption": False,
        "init_scripts_safe_mode": False,
        "jdbc_port": 10000,
        "spark_conf": body.get("spark_conf", {}),
        "start_time": now_ms,
        "last_state_loss_time": 0,
        "state": "PENDING",
        "state_message": PENDING_MESSAGE,
        "spec": copy.deepcopy(body),
    }


def start_nodes(info: dict[str, Any], now_ms: int) -> None:
    """Give a cluster that starts running its driver and executors (stable ids)."""
    seed = int(hashlib.sha256(info["cluster_id"].encode()).hexdigest()[:12], 16)

    def node(n: int) -> dict[str, Any]:
        digest = hashlib.sha256(f"{info['cluster_id']}/{n}".encode()).hexdigest()
        return {
            "host_private_ip": f"10.139.0.{4 + n}",
            "instance_id": digest[:32],
            "node_id": digest[32:64],
            "private_ip": f"10.139.64.{4 + n}",
            "start_timestamp": now_ms,
        }

    info["driver"] = node(0)
    info["executors"] = [node(i + 1) for i in range(int(info.get("num_workers") or 0))]
    info["spark_context_id"] = seed
    info["last_restarted_time"] = now_ms
    info.pop("termination_reason", None)
    info.pop("terminated_time", None)


def stop_nodes(info: dict[str, Any], reason: dict[str, Any], now_ms: int) -> None:
    """Take a terminating cluster's nodes away and say why it stopped."""
    for key in ("driver", "executors", "spark_context_id"):
        info.pop(key, None)
    info["termination_reason"] = reason
    info["terminated_time"] = now_ms


def termination_message(reason: dict[str, Any]) -> str:
    """The ``state_message`` of a cluster that terminated for ``reason``."""
    parameters = reason.get("parameters") or {}
    if reason["code"] == "AZURE_QUOTA_EXCEEDED_EXCEPTION":
        return "Azure Quota Exceeded Exception: " + parameters["azure_error_message"]
    if reason["code"] == "SECRET_RESOLUTION_ERROR":
        return "Secret resolution error: " + parameters["databricks_error_message"]
    return ""


def quota_reason(info: dict[str, Any], region: str) -> dict[str, Any]:
    """The termination reason of a cluster whose VMs exceed the subscription's cores quota."""
    node = catalog.NODE_TYPES_BY_ID[info["node_type_id"]]
    cores = int(node["num_cores"]) * (1 + int(info.get("num_workers") or 0))
    message = (
        f"Operation could not be completed as it results in exceeding approved "
        f"{catalog.quota_family(info['node_type_id'])} Cores quota. Additional details - Deployment "
        f"Model: Resource Manager, Location: {region}, Current Limit: 0, Current Usage: 0, "
        f"Additional Required: {cores}, (Minimum) New Limit Required: {cores}. Submit a request for "
        "Quota increase at https://aka.ms/ProdportalCRP by specifying parameters listed in the "
        "'Details' section for deployment to succeed. Please read more about quota limits at "
        "https://docs.microsoft.com/en-us/azure/azure-supportability/per-vm-quota-requests."
    )
    return {
        "code": "AZURE_QUOTA_EXCEEDED_EXCEPTION",
        "type": "CLIENT_ERROR",
        "parameters": {"azure_error_code": "QuotaExceeded", "azure_error_message": message},
    }
