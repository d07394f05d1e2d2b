"""AWS plumbing: one boto3 session's clients, AWS's error text, named steps, S3 bucket-owner checks and file helpers."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .aws_transaction import Progress, is_not_found
from .errors import BucketOwnerError, SageMakerStepError

__all__ = [
    "AwsClients",
    "ENDPOINT_URL_ENV",
    "UploadProgress",
    "aws_step",
    "check_bucket_owner",
    "default_bucket_name",
    "error_text",
    "file_sha256",
    "ignore_missing",
    "is_forbidden",
    "require_sagemaker_sdk",
    "split_s3_url",
]

logger = logging.getLogger(__name__)

# Deprecated: boto3 reads AWS_ENDPOINT_URL (every service) and AWS_ENDPOINT_URL_<SERVICE> itself.
ENDPOINT_URL_ENV = "CLEARSIGHT_AWS_ENDPOINT_URL"
MAX_REASON_CHARS = 500  # error_text's limit: AWS messages can carry whole HTML pages


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
        import boto3  # slow to import (botocore loads its models): only code that calls AWS pays
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
        """The region every client talks to, e.g. ``us-east-1``."""
        return self.sagemaker.meta.region_name

    @functools.cached_property
    def account(self) -> str:
        """The 12-digit account id of the caller (``sts:GetCallerIdentity``, asked once)."""
        return self.sts.get_caller_identity()["Account"]

    def cli_command(self, command: str) -> str:
        """The AWS CLI command line ``aws <command>`` for this region (told to a person who must clean up)."""
        return f"aws {command} --region {self.region}"

    def expect_own_bucket(self, bucket: str) -> None:
        """From now on, send ``ExpectedBucketOwner=<account>`` on every S3 call on ``bucket``."""
        self.own_buckets.add(bucket)

    def _expect_owner(self, params: dict, model: Any, **kwargs: Any) -> None:
        if params.get("Bucket") in self.own_buckets and "ExpectedBucketOwner" not in params \
                and "ExpectedBucketOwner" in model.input_shape.members:
            params["ExpectedBucketOwner"] = self.account


def error_text(error: BaseException) -> str:
    """AWS's own message for a ClientError, else the exception's text: one line, no HTML, at most 500 characters."""
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
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS - 3] + "..."


def is_forbidden(error: BaseException) -> bool:
    """True when ``error`` is AWS refusing the call (HTTP 403, AccessDenied, Forbidden)."""
    code = (getattr(error, "response", None) or {}).get("Error", {}).get("Code", "")
    return code in {"403", "AccessDenied", "Forbidden"}


def ignore_missing(action: Callable[[], Any]) -> bool:
    """Run ``action()`` (a delete call); True if it ran, False when AWS says the resource does not exist."""
    try:
        action()
        return True
    except Exception as error:
        if is_not_found(error):
            return False
        raise


@contextlib.contextmanager
def aws_step(name: str) -> Iterator[None]:
    """Run a block as step ``name`` (``create-model``): any failure becomes SageMakerStepError naming it."""
    try:
        yield
    except SageMakerStepError:
        raise
    except Exception as error:  # noqa: BLE001 - every failure must name its step
        raise SageMakerStepError(name, error_text(error)) from error


# The SDK's own switch for its v2 -> v3 migration notice (sagemaker >= 2.257: a warning and a log line).
_SDK_V2_NOTICE_VARIABLE = "SAGEMAKER_SUPPRESS_V2_WARNING"


def require_sagemaker_sdk(needed_for: str) -> None:
    """Raise ImportError naming the aws extra when the SageMaker Python SDK is not installed.

    Called before each import of the SDK: it also sets SAGEMAKER_SUPPRESS_V2_WARNING=1 unless
    the environment sets it (an empty value shows the notice). clearsight needs SDK v2 (v3 has
    no MXNet), so the SDK's advice to its own users to move to v3, printed twice by every
    command that imports it, is not for clearsight's users.
    """
    if importlib.util.find_spec("sagemaker") is None:
        raise ImportError(f"{needed_for} needs the SageMaker Python SDK, not installed in this environment: "
                          "pip install 'clearsight[aws]' (in a clearsight checkout: '.[aws]')")
    os.environ.setdefault(_SDK_V2_NOTICE_VARIABLE, "1")


def default_bucket_name(clients: AwsClients) -> str:
    """SageMaker's default bucket name ``sagemaker-<region>-<account>`` (predictable: check its owner)."""
    return f"sagemaker-{clients.region}-{clients.account}"


def check_bucket_owner(clients: AwsClients, bucket: str,
                       hint: str = "give --bucket NAME (env CLEARSIGHT_S3_BUCKET)") -> bool:
    """True if ``bucket`` exists and the caller's account owns it, False if it does not exist.

    Raises BucketOwnerError when S3 refuses ``HeadBucket`` with ``ExpectedBucketOwner``
    (403): another account owns the bucket (e.g. squats the predictable default name
    ``sagemaker-<region>-<account>``), or this caller may not list it. ``hint`` ends the
    message: how the user picks another bucket.
    """
    clients.expect_own_bucket(bucket)
    try:
        clients.s3.head_bucket(Bucket=bucket)
        return True
    except Exception as error:
        if is_not_found(error):
            return False
        if is_forbidden(error):
            raise BucketOwnerError(bucket, clients.account, hint) from None
        raise


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``."""
    bucket, _, key = url[len("s3://"):].partition("/")
    return bucket, key


def file_sha256(path: Path) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class UploadProgress:
    """s3transfer callback (called from its threads): a progress line every 25 % of ``total_bytes``."""

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
