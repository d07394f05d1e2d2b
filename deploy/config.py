"""Settings of a SageMaker deployment: one frozen dataclass, validated once, before any AWS call."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from serving.contract import ENDPOINT_NAME_PATTERN, is_endpoint_name

from .errors import DeployConfigError

__all__ = [
    "Autoscale",
    "DeployConfig",
    "supported_instance_types",
    "validate_endpoint_name",
    "DEFAULT_INSTANCE_TYPE",
    "DEFAULT_PREFIX",
    "BUCKET_PATTERN",
    "ROLE_PATTERN",
]

DEFAULT_INSTANCE_TYPE = "ml.g4dn.xlarge"
DEFAULT_PREFIX = "clearsight"
LOG_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}

# botocore's shapes: EndpointName, RoleArn, and S3 bucket naming rules.
ROLE_PATTERN = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9!_.*'()\-]+(/[A-Za-z0-9!_.*'()\-]+)*")


@functools.lru_cache(maxsize=1)
def supported_instance_types() -> tuple[str, ...]:
    """SageMaker real-time instance types known to the installed botocore (``ml.*``)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    enum = model.shape_for("ProductionVariantInstanceType").enum
    return tuple(name for name in enum if name.startswith("ml."))


def validate_endpoint_name(name: str, field: str = "name") -> str:
    """Return ``name`` if SageMaker accepts it as an endpoint name, else raise DeployConfigError."""
    if not is_endpoint_name(name):
        raise DeployConfigError(
            field,
            name,
            "1 to 63 letters, digits and hyphens, starting and ending with a letter or digit "
            f"(pattern ^{ENDPOINT_NAME_PATTERN}$)",
        )
    return name


@dataclass(frozen=True)
class Autoscale:
    """Target tracking on SageMakerVariantInvocationsPerInstance between min and max instances."""

    min_capacity: int
    max_capacity: int
    target_invocations: float

    def __post_init__(self) -> None:
        if self.min_capacity < 1:
            raise DeployConfigError("autoscale", self.text, "MIN must be at least 1")
        if self.max_capacity < self.min_capacity:
            raise DeployConfigError(
                "autoscale", self.text, f"MAX must be >= MIN ({self.min_capacity})"
            )
        if not self.target_invocations > 0:
            raise DeployConfigError(
                "autoscale", self.text, "TARGET (invocations per instance per minute) must be > 0"
            )

    @property
    def text(self) -> str:
        """The ``MIN:MAX:TARGET`` form."""
        return f"{self.min_capacity}:{self.max_capacity}:{self.target_invocations:g}"

    @classmethod
    def parse(cls, text: str) -> Autoscale:
        """Parse ``MIN:MAX:TARGET``, e.g. ``1:4:100`` (TARGET = invocations per instance per minute)."""
        parts = str(text).split(":")
        try:
            if len(parts) != 3:
                raise ValueError(text)
            min_capacity, max_capacity = int(parts[0]), int(parts[1])
            target = float(parts[2])
        except ValueError:
            raise DeployConfigError(
                "autoscale", text, "MIN:MAX:TARGET with integers MIN <= MAX and a number TARGET > 0, "
                "e.g. 1:4:100"
            ) from None
        return cls(min_capacity, max_capacity, target)


