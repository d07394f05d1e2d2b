"""How clearsight names and tags what it creates on SageMaker and S3, and how it recognises its own resources."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .aws_transaction import TAG_RUN, TAG_TOOL, TOOL, tag_map

__all__ = [
    "META_ENDPOINT",
    "META_SHA256",
    "TAG_ENDPOINT",
    "TAG_TOOL",
    "TOOL",
    "VARIANT",
    "is_ours",
    "name_stem",
    "resource_name",
    "resource_tags",
]

TAG_ENDPOINT = "clearsight:endpoint"  # SageMaker tag: the endpoint a model or config belongs to
META_ENDPOINT = "clearsight-endpoint"  # S3 user metadata: the endpoint the model data is for
META_SHA256 = "clearsight-sha256"  # S3 user metadata: sha256 of the uploaded archive
VARIANT = "AllTraffic"  # the one production variant of every endpoint
_STAMP_CHARS = 17  # yyyymmddHHMMSSmmm
_MAX_NAME_CHARS = 63


def resource_tags(endpoint_name: str, run_id: str) -> list[dict[str, str]]:
    """The SageMaker ``Tags`` of every resource run ``run_id`` creates for endpoint ``endpoint_name``."""
    return [{"Key": TAG_TOOL, "Value": TOOL}, {"Key": TAG_ENDPOINT, "Value": endpoint_name},
            {"Key": TAG_RUN, "Value": run_id}]


def is_ours(sagemaker: Any, arn: str, endpoint_name: str | None = None) -> bool:
    """True if SageMaker resource ``arn`` carries clearsight's tool tag (and, if given, is for ``endpoint_name``)."""
    tags = tag_map(sagemaker, arn)
    return tags.get(TAG_TOOL) == TOOL and (
        endpoint_name is None or tags.get(TAG_ENDPOINT) == endpoint_name)


def resource_name(endpoint_name: str, now: dt.datetime | None = None) -> str:
    """``<endpoint>-<UTC yyyymmddHHMMSSmmm>``: a model/config name unique per run, at most 63 characters."""
    now = now or dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"
    return f"{endpoint_name[:_MAX_NAME_CHARS - len(stamp) - 1].rstrip('-')}-{stamp}"


def name_stem(endpoint_name: str) -> str:
    """The part of every model/config name that ``resource_name`` keeps from the endpoint name."""
    return endpoint_name[:_MAX_NAME_CHARS - _STAMP_CHARS - 1].rstrip("-")
