"""SageMaker runtime connection: ``sagemaker-runtime.invoke_endpoint`` through boto3."""

from __future__ import annotations

import json

from serving.contract import is_endpoint_name, is_retryable_status

from ..errors import ConfigError, EndpointAccessError, PredictorError
from .engine import Predictor, rejects_content_type, status_hint
from .planning import check_task
from .transport import TransientError, TransportConfig

__all__ = ["SAGEMAKER_PREFIX", "SageMakerConnection", "SageMakerPredictor"]

SAGEMAKER_PREFIX = "sagemaker:"
_RETRYABLE_AWS_CODES = frozenset({
    "ThrottlingException", "ServiceUnavailable", "InternalFailure",
    "InternalDependencyException", "ModelNotReadyException",
})
# Error codes that say this caller cannot use the endpoint at all (credentials refused, no access):
# every image would fail the same way, so the run stops (EndpointAccessError).
_ACCESS_AWS_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException", "SignatureDoesNotMatch",
    "IncompleteSignature", "MissingAuthenticationToken", "ExpiredToken", "ExpiredTokenException",
    "AccessDenied", "AccessDeniedException",
})
NO_CREDENTIALS = ("no AWS credentials found: configure them (aws configure, AWS_PROFILE or "
                  "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")


def _json_error_field(text: str) -> str:
    """``'{"error": "bad shape"}'`` -> ``'bad shape'``; raise ValueError for other text."""
    payload = json.loads(text)
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return payload["error"]
    raise ValueError("no error field")


class SageMakerConnection:
    """One SageMaker real-time endpoint through ``invoke_endpoint``.

    client: an injected ``sagemaker-runtime`` client (tests, custom sessions); otherwise one is
    created for ``region`` (and ``endpoint_url``, e.g. a moto server) with botocore's own retries
    off, since the engine retries throttling, 5xx and connection errors itself.
    """

    name = "sagemaker"

    def __init__(self, endpoint_name: str, transport: TransportConfig, region: str | None = None,
                 client=None, endpoint_url: str | None = None) -> None:
        if not is_endpoint_name(endpoint_name):
            raise ConfigError(
                f"SageMaker endpoint name must be 1-63 letters, digits or hyphens, got {endpoint_name!r}",
                field="endpoint")
        self.endpoint_name = endpoint_name
        self.transport = transport
        self.client = client if client is not None else self._make_client(region, endpoint_url, transport)

    @staticmethod
    def _make_client(region: str | None, endpoint_url: str | None, transport: TransportConfig):
        # boto3 is imported only when a SageMaker endpoint is used: it costs ~0.5 s to import.
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, NoRegionError

        config = Config(read_timeout=transport.timeout, connect_timeout=10,
                        max_pool_connections=max(10, transport.concurrency),
                        retries={"total_max_attempts": 1, "mode": "standard"})
        try:
            return boto3.client("sagemaker-runtime", region_name=region, endpoint_url=endpoint_url,
                                config=config)
        except NoRegionError:
            raise EndpointAccessError(
                "no AWS region for the SageMaker endpoint: set AWS_DEFAULT_REGION "
                "(e.g. export AWS_DEFAULT_REGION=us-east-1)") from None
        except BotoCoreError as error:
            raise PredictorError(f"cannot create a sagemaker-runtime client: {error}") from None

    @property
    def description(self) -> str:
        return f"SageMaker endpoint {self.endpoint_name}"

    @property
    def endpoint_id(self) -> str:
        return f"{SAGEMAKER_PREFIX}{self.endpoint_name}"

    def send(self, body: bytes) -> tuple[bytes, str]:
        """invoke_endpoint once; TransientError for throttling, 5xx and lost connections."""
        from botocore.exceptions import (  # botocore is loaded already: the client came from it
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
        )

        params = {"EndpointName": self.endpoint_name, "Body": body,
                  "ContentType": self.transport.content_type, "Accept": self.transport.accept}
        if self.transport.custom_attributes:
            params["CustomAttributes"] = self.transport.custom_attributes
        if self.transport.target_model is not None:
            params["TargetModel"] = self.transport.target_model
        try:
            response = self.client.invoke_endpoint(**params)
            return response["Body"].read(), response.get("ContentType") or self.transport.accept
        except ClientError as error:
            raise self._client_error(error) from None
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
                ConnectionClosedError) as error:
            raise TransientError(str(error)) from None
        except (NoCredentialsError, PartialCredentialsError) as error:
            reason = NO_CREDENTIALS if isinstance(error, NoCredentialsError) else f"{error}; configure them " \
                "(aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
            raise EndpointAccessError(f"{self.description}: {reason}") from None
        except BotoCoreError as error:
            raise PredictorError(f"{self.description}: {error}") from None

    def _client_error(self, error) -> Exception:
        """Map a botocore ClientError to TransientError (retry), EndpointAccessError (credentials refused,
        no such endpoint: the run stops) or PredictorError (this request's fault)."""
        response = error.response
        code = response.get("Error", {}).get("Code", "")
        message = response.get("Error", {}).get("Message", "")
        if code in _RETRYABLE_AWS_CODES:
            return TransientError(f"{code}: {message}")
        if code == "ModelError":
            original_status = response.get("OriginalStatusCode")
            original_message = response.get("OriginalMessage") or message
            try:
                original_message = _json_error_field(original_message)
            except ValueError:
                pass
            status = None if original_status is None else int(original_status)
            if is_retryable_status(status) and not rejects_content_type(str(original_message)):
                return TransientError(f"model error (HTTP {original_status}): {original_message}")
            return PredictorError(
                f"the model behind {self.description} rejected the request "
                f"{'(no status)' if status is None else f'with HTTP {status}'}: "
                f"{original_message}{status_hint(status, str(original_message))}")
        message = message.strip().splitlines()[0][:300] if message.strip() else code
        if code in _ACCESS_AWS_CODES or (code == "ValidationError" and "not found" in message.lower()):
            return EndpointAccessError(f"{self.description}: {code}: {message}")  # e.g. "Endpoint x ... not found."
        if response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
            return TransientError(f"{code}: {message}")
        return PredictorError(f"{self.description}: {code}: {message}")

    def close(self) -> None:
        """Nothing to release: boto3 clients hold no state that needs closing."""


class SageMakerPredictor(Predictor):
    """predict(batch) over ``sagemaker-runtime.invoke_endpoint`` (boto3); see SageMakerConnection."""

    def __init__(self, endpoint_name: str, task: str, transport: TransportConfig | None = None, *,
                 region: str | None = None, client=None, endpoint_url: str | None = None) -> None:
        check_task(task)
        transport = transport or TransportConfig()
        super().__init__(SageMakerConnection(endpoint_name, transport, region, client, endpoint_url),
                         task, transport)