@dataclass(frozen=True)
class DeployConfig:
    """Everything ``deploy sagemaker up`` needs; ``__post_init__`` validates every field.

    ``model_path`` is a ``model.tar.gz`` written by ``deploy package``. ``bucket=None``
    means SageMaker's default ``sagemaker-<region>-<account>`` (created when missing).
    ``poll_seconds`` and ``wait_timeout_seconds`` bound the wait for ``InService``.
    """

    name: str
    model_path: Path
    role: str
    region: str
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    bucket: str | None = None
    prefix: str = DEFAULT_PREFIX
    workers: int | None = None
    server_timeout: int = 60
    log_level: str = "INFO"
    wait: bool = True
    autoscale: Autoscale | None = None
    endpoint_url: str | None = None
    poll_seconds: float = 15.0
    wait_timeout_seconds: float = 3600.0

    def __post_init__(self) -> None:
        validate_endpoint_name(self.name)
        object.__setattr__(self, "model_path", Path(self.model_path))
        if not self.model_path.is_file():
            raise DeployConfigError(
                "model", str(self.model_path), "an existing model.tar.gz file (from `clearsight deploy package`)"
            )
        if not isinstance(self.role, str) or not ROLE_PATTERN.fullmatch(self.role):
            raise DeployConfigError(
                "role", self.role, "an IAM role ARN like arn:aws:iam::123456789012:role/NAME "
                "(option --role or env SAGEMAKER_ROLE)"
            )
        if not self.region or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", self.region):
            raise DeployConfigError(
                "region", self.region, "an AWS region such as us-east-1 "
                "(option --region or env AWS_DEFAULT_REGION / AWS_REGION)"
            )
        supported = supported_instance_types()
        if self.instance_type not in supported:
            family = self.instance_type.rsplit(".", 1)[0] + "." if "." in self.instance_type else ""
            similar = [name for name in supported if family and name.startswith(family)]
            examples = similar or [name for name in supported if name.startswith("ml.g4dn.")]
            raise DeployConfigError(
                "instance_type", self.instance_type,
                f"one of the {len(supported)} ml.* real-time instance types botocore lists, "
                f"e.g. {', '.join(examples)}",
            )
        if isinstance(self.instance_count, bool) or not isinstance(self.instance_count, int) \
                or self.instance_count < 1:
            raise DeployConfigError("instance_count", self.instance_count, "an integer >= 1")
        if self.bucket is not None and not BUCKET_PATTERN.fullmatch(self.bucket):
            raise DeployConfigError(
                "bucket", self.bucket, "an S3 bucket name: 3 to 63 lowercase letters, digits, "
                "dots and hyphens"
            )
        prefix = self.prefix.strip("/")
        if not _PREFIX_PATTERN.fullmatch(prefix):
            raise DeployConfigError(
                "prefix", self.prefix, "an S3 key prefix of letters, digits and !_.*'()- "
                "separated by /"
            )
        object.__setattr__(self, "prefix", prefix)
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise DeployConfigError("workers", self.workers, "an integer >= 1 (model server workers), or None "
                                    "for the model server's default (one per GPU, else one per vCPU)")
        if not isinstance(self.server_timeout, int) or not 1 <= self.server_timeout <= 3600:
            raise DeployConfigError("server_timeout", self.server_timeout, "an integer in [1, 3600]")
        if self.log_level not in LOG_LEVELS:
            raise DeployConfigError("log_level", self.log_level, f"one of {', '.join(LOG_LEVELS)}")
        if self.autoscale is not None and not self.wait:
            raise DeployConfigError(
                "autoscale", self.autoscale.text, "needs --wait: a scaling target can only be "
                "registered once the endpoint is InService"
            )
        if not self.poll_seconds >= 0:
            raise DeployConfigError("poll_seconds", self.poll_seconds, "a number >= 0")
        if not self.wait_timeout_seconds > 0:
            raise DeployConfigError("wait_timeout_seconds", self.wait_timeout_seconds, "a number > 0")

    @property
    def container_environment(self) -> dict[str, str]:
        """The ``Environment`` of the SageMaker model's container (sagemaker-inference variables).

        ``SAGEMAKER_MODEL_SERVER_WORKERS`` only when ``workers`` is set: unset, MMS starts one
        worker per GPU (per vCPU on a CPU instance), so every GPU of a multi-GPU instance works.
        """
        environment = {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": str(self.server_timeout),
            "SAGEMAKER_CONTAINER_LOG_LEVEL": str(LOG_LEVELS[self.log_level]),
            "SAGEMAKER_REGION": self.region,
        }
        if self.workers is not None:
            environment["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(self.workers)
        return environment
