"""From the endpoint strings a user gives to predictors: one adapter each, several behind a router."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from serving.contract import redact_url

from ..errors import ConfigError
from .engine import Predictor
from .http import HttpPredictor
from .in_process import InProcessPredictor, is_model_path
from .planning import check_task
from .routing import MultiPredictor
from .sagemaker import SAGEMAKER_PREFIX, SageMakerPredictor
from .transport import TransportConfig

__all__ = ["DETECTION_CUSTOM_ATTRIBUTES", "build_predictor", "make_predictor"]

logger = logging.getLogger(__name__)

# serving/ reads these from X-Amzn-SageMaker-Custom-Attributes; other endpoints ignore them.
DETECTION_CUSTOM_ATTRIBUTES = "score_threshold=0"


def make_predictor(endpoint: str, task: str, transport: TransportConfig | None = None, *,
                   batch_size: int = 64, region: str | None = None) -> Predictor:
    """Build the adapter an endpoint string names.

    ``http://...`` / ``https://...`` -> HttpPredictor; ``sagemaker:NAME`` -> SageMakerPredictor
    (``region``: default from the usual AWS settings); a model directory or a ``.tar.gz``
    model package -> InProcessPredictor (``batch_size`` images per forward pass at most; the
    tarball is extracted to a temporary directory removed by ``close()``). ``transport``
    applies to remote endpoints; for detection it asks for every score
    (DETECTION_CUSTOM_ATTRIBUTES) unless it sets its own custom attributes.
    """
    check_task(task)
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ConfigError(f"endpoint must be a URL, sagemaker:NAME or a model path, got {endpoint!r}",
                          field="endpoint")
    endpoint = endpoint.strip()
    given = transport
    transport = transport or TransportConfig()
    if task == "detection" and transport.custom_attributes is None:
        # A masked image's weaker detections still count: ask the endpoint for every score.
        transport = replace(transport, custom_attributes=DETECTION_CUSTOM_ATTRIBUTES)
    if endpoint.startswith(("http://", "https://")):
        return HttpPredictor(endpoint, task, transport)
    if endpoint.startswith(SAGEMAKER_PREFIX):
        return SageMakerPredictor(endpoint[len(SAGEMAKER_PREFIX):], task, transport, region=region)
    path = Path(endpoint).expanduser()
    if is_model_path(path):
        if given is not None:
            logger.debug("in-process model: the transport settings do not apply")
        return InProcessPredictor(path, task, batch_size=batch_size)
    raise ConfigError(
        f"endpoint {redact_url(endpoint)!r} is neither an http(s):// URL, sagemaker:ENDPOINT_NAME, a model "
        "directory nor a model .tar.gz file", field="endpoint")


def build_predictor(endpoints: Sequence[str], task: str, transport: TransportConfig | None = None):
    """One adapter per endpoint (``make_predictor``); several are wrapped in a least-outstanding-work router."""
    predictors = []
    try:
        for endpoint in endpoints:
            predictors.append(make_predictor(endpoint, task, transport))
    except BaseException:
        for predictor in predictors:
            predictor.close()
        raise
    if not predictors:
        raise ConfigError("give at least one endpoint", field="endpoint")
    return predictors[0] if len(predictors) == 1 else MultiPredictor(predictors)
