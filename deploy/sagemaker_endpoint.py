"""Deploy a model.tar.gz to a SageMaker real-time endpoint, update it safely, inspect it, tear it down."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import logging
import os
import re
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .aws_transaction import (
    META_RUN,
    TAG_RUN,
    Transaction,
    delete_object_if_uploaded_by_run,
    delete_sagemaker_resource_of_run,
    describe_or_none,
    is_not_found,
)
from .config import DEFAULT_PREFIX, DeployConfig, validate_endpoint_name
from .errors import (
    BucketOwnerError,
    DeployConfigError,
    SageMakerEndpointFailed,
    SageMakerStepError,
)

__all__ = [
    "AwsClients",
    "Teardown",
    "deploy",
    "teardown",
    "endpoint_status",
    "list_endpoints",
    "make_predictor",
    "check_model_archive",
    "TAG_TOOL",
    "TAG_ENDPOINT",
    "ENDPOINT_URL_ENV",
]

logger = logging.getLogger(__name__)

# Deprecated: boto3 reads AWS_ENDPOINT_URL (every service) and AWS_ENDPOINT_URL_<SERVICE> itself.
ENDPOINT_URL_ENV = "CLEARSIGHT_AWS_ENDPOINT_URL"
TAG_TOOL = "clearsight:tool"
TAG_ENDPOINT = "clearsight:endpoint"
TOOL = "clearsight"
VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"
META_TOOL = "clearsight-tool"  # S3 user metadata (x-amz-meta-clearsight-tool)
META_ENDPOINT = "clearsight-endpoint"
META_SHA256 = "clearsight-sha256"
MXNET_VERSION = "1.9.0"
MXNET_PY_VERSION = "py38"
_TRANSITIONAL = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}
_SMOKE_IMAGE_SIZE = 64
_MAX_REASON_CHARS = 500
_HEARTBEAT_SECONDS = 60.0  # progress line at least this often while waiting

Progress = Callable[[str], None]


@dataclass(frozen=True)
class AwsClients:
    """The boto3 clients one deployment talks to, all built from one boto3 session.

    ``endpoint_url`` points every client at one server, e.g. moto's; ``None`` leaves it to
    boto3: env ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` when set, else the real
    AWS endpoints (env ``CLEARSIGHT_AWS_ENDPOINT_URL`` is still read, with a deprecation warning).

    Every S3 call on a bucket named to ``expect_own_bucket`` carries
    ``ExpectedBucketOwner=<the caller's account>`` (added by a botocore hook, so calls that
    s3transfer makes for ``upload_file`` carry it too): S3 answers 403 instead of acting
    when another account owns the bucket.
    """

    boto_session: Any
    sagemaker: Any
    runtime: Any
    s3: Any
    sts: Any
    autoscaling: Any
    own_buckets: set[str] = field(default_factory=set, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.s3.meta.events.register("before-parameter-build.s3", self._expect_owner)

    @classmethod
    def create(
        cls, region: str, endpoint_url: str | None = None, boto_session: Any = None
    ) -> AwsClients:
        """Build the clients for ``region``; pass ``boto_session`` to inject hooks or credentials."""
        import boto3
        from botocore.config import Config

        if endpoint_url is None and os.environ.get(ENDPOINT_URL_ENV):
            endpoint_url = os.environ[ENDPOINT_URL_ENV]
            logger.warning("%s is deprecated: set AWS_ENDPOINT_URL (every AWS service) or "
                           "AWS_ENDPOINT_URL_<SERVICE>, which boto3 reads itself", ENDPOINT_URL_ENV)
        if boto_session is None:
            boto_session = boto3.Session(region_name=region)
        elif boto_session.region_name != region:
            boto_session = boto3.Session(
                botocore_session=boto_session._session, region_name=region
            )
        retries = {"mode": "standard", "max_attempts": 3}

        def client(service: str, **config: Any) -> Any:
            return boto_session.client(
                service, region_name=region, endpoint_url=endpoint_url,
                config=Config(retries=retries, **config),
            )

        return cls(
            boto_session=boto_session,
            sagemaker=client("sagemaker"),
            runtime=client("sagemaker-runtime", read_timeout=70),
            s3=client("s3"),
            sts=client("sts"),
            autoscaling=client("application-autoscaling"),
        )

    @property
    def region(self) -> str:
        return self.sagemaker.meta.region_name

    @functools.cached_property
    def account(self) -> str:
        """The 12-digit account id of the caller (``sts:GetCallerIdentity``, asked once)."""
        return self.sts.get_caller_identity()["Account"]

    def expect_own_bucket(self, bucket: str) -> None:
        """From now on, send ``ExpectedBucketOwner=<account>`` on every S3 call on ``bucket``."""
        self.own_buckets.add(bucket)

    def _expect_owner(self, params: dict, model: Any, **kwargs: Any) -> None:
        if params.get("Bucket") in self.own_buckets and "ExpectedBucketOwner" not in params \
                and "ExpectedBucketOwner" in model.input_shape.members:
            params["ExpectedBucketOwner"] = self.account


@dataclass
class Teardown:
    """What ``teardown`` removed (and what it could not), in order."""

    endpoint_name: str
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- helpers


def _error_text(error: BaseException) -> str:
    """AWS's own message for a ClientError, else the exception's text: one line, no HTML."""
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        info = response["Error"]
        text = f"{info.get('Code', 'Error')}: {info.get('Message', '') or error}"
        if response.get("OriginalStatusCode"):
            text += f" (model container answered HTTP {response['OriginalStatusCode']}"
            if response.get("OriginalMessage"):
                text += f": {response['OriginalMessage']}"
            text += ")"
    else:
        text = str(error) or type(error).__name__
    text = " ".join(re.sub(r"<[^>]+>", " ", text).split())
    return text if len(text) <= _MAX_REASON_CHARS else text[:_MAX_REASON_CHARS - 3] + "..."


_is_not_found = is_not_found


def _is_forbidden(error: BaseException) -> bool:
    code = (getattr(error, "response", None) or {}).get("Error", {}).get("Code", "")
    return code in {"403", "AccessDenied", "Forbidden"}


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    """Run a block as deployment step ``name``: any failure becomes SageMakerStepError."""
    try:
        yield
    except SageMakerStepError:
        raise
    except Exception as error:  # noqa: BLE001 - every failure must name its step
        raise SageMakerStepError(name, _error_text(error)) from error


def _tags(name: str, run_id: str) -> list[dict[str, str]]:
    return [{"Key": TAG_TOOL, "Value": TOOL}, {"Key": TAG_ENDPOINT, "Value": name},
            {"Key": TAG_RUN, "Value": run_id}]


def _tag_map(sagemaker: Any, arn: str) -> dict[str, str]:
    tags = {}
    for page in sagemaker.get_paginator("list_tags").paginate(ResourceArn=arn):
        tags.update({tag["Key"]: tag["Value"] for tag in page["Tags"]})
    return tags


def _is_ours(sagemaker: Any, arn: str, name: str | None = None) -> bool:
    tags = _tag_map(sagemaker, arn)
    return tags.get(TAG_TOOL) == TOOL and (name is None or tags.get(TAG_ENDPOINT) == name)


def _resource_name(endpoint_name: str, now: dt.datetime | None = None) -> str:
    """``<endpoint>-<UTC yyyymmddHHMMSSmmm>``: unique per run, at most 63 characters."""
    now = now or dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"
    return f"{endpoint_name[:63 - len(stamp) - 1].rstrip('-')}-{stamp}"


def _name_stem(endpoint_name: str) -> str:
    """The part of every model/config name that ``_resource_name`` keeps from the endpoint name."""
    return endpoint_name[:63 - 18].rstrip("-")


def _describe_endpoint(sagemaker: Any, name: str) -> dict | None:
    try:
        return sagemaker.describe_endpoint(EndpointName=name)
    except Exception as error:
        if _is_not_found(error):
            return None
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _split_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://"):].partition("/")
    return bucket, key


def _default_bucket(clients: AwsClients) -> str:
    return f"sagemaker-{clients.region}-{clients.account}"


def check_bucket_owner(clients: AwsClients, bucket: str,
                       hint: str = "give --bucket NAME (env CLEARSIGHT_S3_BUCKET)") -> bool:
    """True if ``bucket`` exists and the caller's account owns it, False if it does not exist.

    Raises BucketOwnerError when S3 refuses ``HeadBucket`` with ``ExpectedBucketOwner``
    (403): another account owns the bucket (e.g. squats the predictable default name
    ``sagemaker-<region>-<account>``), or this caller may not list it.
    """
    clients.expect_own_bucket(bucket)
    try:
        clients.s3.head_bucket(Bucket=bucket)
        return True
    except Exception as error:
        if _is_not_found(error):
            return False
        if _is_forbidden(error):
            raise BucketOwnerError(bucket, clients.account, hint) from None
        raise


def _scaling_resource_id(name: str) -> str:
    return f"endpoint/{name}/variant/{VARIANT}"


def _policy_name(name: str) -> str:
    return f"clearsight-{name}-invocations"


def check_model_archive(path: str | os.PathLike) -> None:
    """Raise DeployConfigError unless ``path`` is a gzip tar with ``code/inference.py``."""
    path = Path(path)
    allowed = "a model.tar.gz from `deploy package` (gzip tar with code/inference.py)"
    try:
        with tarfile.open(path, "r:gz") as archive:
            names = {name.lstrip("./") for name in archive.getnames()}
    except (OSError, tarfile.TarError):
        raise DeployConfigError("model", str(path), allowed) from None
    if "code/inference.py" not in names:
        raise DeployConfigError("model", str(path), allowed + "; code/inference.py is missing")


def resolve_image_uri(region: str, instance_type: str) -> str:
    """The MXNet 1.9.0 inference image (GPU on ml.g4dn/p*, CPU otherwise) for ``region``."""
    from sagemaker import image_uris

    return image_uris.retrieve(
        "mxnet", region, version=MXNET_VERSION, py_version=MXNET_PY_VERSION,
        instance_type=instance_type, image_scope="inference",
    )


def make_predictor(endpoint_name: str, clients: AwsClients) -> Any:
    """A ``sagemaker.predictor.Predictor`` sending ``.npy`` and reading JSON, on ``clients``.

    ``predictor.predict(images)`` takes ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 and returns
    one list of ``[class_id, score, x0, y0, x1, y1]`` rows per image (detectors) or of
    class probabilities (classifiers).
    """
    import sagemaker
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import NumpySerializer

    session = sagemaker.Session(
        boto_session=clients.boto_session,
        sagemaker_client=clients.sagemaker,
        sagemaker_runtime_client=clients.runtime,
    )
    return Predictor(
        endpoint_name,
        sagemaker_session=session,
        serializer=NumpySerializer(),
        deserializer=JSONDeserializer(),
    )


def _smoke_image() -> np.ndarray:
    """(1, 64, 64, 3) uint8: a gradient with a bright square, enough to run the real model once."""
    ramp = np.linspace(0, 255, _SMOKE_IMAGE_SIZE, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[::-1, None]), axis=-1)
    image = image.astype(np.uint8)
    image[16:48, 16:48] = (250, 200, 40)
    return image[None]


def _smoke_test(predictor: Any) -> None:
    batch = _smoke_image()
    result = predictor.predict(batch)
    if not isinstance(result, list) or len(result) != len(batch):
        raise ValueError(
            f"expected a JSON list with one entry per image ({len(batch)}), got {str(result)[:200]}"
        )


class _UploadProgress:
    """s3transfer callback (called from its threads): a progress line every 25 %."""

    def __init__(self, total_bytes: int, say: Progress) -> None:
        self.total_bytes = max(total_bytes, 1)
        self.say = say
        self.sent = 0
        self.next_quarter = 1
        self.lock = threading.Lock()

    def __call__(self, sent_bytes: int) -> None:
        with self.lock:
            self.sent += sent_bytes
            while self.next_quarter <= 4 and self.sent * 4 >= self.next_quarter * self.total_bytes:
                self.say(f"uploaded {25 * self.next_quarter} %")
                self.next_quarter += 1


# ---------------------------------------------------------------- deploy


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

    def manual(self, command: str) -> str:
        """An AWS CLI command line for this run's region."""
        return f"aws {command} --region {self.clients.region}"

    # -- steps

    def check_existing(self) -> dict | None:
        with _step("check-endpoint"):
            existing = _describe_endpoint(self.clients.sagemaker, self.name)
            if existing is None:
                return None
            if not _is_ours(self.clients.sagemaker, existing["EndpointArn"]):
                raise ValueError(
                    f"endpoint {self.name} exists but was not created by clearsight "
                    f"(no {TAG_TOOL} tag); choose another --name"
                )
            status = existing["EndpointStatus"]
            if status != "InService":
                raise ValueError(
                    f"endpoint {self.name} is {status}; only an InService endpoint can be "
                    f"updated (wait, or remove it with `deploy sagemaker down --name {self.name}`)"
                )
            return existing

    def upload(self) -> str:
        config, s3 = self.config, self.clients.s3
        with _step("upload-model"):
            bucket = config.bucket or _default_bucket(self.clients)
            self.ensure_bucket(bucket, create=config.bucket is None)
            digest = _sha256(config.model_path)
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
            self.transaction.will_create(
                f"S3 object {url}",
                lambda: delete_object_if_uploaded_by_run(s3, bucket, key, self.run_id),
                f"aws s3 rm {url}",
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
                Callback=_UploadProgress(size, self.say),
            )
            return url

    def ensure_bucket(self, bucket: str, create: bool) -> None:
        """Check the caller's account owns ``bucket``; create it when missing and ``create``."""
        s3 = self.clients.s3
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
            f"S3 bucket {bucket}", lambda: _delete_bucket_if_empty(self.clients, bucket),
            f"aws s3 rb s3://{bucket}",
        )
        s3.create_bucket(**kwargs)

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
            self.manual(manual),
        )

    def create_model(self, model_data_url: str, image_uri: str) -> str:
        sagemaker = self.clients.sagemaker
        model_name = _resource_name(self.name)
        with _step("create-model"):
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
                Tags=_tags(self.name, self.run_id),
            )
        self.say(f"created model {model_name} ({image_uri})")
        return model_name

    def create_endpoint_config(self, model_name: str) -> str:
        sagemaker = self.clients.sagemaker
        config_name = model_name
        with _step("create-endpoint-config"):
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
                Tags=_tags(self.name, self.run_id),
            )
        self.say(f"created endpoint config {config_name}")
        return config_name

    def create_endpoint(self, config_name: str) -> None:
        sagemaker = self.clients.sagemaker
        with _step("create-endpoint"):
            # check_existing found no endpoint of this name a moment ago; the undo still checks
            # the run tag, in case someone else created one in between.
            self.transaction.will_create(
                f"endpoint {self.name}",
                lambda: delete_sagemaker_resource_of_run(
                    sagemaker, self.run_id, lambda: sagemaker.describe_endpoint(EndpointName=self.name),
                    "EndpointArn", lambda described: _delete_endpoint(
                        self.clients, self.name, self.config.poll_seconds,
                        self.config.wait_timeout_seconds, self.say)),
                self.manual(f"sagemaker delete-endpoint --endpoint-name {self.name}"),
            )
            sagemaker.create_endpoint(
                EndpointName=self.name, EndpointConfigName=config_name,
                Tags=_tags(self.name, self.run_id),
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

        with _step("update-endpoint"):
            self.transaction.will_create(
                f"update of endpoint {self.name} (back to {previous_config})", revert,
                self.manual(f"sagemaker update-endpoint --endpoint-name {self.name} "
                            f"--endpoint-config-name {previous_config}"),
            )
            sagemaker.update_endpoint(EndpointName=self.name, EndpointConfigName=config_name)
        self.say(f"updating endpoint {self.name}: {previous_config} -> {config_name}")

    def settle(self) -> dict | None:
        """Poll DescribeEndpoint until the endpoint is in no transitional state; None if it is gone."""
        started = time.monotonic()
        while True:
            described = _describe_endpoint(self.clients.sagemaker, self.name)
            if described is None or described["EndpointStatus"] not in _TRANSITIONAL:
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
            with _step(step):
                described = sagemaker.describe_endpoint(EndpointName=self.name)
            status = described["EndpointStatus"]
            now = time.monotonic()
            elapsed = now - started
            if status != last_status or now - last_said >= _HEARTBEAT_SECONDS:
                self.say(f"endpoint {self.name}: {status} after {elapsed:.0f} s")
                last_status, last_said = status, now
            if status not in _TRANSITIONAL:
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

    def smoke_test(self) -> Any:
        with _step("smoke-inference"):
            predictor = make_predictor(self.name, self.clients)
            self.say("sending one inference (64x64 image as application/x-npy)")
            try:
                _smoke_test(predictor)
            except Exception as error:
                raise SageMakerStepError(
                    "smoke-inference", f"{_error_text(error)} (container logs: CloudWatch log "
                    f"group /aws/sagemaker/Endpoints/{self.name})"
                ) from error
        self.say("inference OK")
        return predictor

    def register_autoscaling(self, autoscale: Any) -> None:
        resource_id = _scaling_resource_id(self.name)
        scaling = (f"--service-namespace sagemaker --resource-id {resource_id} "
                   f"--scalable-dimension {SCALABLE_DIMENSION}")
        with _step("register-autoscaling"):
            if _scaling_state(self.clients, self.name) is not None:
                raise ValueError(f"endpoint {self.name} already has a scalable target that this "
                                 "run did not register; not touching it")
            # The endpoint is this run's (created, or its autoscaling suspended for the update):
            # the undo removes whatever autoscaling the endpoint has.
            self.transaction.will_create(
                f"scalable target {resource_id}",
                lambda: _deregister_autoscaling(self.clients, self.name),
                self.manual(f"application-autoscaling deregister-scalable-target {scaling}"),
            )
            self.transaction.will_create(
                f"scaling policy {_policy_name(self.name)}",
                lambda: _delete_scaling_policy(self.clients, self.name),
                self.manual(f"application-autoscaling delete-scaling-policy --policy-name "
                            f"{_policy_name(self.name)} {scaling}"),
            )
            _register_autoscaling(self.clients, self.name, autoscale, self.run_id)
        self.say(f"autoscaling {autoscale.min_capacity}..{autoscale.max_capacity} instances at "
                 f"{autoscale.target_invocations:g} invocations/instance/minute")


def _register_autoscaling(clients: AwsClients, name: str, autoscale: Any, run_id: str) -> None:
    """RegisterScalableTarget (tagged) and PutScalingPolicy (target tracking) for endpoint ``name``."""
    resource_id = _scaling_resource_id(name)
    clients.autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource_id,
        ScalableDimension=SCALABLE_DIMENSION,
        MinCapacity=autoscale.min_capacity, MaxCapacity=autoscale.max_capacity,
        Tags={TAG_TOOL: TOOL, TAG_ENDPOINT: name, TAG_RUN: run_id},
    )
    clients.autoscaling.put_scaling_policy(
        PolicyName=_policy_name(name), ServiceNamespace="sagemaker",
        ResourceId=resource_id, ScalableDimension=SCALABLE_DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(autoscale.target_invocations),
            "PredefinedMetricSpecification": {"PredefinedMetricType": SCALING_METRIC},
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    )


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
    raise SageMakerStepError(step, _error_text(error) if str(error) else type(error).__name__,
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
        with _step("resolve-image"):
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
                previous_scaling = _suspend_autoscaling(run)
            run.update_endpoint(config_name, existing["EndpointConfigName"])
        if not config.wait:
            run.say(f"not waiting: watch with `deploy sagemaker status --name {config.name}`")
            run.transaction.commit()
            return make_predictor(config.name, clients)
        run.wait("wait-endpoint", config_name)
        predictor = run.smoke_test()
        autoscale = config.autoscale or previous_scaling
        if autoscale is not None:
            run.register_autoscaling(autoscale)
    except BaseException as error:  # a failed step, a lost response, a bug or Ctrl-C: undo
        _raise_after_roll_back(run, error)
        raise
    run.transaction.commit()
    _delete_superseded(run, keep_config=config_name)
    return predictor


def _suspend_autoscaling(run: _Run) -> Any:
    """Deregister autoscaling before an update (required when the instance type changes).

    Returns the previous settings as an Autoscale (re-registered after the update, or by
    the roll-back), or None when none was registered.
    """
    from .config import Autoscale

    clients, name = run.clients, run.name
    with _step("suspend-autoscaling"):
        targets = clients.autoscaling.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[_scaling_resource_id(name)],
            ScalableDimension=SCALABLE_DIMENSION,
        )["ScalableTargets"]
        if not targets:
            return None
        policies = clients.autoscaling.describe_scaling_policies(
            ServiceNamespace="sagemaker", ResourceId=_scaling_resource_id(name),
            ScalableDimension=SCALABLE_DIMENSION,
        )["ScalingPolicies"]
        target_value = next(
            (policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
             for policy in policies if policy["PolicyName"] == _policy_name(name)),
            None,
        )
        previous = None if target_value is None else Autoscale(
            targets[0]["MinCapacity"], targets[0]["MaxCapacity"], target_value)
        if previous is not None:
            run.transaction.will_create(
                "suspension of autoscaling",
                lambda: _restore_autoscaling(clients, name, previous, run.run_id),
                f"python -m deploy sagemaker up --name {name} ... --autoscale {previous.text}",
            )
        _deregister_autoscaling(clients, name)
    if previous is None:
        run.say("autoscaling was registered without clearsight's policy; not re-registering it")
        return None
    run.say(f"autoscaling suspended for the update (was {previous.text})")
    return previous


def _restore_autoscaling(clients: AwsClients, name: str, previous: Any, run_id: str) -> bool:
    """Undo of a suspension: register ``previous`` again unless the endpoint has autoscaling."""
    if _scaling_state(clients, name) is not None:
        return False
    _register_autoscaling(clients, name, previous, run_id)
    return True


def _delete_superseded(run: _Run, keep_config: str) -> None:
    """Delete this endpoint's tagged configs and models other than ``keep_config``'s."""
    clients, name = run.clients, run.name
    try:
        configs, models = _find_resources(clients, name)
        keep_models = _config_models(clients.sagemaker, keep_config)
        data_urls = set()
        for config_name in configs - {keep_config}:
            _ignore_missing(lambda name=config_name: clients.sagemaker.delete_endpoint_config(
                EndpointConfigName=name))
            run.say(f"deleted superseded endpoint config {config_name}")
        kept_urls = {_model_data_url(clients.sagemaker, model) for model in keep_models}
        for model_name in models - keep_models:
            data_urls.add(_model_data_url(clients.sagemaker, model_name))
            _ignore_missing(lambda name=model_name: clients.sagemaker.delete_model(ModelName=name))
            run.say(f"deleted superseded model {model_name}")
        for url in data_urls - kept_urls - {None}:
            if _delete_model_data(clients, url, name):
                run.say(f"deleted superseded model data {url}")
    except Exception as error:  # the endpoint is fine; leftovers are removed by `down`
        logger.warning("could not delete superseded resources of %s: %s", name, error)
        run.progress(f"warning: superseded resources left ({_error_text(error)}); "
                     f"`deploy sagemaker down` removes them")


def _ignore_missing(action: Callable[[], Any]) -> bool:
    try:
        action()
        return True
    except Exception as error:
        if _is_not_found(error):
            return False
        raise


# ---------------------------------------------------------------- discovery


def _config_models(sagemaker: Any, config_name: str) -> set[str]:
    try:
        described = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    except Exception as error:
        if _is_not_found(error):
            return set()
        raise
    return {variant["ModelName"] for variant in described["ProductionVariants"]}


def _model_data_url(sagemaker: Any, model_name: str) -> str | None:
    try:
        described = sagemaker.describe_model(ModelName=model_name)
    except Exception as error:
        if _is_not_found(error):
            return None
        raise
    return described.get("PrimaryContainer", {}).get("ModelDataUrl")


def _find_resources(clients: AwsClients, name: str) -> tuple[set[str], set[str]]:
    """Endpoint config names and model names tagged for endpoint ``name``."""
    sagemaker = clients.sagemaker
    stem = _name_stem(name)
    configs, models = set(), set()
    for page in sagemaker.get_paginator("list_endpoint_configs").paginate(NameContains=stem):
        for item in page["EndpointConfigs"]:
            if _is_ours(sagemaker, item["EndpointConfigArn"], name):
                configs.add(item["EndpointConfigName"])
    for page in sagemaker.get_paginator("list_models").paginate(NameContains=stem):
        for item in page["Models"]:
            if _is_ours(sagemaker, item["ModelArn"], name):
                models.add(item["ModelName"])
    for config_name in configs:
        models |= _config_models(sagemaker, config_name)
    return configs, models


def _scaling_state(clients: AwsClients, name: str) -> dict | None:
    resource_id = _scaling_resource_id(name)
    targets = clients.autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id], ScalableDimension=SCALABLE_DIMENSION
    )["ScalableTargets"]
    if not targets:
        return None
    policies = clients.autoscaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=SCALABLE_DIMENSION
    )["ScalingPolicies"]
    return {
        "resource_id": resource_id,
        "min_capacity": targets[0]["MinCapacity"],
        "max_capacity": targets[0]["MaxCapacity"],
        "policies": [policy["PolicyName"] for policy in policies],
    }


def _deregister_autoscaling(clients: AwsClients, name: str) -> bool:
    """Delete the scaling policies and the scalable target of ``name``; False if none."""
    resource_id = _scaling_resource_id(name)
    autoscaling = clients.autoscaling
    policies = autoscaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=SCALABLE_DIMENSION
    )["ScalingPolicies"]
    for policy in policies:
        _ignore_missing(lambda policy=policy: autoscaling.delete_scaling_policy(
            PolicyName=policy["PolicyName"], ServiceNamespace="sagemaker",
            ResourceId=resource_id, ScalableDimension=SCALABLE_DIMENSION))
    targets = autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id], ScalableDimension=SCALABLE_DIMENSION
    )["ScalableTargets"]
    if not targets:
        return bool(policies)
    autoscaling.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=SCALABLE_DIMENSION
    )
    return True


def _delete_endpoint(clients: AwsClients, name: str, poll_seconds: float = 5.0,
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
        described = _describe_endpoint(sagemaker, name)
        if described is None:
            return False
        status = described["EndpointStatus"]
        if status == "Deleting":
            break
        try:
            sagemaker.delete_endpoint(EndpointName=name)
            break
        except Exception as error:
            if _is_not_found(error):
                return False
            if status not in _TRANSITIONAL:
                raise
        if say is not None and not told:
            say(f"endpoint {name} is {status}; SageMaker deletes it only once that ends: waiting")
            told = True
        check_time(status)
        time.sleep(poll_seconds)
    while _describe_endpoint(sagemaker, name) is not None:
        check_time("Deleting")
        time.sleep(poll_seconds)
    return True


def _delete_scaling_policy(clients: AwsClients, name: str) -> bool:
    """Delete clearsight's scaling policy of endpoint ``name`` (and so its alarms); False if none."""
    resource_id = _scaling_resource_id(name)
    policies = clients.autoscaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=SCALABLE_DIMENSION,
        PolicyNames=[_policy_name(name)],
    )["ScalingPolicies"]
    if not policies:
        return False
    return _ignore_missing(lambda: clients.autoscaling.delete_scaling_policy(
        PolicyName=_policy_name(name), ServiceNamespace="sagemaker", ResourceId=resource_id,
        ScalableDimension=SCALABLE_DIMENSION))


def _delete_bucket_if_empty(clients: AwsClients, bucket: str) -> bool:
    """Undo of CreateBucket: delete ``bucket`` (owner-checked) unless something was put in it.

    The run created the bucket only after HeadBucket said it did not exist; an object in
    it now belongs to someone else's run, so a bucket that is not empty is kept.
    """
    try:
        listed = clients.s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    except Exception as error:
        if _is_not_found(error):
            return False
        raise
    if listed.get("KeyCount", 0):
        logger.info("keeping S3 bucket %s: it is not empty", bucket)
        return False
    clients.s3.delete_bucket(Bucket=bucket)
    return True


def _delete_model_data(clients: AwsClients, url: str, name: str) -> bool:
    """Delete S3 object ``url`` if this tool uploaded it for endpoint ``name`` (owner-checked bucket)."""
    bucket, key = _split_s3_url(url)
    clients.expect_own_bucket(bucket)
    try:
        metadata = clients.s3.head_object(Bucket=bucket, Key=key).get("Metadata", {})
    except Exception as error:
        if _is_not_found(error):
            return False
        raise
    if metadata.get(META_TOOL) != TOOL or metadata.get(META_ENDPOINT) != name:
        logger.info("keeping %s: not uploaded by clearsight for %s", url, name)
        return False
    clients.s3.delete_object(Bucket=bucket, Key=key)
    return True


# ---------------------------------------------------------------- teardown and queries


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
            report.failed.append(f"{description}: {_error_text(error)}")
            logger.warning("could not remove %s: %s", description, error)

    sagemaker = clients.sagemaker
    with _step("down"):
        endpoint = _describe_endpoint(sagemaker, name)
        if endpoint is not None and not _is_ours(sagemaker, endpoint["EndpointArn"]):
            raise ValueError(
                f"endpoint {name} was not created by clearsight (no {TAG_TOOL} tag); "
                "delete it with the AWS console or CLI"
            )
    attempt(f"autoscaling of endpoint/{name}/variant/{VARIANT}",
            lambda: _deregister_autoscaling(clients, name))
    attempt(f"endpoint {name}", lambda: _delete_endpoint(clients, name))
    with _step("down"):
        configs, models = _find_resources(clients, name)
        if endpoint is not None:
            configs.add(endpoint["EndpointConfigName"])
            models |= _config_models(sagemaker, endpoint["EndpointConfigName"])
        data_urls = {_model_data_url(sagemaker, model) for model in models} - {None}
    for config_name in sorted(configs):
        attempt(f"endpoint config {config_name}", lambda config_name=config_name: _ignore_missing(
            lambda: sagemaker.delete_endpoint_config(EndpointConfigName=config_name)))
    for model_name in sorted(models):
        attempt(f"model {model_name}", lambda model_name=model_name: _ignore_missing(
            lambda: sagemaker.delete_model(ModelName=model_name)))
    if not keep_model_data:
        try:
            data_urls |= _uploaded_objects(clients, name, bucket, prefix)
        except Exception as error:
            report.failed.append(f"listing model data: {_error_text(error)}")
        for url in sorted(data_urls):
            attempt(f"S3 object {url}", lambda url=url: _delete_model_data(clients, url, name))
    if report.failed:
        raise SageMakerStepError("down", "could not remove " + "; ".join(report.failed))
    return report


def _uploaded_objects(clients: AwsClients, name: str, bucket: str | None, prefix: str) -> set[str]:
    """S3 URLs under ``<prefix>/<name>/`` in ``bucket`` (only listed; filtered on delete)."""
    bucket = bucket or _default_bucket(clients)
    if not check_bucket_owner(clients, bucket):
        return set()
    urls = set()
    paginator = clients.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix.strip('/')}/{name}/"):
        urls |= {f"s3://{bucket}/{item['Key']}" for item in page.get("Contents", [])}
    return urls


def endpoint_status(name: str, clients: AwsClients) -> dict:
    """A JSON-ready summary of endpoint ``name``; raises SageMakerStepError when it does not exist."""
    validate_endpoint_name(name)
    sagemaker = clients.sagemaker
    with _step("status"):
        endpoint = _describe_endpoint(sagemaker, name)
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
            "managed_by_clearsight": _is_ours(sagemaker, endpoint["EndpointArn"]),
            "variants": [],
            "autoscaling": _scaling_state(clients, name),
        }
        try:
            config = sagemaker.describe_endpoint_config(
                EndpointConfigName=endpoint["EndpointConfigName"]
            )
        except Exception as error:
            if not _is_not_found(error):
                raise
            config = {"ProductionVariants": []}
        counts = {v["VariantName"]: v for v in endpoint.get("ProductionVariants", [])}
        for variant in config["ProductionVariants"]:
            live = counts.get(variant["VariantName"], {})
            summary["variants"].append({
                "variant": variant["VariantName"],
                "model": variant["ModelName"],
                "model_data": _model_data_url(sagemaker, variant["ModelName"]),
                "instance_type": variant.get("InstanceType"),
                "current_instance_count": live.get("CurrentInstanceCount"),
                "desired_instance_count": live.get("DesiredInstanceCount"),
            })
    return summary


def list_endpoints(clients: AwsClients) -> list[dict]:
    """Endpoints tagged ``clearsight:tool=clearsight``: name, status, creation time."""
    sagemaker = clients.sagemaker
    found = []
    with _step("list"):
        for page in sagemaker.get_paginator("list_endpoints").paginate():
            for item in page["Endpoints"]:
                if _is_ours(sagemaker, item["EndpointArn"]):
                    found.append({
                        "name": item["EndpointName"],
                        "status": item["EndpointStatus"],
                        "created": item["CreationTime"].isoformat(),
                    })
    return sorted(found, key=lambda item: item["name"])


def invoke(name: str, images: Sequence[np.ndarray], clients: AwsClients) -> list:
    """Send each ``(H, W, 3)`` uint8 image to endpoint ``name``; one result list per image."""
    validate_endpoint_name(name)
    predictor = make_predictor(name, clients)
    results = []
    for image in images:
        with _step("invoke"):
            try:
                answer = predictor.predict(np.ascontiguousarray(image)[None])
            except Exception as error:
                raise SageMakerStepError(
                    "invoke", f"{_error_text(error)} (container logs: CloudWatch log group "
                    f"/aws/sagemaker/Endpoints/{name})"
                ) from error
            if not isinstance(answer, list) or len(answer) != 1:
                raise ValueError(f"expected a JSON list with one entry, got {str(answer)[:200]}")
        results.append(answer[0])
    return results
