"""Remove what clearsight created for an endpoint: `deploy sagemaker down`, and what an update superseded."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .aws_clients import (
    AwsClients,
    aws_step,
    check_bucket_owner,
    default_bucket_name,
    error_text,
    ignore_missing,
    split_s3_url,
)
from .aws_transaction import META_TOOL, Progress, describe_or_none, is_not_found
from .config import DEFAULT_PREFIX, validate_endpoint_name
from .errors import SageMakerStepError
from .sagemaker_autoscaling import deregister_autoscaling, scaling_resource_id
from .sagemaker_inventory import (
    TRANSITIONAL_STATUSES,
    config_models,
    describe_endpoint,
    find_resources,
    model_data_url,
)
from .sagemaker_names import META_ENDPOINT, TAG_TOOL, TOOL, is_ours

__all__ = [
    "Teardown",
    "delete_bucket_if_empty",
    "delete_endpoint",
    "delete_superseded",
    "teardown",
]

logger = logging.getLogger(__name__)

@dataclass
class Teardown:
    """What ``teardown`` removed (and what it could not), in order."""

    endpoint_name: str
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def delete_endpoint(clients: AwsClients, name: str, poll_seconds: float = 5.0,
                    timeout_seconds: float = 1800.0, say: Progress | None = None) -> bool:
    """Delete endpoint ``name`` and wait until it is gone; False if it did not exist.

    SageMaker refuses to delete an endpoint while it is Creating or Updating (seen with
    interrupted deployments): such an endpoint is asked again every ``poll_seconds`` until
    the delete is accepted, for at most ``timeout_seconds``.
    """
    sagemaker = clients.sagemaker
    started = time.monotonic()
    told = False

    def check_time(status: str) -> None:
        if time.monotonic() - started > timeout_seconds:
            raise TimeoutError(f"endpoint {name} still {status} after {timeout_seconds:.0f} s")

    while True:
        described = describe_endpoint(sagemaker, name)
        if described is None:
            return False
        status = described["EndpointStatus"]
        if status == "Deleting":
            break
        try:
            sagemaker.delete_endpoint(EndpointName=name)
            break
        except Exception as error:
            if is_not_found(error):
                return False
            if status not in TRANSITIONAL_STATUSES:
                raise
        if say is not None and not told:
            say(f"endpoint {name} is {status}; SageMaker deletes it only once that ends: waiting")
            told = True
        check_time(status)
        time.sleep(poll_seconds)
    while describe_endpoint(sagemaker, name) is not None:
        check_time("Deleting")
        time.sleep(poll_seconds)
    return True


def delete_bucket_if_empty(clients: AwsClients, bucket: str) -> bool:
    """Undo of CreateBucket: delete ``bucket`` (owner-checked) unless something was put in it.

    The run created the bucket only after HeadBucket said it did not exist; an object in
    it now belongs to someone else's run, so a bucket that is not empty is kept.
    """
    listed = describe_or_none(lambda: clients.s3.list_objects_v2(Bucket=bucket, MaxKeys=1))
    if listed is None:
        return False
    if listed.get("KeyCount", 0):
        logger.info("keeping S3 bucket %s: it is not empty", bucket)
        return False
    clients.s3.delete_bucket(Bucket=bucket)
    return True


def _delete_model_data(clients: AwsClients, url: str, name: str) -> bool:
    """Delete S3 object ``url`` if this tool uploaded it for endpoint ``name`` (owner-checked bucket)."""
    bucket, key = split_s3_url(url)
    clients.expect_own_bucket(bucket)
    head = describe_or_none(lambda: clients.s3.head_object(Bucket=bucket, Key=key))
    if head is None:
        return False
    metadata = head.get("Metadata", {})
    if metadata.get(META_TOOL) != TOOL or metadata.get(META_ENDPOINT) != name:
        logger.info("keeping %s: not uploaded by clearsight for %s", url, name)
        return False
    clients.s3.delete_object(Bucket=bucket, Key=key)
    return True


def _uploaded_objects(clients: AwsClients, name: str, bucket: str | None, prefix: str) -> set[str]:
    """S3 URLs under ``<prefix>/<name>/`` in ``bucket`` (only listed; filtered on delete)."""
    bucket = bucket or default_bucket_name(clients)
    if not check_bucket_owner(clients, bucket):
        return set()
    urls = set()
    paginator = clients.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix.strip('/')}/{name}/"):
        urls |= {f"s3://{bucket}/{item['Key']}" for item in page.get("Contents", [])}
    return urls


def teardown(
    name: str,
    clients: AwsClients,
    keep_model_data: bool = False,
    bucket: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    progress: Progress | None = None,
) -> Teardown:
    """Delete endpoint ``name``, its autoscaling, configs, models and (unless kept) model data.

    Idempotent: on a missing or half-created endpoint it removes whatever is left and
    reports it. Only resources tagged by this tool are touched. ``bucket`` (default:
    SageMaker's default bucket) and ``prefix`` locate model data no model refers to anymore.
    """
    validate_endpoint_name(name)
    say = progress or (lambda message: None)
    report = Teardown(name)

    def attempt(description: str, action: Callable[[], bool]) -> None:
        try:
            if action():
                report.removed.append(description)
                say(f"removed {description}")
        except Exception as error:
            report.failed.append(f"{description}: {error_text(error)}")
            logger.warning("could not remove %s: %s", description, error)

    sagemaker = clients.sagemaker
    with aws_step("down"):
        endpoint = describe_endpoint(sagemaker, name)
        if endpoint is not None and not is_ours(sagemaker, endpoint["EndpointArn"]):
            raise ValueError(
                f"endpoint {name} was not created by clearsight (no {TAG_TOOL} tag); "
                "delete it with the AWS console or CLI"
            )
    attempt(f"autoscaling of {scaling_resource_id(name)}",
            lambda: deregister_autoscaling(clients, name))
    attempt(f"endpoint {name}", lambda: delete_endpoint(clients, name))
    with aws_step("down"):
        configs, models = find_resources(clients, name)
        if endpoint is not None:
            configs.add(endpoint["EndpointConfigName"])
            models |= config_models(sagemaker, endpoint["EndpointConfigName"])
        data_urls = {model_data_url(sagemaker, model) for model in models} - {None}
    for config_name in sorted(configs):
        attempt(f"endpoint config {config_name}", lambda config_name=config_name: ignore_missing(
            lambda: sagemaker.delete_endpoint_config(EndpointConfigName=config_name)))
    for model_name in sorted(models):
        attempt(f"model {model_name}", lambda model_name=model_name: ignore_missing(
            lambda: sagemaker.delete_model(ModelName=model_name)))
    if not keep_model_data:
        try:
            data_urls |= _uploaded_objects(clients, name, bucket, prefix)
        except Exception as error:
            report.failed.append(f"listing model data: {error_text(error)}")
        for url in sorted(data_urls):
            attempt(f"S3 object {url}", lambda url=url: _delete_model_data(clients, url, name))
    if report.failed:
        raise SageMakerStepError("down", "could not remove " + "; ".join(report.failed))
    return report


def delete_superseded(clients: AwsClients, name: str, keep_config: str, say: Progress,
                      warn: Progress) -> None:
    """After an update: delete endpoint ``name``'s tagged configs, models and model data other than ``keep_config``'s.

    Never raises: the endpoint is fine, and `deploy sagemaker down` removes leftovers;
    a failure is logged and told through ``warn``.
    """
    try:
        configs, models = find_resources(clients, name)
        keep_models = config_models(clients.sagemaker, keep_config)
        data_urls = set()
        for config_name in configs - {keep_config}:
            ignore_missing(lambda config_name=config_name: clients.sagemaker.delete_endpoint_config(
                EndpointConfigName=config_name))
            say(f"deleted superseded endpoint config {config_name}")
        kept_urls = {model_data_url(clients.sagemaker, model) for model in keep_models}
        for model_name in models - keep_models:
            data_urls.add(model_data_url(clients.sagemaker, model_name))
            ignore_missing(lambda model_name=model_name: clients.sagemaker.delete_model(
                ModelName=model_name))
            say(f"deleted superseded model {model_name}")
        for url in data_urls - kept_urls - {None}:
            if _delete_model_data(clients, url, name):
                say(f"deleted superseded model data {url}")
    except Exception as error:  # the endpoint is fine; leftovers are removed by `down`
        logger.warning("could not delete superseded resources of %s: %s", name, error)
        warn(f"warning: superseded resources left ({error_text(error)}); "
             "`clearsight deploy sagemaker down` removes them")
