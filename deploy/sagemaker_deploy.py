"""`deploy sagemaker up`: create or update an endpoint as one transaction that rolls back whatever a failed run created."""

from __future__ import annotations

import logging
import os
import tarfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .aws_clients import (
    AwsClients,
    UploadProgress,
    aws_step,
    check_bucket_owner,
    default_bucket_name,
    error_text,
    file_sha256,
    require_sagemaker_sdk,
)
from .aws_transaction import (
    META_RUN,
    META_TOOL,
    Progress,
    Transaction,
    abort_uploads_not_in,
    delete_object_if_uploaded_by_run,
    delete_sagemaker_resource_of_run,
    describe_or_none,
    pending_upload_ids,
)
from .config import DeployConfig
from .errors import DeployConfigError, SageMakerEndpointFailed, SageMakerStepError
from .sagemaker_autoscaling import register_autoscaling_of_run, suspend_autoscaling_of_run
from .sagemaker_inventory import TRANSITIONAL_STATUSES, describe_endpoint
from .sagemaker_invoke import make_predictor, send_smoke_inference
from .sagemaker_names import (
    META_ENDPOINT,
    META_SHA256,
    TAG_ENDPOINT,
    TAG_TOOL,
    TOOL,
    VARIANT,
    is_ours,
    resource_name,
    resource_tags,
)
from .sagemaker_teardown import delete_bucket_if_empty, delete_endpoint, delete_superseded

__all__ = ["check_model_archive", "deploy", "resolve_image_uri"]

logger = logging.getLogger(__name__)

MXNET_VERSION = "1.9.0"
MXNET_PY_VERSION = "py38"
HEARTBEAT_SECONDS = 60.0  # a progress line at least this often while waiting


def check_model_archive(path: str | os.PathLike) -> None:
    """Raise DeployConfigError unless ``path`` is a gzip tar with ``code/inference.py``."""
    path = Path(path)
    allowed = "a model.tar.gz from `clearsight deploy package` (gzip tar with code/inference.py)"
    try:
        with tarfile.open(path, "r:gz") as archive:
            names = {name.lstrip("./") for name in archive.getnames()}
    except (OSError, tarfile.TarError):
        raise DeployConfigError("model", str(path), allowed) from None
    if "code/inference.py" not in names:
        raise DeployConfigError("model", str(path), allowed + "; code/inference.py is missing")


def resolve_image_uri(region: str, instance_type: str) -> str:
    """The MXNet 1.9.0 inference image (GPU on ml.g4dn/p*, CPU otherwise) for ``region``."""
    require_sagemaker_sdk("finding the MXNet inference image")
    from sagemaker import image_uris  # the SageMaker SDK (the aws extra) takes seconds to import

    return image_uris.retrieve(
        "mxnet", region, version=MXNET_VERSION, py_version=MXNET_PY_VERSION,
        instance_type=instance_type, image_scope="inference",
    )


