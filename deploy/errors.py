"""Exception hierarchy of the deploy package."""

from __future__ import annotations

from serving.contract import is_retryable_status

__all__ = ["DeployError", "EndpointError", "PackageError", "ServeError"]


class DeployError(Exception):
    """Base class of every error raised by deploy/."""


class EndpointError(DeployError):
    """An endpoint call failed: an HTTP error status, or no response at all.

    ``status`` is the HTTP status code, or ``None`` when no response arrived
    (connection refused, reset, or timed out). ``message`` is the server's own
    message (the ``error`` field of its JSON body) or a description of the failure.
    """

    def __init__(self, status: int | None, message: str) -> None:
        self.status = status
        self.message = message
        where = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"endpoint error ({where}): {message}")

    @property
    def retryable(self) -> bool:
        """True for failures worth retrying: no response, 429 and every 5xx (incl. 503)."""
        return is_retryable_status(self.status)


class PackageError(DeployError):
    """A model could not be exported, packaged, or failed its check inference."""


class ServeError(DeployError):
    """The local endpoint could not start, did not become ready, or died."""


# --- SageMaker deployment (deploy/sagemaker_*.py, deploy/aws_*.py) ---

__all__ += ["DeployConfigError", "SageMakerStepError", "SageMakerEndpointFailed"]


class DeployConfigError(DeployError, ValueError):
    """A deployment setting is invalid; raised before any call to AWS.

    ``field`` names the setting (``instance_type``), ``option`` the CLI flag
    (``--instance-type``), ``value`` what was given and ``allowed`` the valid range.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.option = "--" + field.replace("_", "-")
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r} is invalid: {allowed}")


class SageMakerStepError(DeployError):
    """One step of a SageMaker deployment failed; ``step`` names it (``create-model``).

    ``reason`` is AWS's own message. ``rollback_errors`` lists what the automatic
    clean-up could not delete (empty when everything this run created is gone).
    """

    def __init__(self, step: str, reason: str, rollback_errors: tuple[str, ...] = ()) -> None:
        self.step = step
        self.reason = reason
        self.rollback_errors = tuple(rollback_errors)
        message = f"step {step} failed: {reason}"
        if self.rollback_errors:
            message += "; clean-up left behind: " + "; ".join(self.rollback_errors)
        super().__init__(message)


class SageMakerEndpointFailed(SageMakerStepError):
    """The endpoint reached status ``Failed`` (or an update rolled back).

    ``failure_reason`` is ``FailureReason`` from DescribeEndpoint; ``log_group`` is the
    CloudWatch log group with the container's logs.
    """

    def __init__(self, step: str, endpoint_name: str, status: str, failure_reason: str) -> None:
        self.endpoint_name = endpoint_name
        self.status = status
        self.failure_reason = failure_reason
        self.log_group = f"/aws/sagemaker/Endpoints/{endpoint_name}"
        super().__init__(
            step,
            f"endpoint {endpoint_name} is {status}: {failure_reason or 'no FailureReason given'}"
            f" (container logs: CloudWatch log group {self.log_group})",
        )


__all__ += ["BucketOwnerError"]


class BucketOwnerError(DeployError):
    """S3 refused a bucket with ``ExpectedBucketOwner``: the caller's account does not own it.

    The default bucket name ``sagemaker-<region>-<account>`` is predictable, so another
    account can create it first ("bucket squatting"); model data or code uploaded there
    would be in a stranger's hands. ``bucket`` and ``account`` name what was checked.
    """

    def __init__(self, bucket: str, account: str,
                 hint: str = "give --bucket NAME (env CLEARSIGHT_S3_BUCKET)") -> None:
        self.bucket = bucket
        self.account = account
        super().__init__(
            f"S3 bucket {bucket} is not owned by your account {account}, or you may not list "
            f"it (S3 answered 403 to HeadBucket with ExpectedBucketOwner={account}); nothing "
            f"was written to it. Use a bucket your account owns: {hint}"
        )
