"""Call a SageMaker endpoint: the SDK Predictor (.npy in, JSON out), the smoke inference after a deploy, `invoke`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .aws_clients import AwsClients, aws_step, error_text, require_sagemaker_sdk
from .aws_transaction import Progress
from .config import validate_endpoint_name
from .errors import SageMakerStepError

__all__ = ["invoke", "make_predictor", "send_smoke_inference"]

SMOKE_IMAGE_SIZE = 64


def make_predictor(endpoint_name: str, clients: AwsClients) -> Any:
    """A ``sagemaker.predictor.Predictor`` sending ``.npy`` and reading JSON, on ``clients``.

    ``predictor.predict(images)`` takes ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 and returns
    one list of ``[class_id, score, x0, y0, x1, y1]`` rows per image (detectors) or of
    class probabilities (classifiers).
    """
    require_sagemaker_sdk("deploy sagemaker invoke")
    import sagemaker  # the SageMaker SDK (the aws extra) takes seconds to import
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


def _log_group_hint(endpoint_name: str) -> str:
    return f"container logs: CloudWatch log group /aws/sagemaker/Endpoints/{endpoint_name}"


def smoke_image() -> np.ndarray:
    """(1, 64, 64, 3) uint8: a gradient with a bright square, enough to run the real model once."""
    ramp = np.linspace(0, 255, SMOKE_IMAGE_SIZE, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[::-1, None]), axis=-1)
    image = image.astype(np.uint8)
    image[16:48, 16:48] = (250, 200, 40)
    return image[None]


def send_smoke_inference(endpoint_name: str, clients: AwsClients, say: Progress) -> Any:
    """Step ``smoke-inference``: one ``smoke_image()`` through the endpoint; returns its Predictor.

    Raises SageMakerStepError (with the container's log group) unless the endpoint answers
    a JSON list with one entry per image.
    """
    with aws_step("smoke-inference"):
        predictor = make_predictor(endpoint_name, clients)
        say("sending one inference (64x64 image as application/x-npy)")
        batch = smoke_image()
        try:
            result = predictor.predict(batch)
            if not isinstance(result, list) or len(result) != len(batch):
                raise ValueError(f"expected a JSON list with one entry per image ({len(batch)}), "
                                 f"got {str(result)[:200]}")
        except Exception as error:
            raise SageMakerStepError(
                "smoke-inference", f"{error_text(error)} ({_log_group_hint(endpoint_name)})"
            ) from error
    say("inference OK")
    return predictor


def invoke(name: str, images: Sequence[np.ndarray], clients: AwsClients) -> list:
    """Send each ``(H, W, 3)`` uint8 image to endpoint ``name``; one result list per image."""
    validate_endpoint_name(name)
    predictor = make_predictor(name, clients)
    results = []
    for image in images:
        with aws_step("invoke"):
            try:
                answer = predictor.predict(np.ascontiguousarray(image)[None])
            except Exception as error:
                raise SageMakerStepError(
                    "invoke", f"{error_text(error)} ({_log_group_hint(name)})") from error
            if not isinstance(answer, list) or len(answer) != 1:
                raise ValueError(f"expected a JSON list with one entry, got {str(answer)[:200]}")
        results.append(answer[0])
    return results