class _Run:
    """One ``deploy`` call: the steps in order, and the transaction that can undo what it created."""

    def __init__(self, config: DeployConfig, clients: AwsClients, progress: Progress) -> None:
        self.config = config
        self.clients = clients
        self.progress = progress
        self.name = config.name
        self.transaction = Transaction(self.say)
        self.run_id = self.transaction.run_id

    def say(self, message: str) -> None:
        logger.debug(message)
        self.progress(message)

    # -- steps

    def check_existing(self) -> dict | None:
        with aws_step("check-endpoint"):
            existing = describe_endpoint(self.clients.sagemaker, self.name)
            if existing is None:
                return None
            if not is_ours(self.clients.sagemaker, existing["EndpointArn"]):
                raise ValueError(
                    f"endpoint {self.name} exists but was not created by clearsight "
                    f"(no {TAG_TOOL} tag); choose another --name"
                )
            status = existing["EndpointStatus"]
            if status != "InService":
                raise ValueError(
                    f"endpoint {self.name} is {status}; only an InService endpoint can be "
                    f"updated (wait, or remove it with `clearsight deploy sagemaker down --name {self.name}`)"
                )
            return existing

    def upload(self) -> str:
        config, s3 = self.config, self.clients.s3
        with aws_step("upload-model"):
            bucket = config.bucket or default_bucket_name(self.clients)
            self.ensure_bucket(bucket, create=config.bucket is None)
            digest = file_sha256(config.model_path)
            key = f"{config.prefix}/{self.name}/{digest[:16]}/model.tar.gz"
            url = f"s3://{bucket}/{key}"
            head = describe_or_none(lambda: s3.head_object(Bucket=bucket, Key=key))
            if head is not None:
                metadata = head.get("Metadata", {})
                if metadata.get(META_TOOL) == TOOL and metadata.get(META_SHA256) == digest:
                    self.say(f"model data already in S3, same sha256: {url}")
                    return url
                raise ValueError(
                    f"{url} exists and was not uploaded by clearsight for this archive "
                    f"(no matching {META_SHA256} metadata); not overwriting it: choose another "
                    "--prefix or --bucket"
                )
            size = config.model_path.stat().st_size
            earlier_uploads = pending_upload_ids(s3, bucket, key)

            def undo_upload() -> bool:
                aborted = abort_uploads_not_in(s3, bucket, key, earlier_uploads)
                return delete_object_if_uploaded_by_run(s3, bucket, key, self.run_id) or aborted > 0

            self.transaction.will_create(
                f"S3 object {url}", undo_upload,
                f"aws s3 rm {url}; aws s3api list-multipart-uploads --bucket {bucket} --prefix {key} "
                "and abort-multipart-upload each",
            )
            self.say(f"uploading {config.model_path} ({size / 1e6:.1f} MB) to {url}")
            s3.upload_file(
                str(config.model_path), bucket, key,
                ExtraArgs={
                    "Metadata": {META_TOOL: TOOL, META_ENDPOINT: self.name, META_SHA256: digest,
                                 META_RUN: self.run_id},
                    "Tagging": urllib.parse.urlencode({TAG_TOOL: TOOL, TAG_ENDPOINT: self.name}),
                    "ContentType": "application/gzip",
                },
                Callback=UploadProgress(size, self.say),
            )
            return url

    def ensure_bucket(self, bucket: str, create: bool) -> None:
        """Check the caller's account owns ``bucket``; create it when missing and ``create``."""
        if check_bucket_owner(self.clients, bucket):
            return
        if not create:
            raise ValueError(f"S3 bucket {bucket} does not exist: create it, or leave out "
                             "--bucket to use sagemaker-<region>-<account>")
        self.say(f"creating S3 bucket {bucket}")
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if self.clients.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.clients.region}
        self.transaction.will_create(
            f"S3 bucket {bucket}", lambda: delete_bucket_if_empty(self.clients, bucket),
            f"aws s3 rb s3://{bucket}",
        )
        self.clients.s3.create_bucket(**kwargs)

    def _will_create_sagemaker(self, kind: str, name: str, describe: Callable[[], dict],
                               arn_key: str, delete: Callable[[dict], Any], manual: str) -> None:
        """Refuse a name that is taken; register the tag-checked undo of creating ``name``."""
        if describe_or_none(describe) is not None:
            raise ValueError(f"{kind} {name} already exists (not created by this run); "
                             "not touching it: retry, or choose another --name")
        sagemaker = self.clients.sagemaker
        self.transaction.will_create(
            f"{kind} {name}",
            lambda: delete_sagemaker_resource_of_run(sagemaker, self.run_id, describe, arn_key, delete),
            self.clients.cli_command(manual),
        )

    def create_model(self, model_data_url: str, image_uri: str) -> str:
        sagemaker = self.clients.sagemaker
        model_name = resource_name(self.name)
        with aws_step("create-model"):
            self._will_create_sagemaker(
                "model", model_name, lambda: sagemaker.describe_model(ModelName=model_name),
                "ModelArn", lambda described: sagemaker.delete_model(ModelName=model_name),
                f"sagemaker delete-model --model-name {model_name}",
            )
            sagemaker.create_model(
                ModelName=model_name,
                ExecutionRoleArn=self.config.role,
                PrimaryContainer={
                    "Image": image_uri,
                    "ModelDataUrl": model_data_url,
                    "Environment": self.config.container_environment,
                },
                Tags=resource_tags(self.name, self.run_id),
            )
        self.say(f"created model {model_name} ({image_uri})")
        return model_name

    def create_endpoint_config(self, model_name: str) -> str:
        sagemaker = self.clients.sagemaker
        config_name = model_name
        with aws_step("create-endpoint-config"):
            self._will_create_sagemaker(
                "endpoint config", config_name,
                lambda: sagemaker.describe_endpoint_config(EndpointConfigName=config_name),
                "EndpointConfigArn",
                lambda described: sagemaker.delete_endpoint_config(EndpointConfigName=config_name),
                f"sagemaker delete-endpoint-config --endpoint-config-name {config_name}",
            )
            sagemaker.create_endpoint_config(
                EndpointConfigName=config_name,
                ProductionVariants=[{
                    "VariantName": VARIANT,
                    "ModelName": model_name,
                    "InitialInstanceCount": self.config.instance_count,
                    "InstanceType": self.config.instance_type,
                    "InitialVariantWeight": 1.0,
                }],
                Tags=resource_tags(self.name, self.run_id),
            )
        self.say(f"created endpoint config {config_name}")
        return config_name

    def create_endpoint(self, config_name: str) -> None:
        sagemaker = self.clients.sagemaker
        with aws_step("create-endpoint"):
            # check_existing found no endpoint of this name a moment ago; the undo still checks
            # the run tag, in case someone else created one in between.
            self.transaction.will_create(
                f"endpoint {self.name}",
                lambda: delete_sagemaker_resource_of_run(
                    sagemaker, self.run_id, lambda: sagemaker.describe_endpoint(EndpointName=self.name),
                    "EndpointArn", lambda described: delete_endpoint(
                        self.clients, self.name, self.config.poll_seconds,
                        self.config.wait_timeout_seconds, self.say)),
                self.clients.cli_command(f"sagemaker delete-endpoint --endpoint-name {self.name}"),
            )
            sagemaker.create_endpoint(
                EndpointName=self.name, EndpointConfigName=config_name,
                Tags=resource_tags(self.name, self.run_id),
            )
        self.say(f"creating endpoint {self.name} on {self.config.instance_count} x "
                 f"{self.config.instance_type}")

    def update_endpoint(self, config_name: str, previous_config: str) -> None:
        sagemaker = self.clients.sagemaker

        def revert() -> bool:
            current = self.settle()
            if current is None or current.get("EndpointConfigName") == previous_config:
                return False
            sagemaker.update_endpoint(EndpointName=self.name, EndpointConfigName=previous_config)
            self.wait("roll-back", previous_config)
            return True

        with aws_step("update-endpoint"):
            self.transaction.will_create(
                f"update of endpoint {self.name} (back to {previous_config})", revert,
                self.clients.cli_command(f"sagemaker update-endpoint --endpoint-name {self.name} "
                                         f"--endpoint-config-name {previous_config}"),
            )
            sagemaker.update_endpoint(EndpointName=self.name, EndpointConfigName=config_name)
        self.say(f"updating endpoint {self.name}: {previous_config} -> {config_name}")

    def settle(self) -> dict | None:
        """Poll DescribeEndpoint until the endpoint is in no transitional state; None if it is gone."""
        started = time.monotonic()
        while True:
            described = describe_endpoint(self.clients.sagemaker, self.name)
            if described is None or described["EndpointStatus"] not in TRANSITIONAL_STATUSES:
                return described
            if time.monotonic() - started > self.config.wait_timeout_seconds:
                raise TimeoutError(f"endpoint {self.name} still {described['EndpointStatus']} "
                                   f"after {self.config.wait_timeout_seconds:.0f} s")
            time.sleep(self.config.poll_seconds)

    def wait(self, step: str, expected_config: str) -> dict:
        """Poll DescribeEndpoint until the endpoint settles; raise unless InService on ``expected_config``."""
        sagemaker, config = self.clients.sagemaker, self.config
        started = last_said = time.monotonic()
        last_status = None
        while True:
            with aws_step(step):
                described = sagemaker.describe_endpoint(EndpointName=self.name)
            status = described["EndpointStatus"]
            now = time.monotonic()
            elapsed = now - started
            if status != last_status or now - last_said >= HEARTBEAT_SECONDS:
                self.say(f"endpoint {self.name}: {status} after {elapsed:.0f} s")
                last_status, last_said = status, now
            if status not in TRANSITIONAL_STATUSES:
                break
            if elapsed > config.wait_timeout_seconds:
                raise SageMakerStepError(
                    step, f"endpoint {self.name} still {status} after {elapsed:.0f} s "
                    f"(limit {config.wait_timeout_seconds:.0f} s)"
                )
            time.sleep(config.poll_seconds)
        if status != "InService":
            raise SageMakerEndpointFailed(step, self.name, status, described.get("FailureReason", ""))
        if described.get("EndpointConfigName") != expected_config:
            raise SageMakerEndpointFailed(
                step, self.name, "InService on its previous config (the update rolled back)",
                described.get("FailureReason", ""),
            )
        return described


