"""What clearsight has on SageMaker: find an endpoint's tagged configs, models and model data; status and list."""

from __future__ import annotations

from typing import Any

from .aws_clients import AwsClients, aws_step
from .aws_transaction import describe_or_none
from .config import validate_endpoint_name
from .sagemaker_autoscaling import scaling_state
from .sagemaker_names import is_ours, name_stem

__all__ = [
    "TRANSITIONAL_STATUSES",
    "config_models",
    "describe_endpoint",
    "endpoint_status",
    "find_resources",
    "list_endpoints",
    "model_data_url",
]

# Endpoint statuses that end by themselves (and in which SageMaker refuses DeleteEndpoint).
TRANSITIONAL_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})


def describe_endpoint(sagemaker: Any, endpoint_name: str) -> dict | None:
    """DescribeEndpoint's answer for ``endpoint_name``, or None when there is no such endpoint."""
    return describe_or_none(lambda: sagemaker.describe_endpoint(EndpointName=endpoint_name))


def config_models(sagemaker: Any, config_name: str) -> set[str]:
    """The model names endpoint config ``config_name`` serves; empty when the config does not exist."""
    described = describe_or_none(
        lambda: sagemaker.describe_endpoint_config(EndpointConfigName=config_name))
    if described is None:
        return set()
    return {variant["ModelName"] for variant in described["ProductionVariants"]}


def model_data_url(sagemaker: Any, model_name: str) -> str | None:
    """The ``s3://`` model data of SageMaker model ``model_name``; None when the model does not exist."""
    described = describe_or_none(lambda: sagemaker.describe_model(ModelName=model_name))
    if described is None:
        return None
    return described.get("PrimaryContainer", {}).get("ModelDataUrl")


def find_resources(clients: AwsClients, endpoint_name: str) -> tuple[set[str], set[str]]:
    """(endpoint config names, model names) tagged for endpoint ``endpoint_name``, with the configs' models."""
    sagemaker = clients.sagemaker
    stem = name_stem(endpoint_name)
    configs, models = set(), set()
    for page in sagemaker.get_paginator("list_endpoint_configs").paginate(NameContains=stem):
        for item in page["EndpointConfigs"]:
            if is_ours(sagemaker, item["EndpointConfigArn"], endpoint_name):
                configs.add(item["EndpointConfigName"])
    for page in sagemaker.get_paginator("list_models").paginate(NameContains=stem):
        for item in page["Models"]:
            if is_ours(sagemaker, item["ModelArn"], endpoint_name):
                models.add(item["ModelName"])
    for config_name in configs:
        models |= config_models(sagemaker, config_name)
    return configs, models


def endpoint_status(name: str, clients: AwsClients) -> dict:
    """A JSON-ready summary of endpoint ``name``; raises SageMakerStepError when it does not exist."""
    validate_endpoint_name(name)
    sagemaker = clients.sagemaker
    with aws_step("status"):
        endpoint = describe_endpoint(sagemaker, name)
        if endpoint is None:
            raise ValueError(f"endpoint {name} not found in {clients.region}")
        summary = {
            "name": name,
            "status": endpoint["EndpointStatus"],
            "failure_reason": endpoint.get("FailureReason"),
            "endpoint_config": endpoint["EndpointConfigName"],
            "created": endpoint["CreationTime"].isoformat(),
            "last_modified": endpoint["LastModifiedTime"].isoformat(),
            "log_group": f"/aws/sagemaker/Endpoints/{name}",
            "managed_by_clearsight": is_ours(sagemaker, endpoint["EndpointArn"]),
            "variants": [],
            "autoscaling": scaling_state(clients, name),
        }
        config = describe_or_none(lambda: sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"])) or {"ProductionVariants": []}
        counts = {v["VariantName"]: v for v in endpoint.get("ProductionVariants", [])}
        for variant in config["ProductionVariants"]:
            live = counts.get(variant["VariantName"], {})
            summary["variants"].append({
                "variant": variant["VariantName"],
                "model": variant["ModelName"],
                "model_data": model_data_url(sagemaker, variant["ModelName"]),
                "instance_type": variant.get("InstanceType"),
                "current_instance_count": live.get("CurrentInstanceCount"),
                "desired_instance_count": live.get("DesiredInstanceCount"),
            })
    return summary


def list_endpoints(clients: AwsClients) -> list[dict]:
    """Endpoints tagged ``clearsight:tool=clearsight``: name, status, creation time, sorted by name."""
    sagemaker = clients.sagemaker
    found = []
    with aws_step("list"):
        for page in sagemaker.get_paginator("list_endpoints").paginate():
            for item in page["Endpoints"]:
                if is_ours(sagemaker, item["EndpointArn"]):
                    found.append({
                        "name": item["EndpointName"],
                        "status": item["EndpointStatus"],
                        "created": item["CreationTime"].isoformat(),
                    })
    return sorted(found, key=lambda item: item["name"])
