"""What the double's Azure Databricks workspace offers: runtimes and node types.

Shapes follow ``GET /api/2.1/clusters/spark-versions`` and ``list-node-types`` on an Azure
workspace. Every node type carries every field the SDK's ``select_node_type`` sorts on:
a missing one (None) makes its sort key tuple incomparable.
"""

from __future__ import annotations

from typing import Any

SPARK_VERSIONS: list[dict[str, str]] = [
    {"key": "17.0.x-cpu-ml-scala2.13", "name": "17.0 ML (includes Apache Spark 4.0.0, Scala 2.13)"},
    {"key": "17.0.x-gpu-ml-scala2.13", "name": "17.0 ML (includes Apache Spark 4.0.0, GPU, Scala 2.13)"},
    {"key": "17.0.x-scala2.13", "name": "17.0 (includes Apache Spark 4.0.0, Scala 2.13)"},
    {"key": "16.4.x-cpu-ml-scala2.12", "name": "16.4 LTS ML (includes Apache Spark 3.5.2, Scala 2.12)"},
    {"key": "16.4.x-gpu-ml-scala2.12", "name": "16.4 LTS ML (includes Apache Spark 3.5.2, GPU, Scala 2.12)"},
    {"key": "16.4.x-scala2.12", "name": "16.4 LTS (includes Apache Spark 3.5.2, Scala 2.12)"},
    {"key": "16.4.x-scala2.13", "name": "16.4 LTS (includes Apache Spark 3.5.2, Scala 2.13)"},
    {"key": "15.4.x-cpu-ml-scala2.12", "name": "15.4 LTS ML (includes Apache Spark 3.5.0, Scala 2.12)"},
    {"key": "15.4.x-gpu-ml-scala2.12", "name": "15.4 LTS ML (includes Apache Spark 3.5.0, GPU, Scala 2.12)"},
    {"key": "15.4.x-scala2.12", "name": "15.4 LTS (includes Apache Spark 3.5.0, Scala 2.12)"},
    {"key": "14.3.x-cpu-ml-scala2.12", "name": "14.3 LTS ML (includes Apache Spark 3.5.0, Scala 2.12)"},
    {"key": "14.3.x-scala2.12", "name": "14.3 LTS (includes Apache Spark 3.5.0, Scala 2.12)"},
]


def _node(
    node_type_id: str,
    cores: int,
    memory_mb: int,
    category: str,
    family: str,
    local_disk_gb: int,
    gpus: int = 0,
) -> dict[str, Any]:
    return {
        "node_type_id": node_type_id,
        "memory_mb": memory_mb,
        "num_cores": float(cores),
        "description": node_type_id,
        "instance_type_id": node_type_id,
        "is_deprecated": False,
        "category": category,
        "support_ebs_volumes": True,
        "support_cluster_tags": True,
        "num_gpus": gpus,
        "node_instance_type": {
            "instance_type_id": node_type_id,
            "local_disks": 1 if local_disk_gb else 0,
            "local_disk_size_gb": local_disk_gb,
            "local_nvme_disks": 0,
            "local_nvme_disk_size_gb": 0,
            "instance_family": family,
        },
        "is_hidden": False,
        "support_port_forwarding": True,
        "display_order": 0,
        "is_io_cache_enabled": bool(local_disk_gb),
        "node_info": {"available_core_quota": 350, "total_core_quota": 350},
        "photon_worker_capable": gpus == 0,
        "photon_driver_capable": gpus == 0,
        "is_graviton": False,
        "is_encrypted_in_transit": False,
    }


NODE_TYPES: list[dict[str, Any]] = [
    _node("Standard_D4ds_v5", 4, 16384, "General Purpose", "Standard DDSv5 Family vCPUs", 150),
    _node("Standard_D8ds_v5", 8, 32768, "General Purpose", "Standard DDSv5 Family vCPUs", 300),
    _node("Standard_DS3_v2", 4, 14336, "General Purpose", "Standard DSv2 Family vCPUs", 28),
    _node("Standard_E8ds_v5", 8, 65536, "Memory Optimized", "Standard EDSv5 Family vCPUs", 300),
    _node("Standard_F4s", 4, 8192, "Compute Optimized", "Standard FS Family vCPUs", 16),
    _node(
        "Standard_NC4as_T4_v3", 4, 28672, "GPU Accelerated", "Standard NCASv3_T4 Family vCPUs", 180, gpus=1
    ),
]

NODE_TYPES_BY_ID: dict[str, dict[str, Any]] = {n["node_type_id"]: n for n in NODE_TYPES}
SPARK_VERSION_KEYS: frozenset[str] = frozenset(v["key"] for v in SPARK_VERSIONS)


def quota_family(node_type_id: str) -> str:
    """The Azure quota family name used in quota errors, e.g. ``standardDDSv5Family``."""
    family = NODE_TYPES_BY_ID[node_type_id]["node_instance_type"]["instance_family"]
    words = family.replace(" vCPUs", "").split()  # "Standard DDSv5 Family"
    return "standard" + "".join(words[1:])