def _raise_after_roll_back(run: _Run, error: BaseException) -> None:
    """Roll ``run`` back after ``error``; raise SageMakerStepError listing leftovers, if any."""
    if not isinstance(error, SageMakerStepError):
        run.say(f"interrupted ({type(error).__name__}): rolling back")
    leftovers = run.transaction.roll_back()
    if not leftovers:
        return
    if isinstance(error, SageMakerStepError):
        error.rollback_errors = leftovers
        error.args = (f"{error.args[0]}; clean-up left behind: {'; '.join(leftovers)}",)
        return
    step = "interrupted" if isinstance(error, KeyboardInterrupt) else "unexpected-error"
    raise SageMakerStepError(step, error_text(error) if str(error) else type(error).__name__,
                             leftovers) from error


def deploy(
    config: DeployConfig,
    clients: AwsClients | None = None,
    progress: Progress | None = None,
) -> Any:
    """Create or update endpoint ``config.name``; return its Predictor (NumpySerializer, JSON).

    A new endpoint: upload (skipped when S3 already holds the same sha256), model, endpoint
    config, endpoint, wait for InService, one real inference, autoscaling. An existing
    endpoint (created by this tool) gets a new model and config and is updated in place;
    the superseded configs and models are deleted afterwards.

    If any step fails, or its AWS call fails in any way (refused, the response lost after
    AWS acted, Ctrl-C), whatever this call created is deleted (an update is rolled back to
    the previous config): each undo is registered before its create call and deletes only
    resources tagged with this run's id. SageMakerStepError names the step; its
    ``rollback_errors`` list what could not be deleted, each with the command that does it.
    """
    clients = clients or AwsClients.create(config.region, config.endpoint_url)
    run = _Run(config, clients, progress or (lambda message: None))
    try:
        with aws_step("resolve-image"):
            image_uri = resolve_image_uri(config.region, config.instance_type)
        existing = run.check_existing()
        model_data_url = run.upload()
        model_name = run.create_model(model_data_url, image_uri)
        config_name = run.create_endpoint_config(model_name)
        previous_scaling = None
        if existing is None:
            run.create_endpoint(config_name)
        else:
            if config.wait:  # re-registered once InService; without --wait it stays as it is
                previous_scaling = suspend_autoscaling_of_run(run.transaction, clients, run.name, run.say)
            run.update_endpoint(config_name, existing["EndpointConfigName"])
        if not config.wait:
            run.say(f"not waiting: watch with `clearsight deploy sagemaker status --name {config.name}`")
            run.transaction.commit()
            return make_predictor(config.name, clients)
        run.wait("wait-endpoint", config_name)
        predictor = send_smoke_inference(run.name, clients, run.say)
        autoscale = config.autoscale or previous_scaling
        if autoscale is not None:
            register_autoscaling_of_run(run.transaction, clients, run.name, autoscale, run.say)
    except BaseException as error:  # a failed step, a lost response, a bug or Ctrl-C: undo
        _raise_after_roll_back(run, error)
        raise
    run.transaction.commit()
    delete_superseded(clients, run.name, keep_config=config_name, say=run.say, warn=run.progress)
    return predictor
