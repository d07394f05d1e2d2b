"""From the endpoint strings a user gives to predictors: one adapter each, several behind a router."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from serving.contract import is_endpoint_name, redact_url

from ..config import EVERY_SCORE, detection_custom_attributes
from ..errors import ConfigError
from .engine import Predictor
from .http import HttpPredictor
from .in_process import InProcessPredictor, is_model_path
from .planning import check_task
from .routing import MultiPredictor
from .sagemaker import SAGEMAKER_PREFIX, SageMakerPredictor
from .transport import TransportConfig

__all__ = ["DETECTION_CUSTOM_ATTRIBUTES", "transport_for_task", "build_predictor", "make_predictor", "parse_endpoint_map",
           "resolve_endpoint_names"]

logger = logging.getLogger(__name__)

# serving/ reads these from X-Amzn-SageMaker-Custom-Attributes; other endpoints ignore them.
DETECTION_CUSTOM_ATTRIBUTES = EVERY_SCORE


def transport_for_task(transport: TransportConfig, task: str) -> TransportConfig:
    """``transport`` as a detection explanation sends it: a masked image's weaker detections
    still count, so ask the endpoint for every score (``explain.config.detection_custom_attributes``:
    DETECTION_CUSTOM_ATTRIBUTES, after the transport's own custom attributes unless they set
    score_threshold themselves). Classification: unchanged."""
    if task != "detection":
        return transport
    return replace(transport, custom_attributes=detection_custom_attributes(transport.custom_attributes))


def make_predictor(endpoint: str, task: str, transport: TransportConfig | None = None, *,
                   batch_size: int = 64, region: str | None = None) -> Predictor:
    """Build the adapter an endpoint string names.

    ``http://...`` / ``https://...`` -> HttpPredictor; ``sagemaker:NAME`` -> SageMakerPredictor
    (``region``: default from the usual AWS settings); a model directory or a ``.tar.gz``
    model package -> InProcessPredictor (``batch_size`` images per forward pass at most; the
    tarball is extracted to a temporary directory removed by ``close()``). ``transport``
    applies to remote endpoints and, but for its network settings (IN_PROCESS_NOT_APPLIED), to
    in-process models; for detection it asks for every score (DETECTION_CUSTOM_ATTRIBUTES)
    unless it sets its own custom attributes.
    """
    check_task(task)
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ConfigError(f"endpoint must be a URL, sagemaker:NAME or a model path, got {endpoint!r}",
                          field="endpoint")
    endpoint = endpoint.strip()
    _check_transport(transport)
    scheme, colon, rest = endpoint.partition("://")
    if colon and scheme.lower() in ("http", "https"):
        endpoint = f"{scheme.lower()}://{rest}"  # schemes are case-insensitive (RFC 3986): HTTP://host
    transport = transport_for_task(transport or TransportConfig(), task)
    if endpoint.startswith(("http://", "https://")):
        return HttpPredictor(endpoint, task, transport)
    if endpoint.startswith(SAGEMAKER_PREFIX):
        return SageMakerPredictor(endpoint[len(SAGEMAKER_PREFIX):], task, transport, region=region)
    path = Path(endpoint).expanduser()
    if is_model_path(path):
        return InProcessPredictor(path, task, batch_size=batch_size, transport=transport)
    raise ConfigError(
        f"endpoint {redact_url(endpoint)!r} is neither an http(s):// URL, sagemaker:ENDPOINT_NAME, a model "
        "directory nor a model .tar.gz file", field="endpoint")


def _check_transport(transport) -> None:
    if transport is not None and not isinstance(transport, TransportConfig):  # review 44: a dict's AttributeError
        raise ConfigError(f"transport must be a TransportConfig, got {type(transport).__name__}", field="transport")


def build_predictor(endpoints: Sequence[str], task: str, transport: TransportConfig | None = None):
    """One adapter per endpoint (``make_predictor``); several are wrapped in a least-outstanding-work router."""
    if isinstance(endpoints, (str, bytes, Path)):  # review 44: a string was read as one endpoint per character
        raise ConfigError(f"endpoints must be a list of endpoints, got the {type(endpoints).__name__} "
                          f"{endpoints!r}: give [{str(endpoints)!r}]", field="endpoint")
    _check_transport(transport)
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


def parse_endpoint_map(items: Iterable[str]) -> dict[str, str]:
    """``["NAME=TARGET", ...]`` -> ``{NAME: TARGET}``: where endpoint NAME is reached instead of SageMaker.

    NAME is a SageMaker endpoint name (1-63 letters, digits, hyphens); TARGET is anything
    ``--endpoint`` takes (``http://127.0.0.1:8080``, a model directory, a model.tar.gz). Raises
    ConfigError (field ``endpoint_map``) for a malformed item or a name mapped twice.
    """
    mapping: dict[str, str] = {}
    for item in items:
        name, separator, target = str(item).partition("=")
        name, target = name.strip(), target.strip()
        if not separator or not target:
            raise ConfigError(f"endpoint map entries look like NAME=URL (e.g. my-detector=http://127.0.0.1:8080), "
                              f"got {item!r}", field="endpoint_map")
        if not is_endpoint_name(name):
            raise ConfigError(f"endpoint map entry {item!r}: {name!r} is not a SageMaker endpoint name "
                              "(1-63 letters, digits or hyphens)", field="endpoint_map")
        if name in mapping and mapping[name] != target:
            raise ConfigError(f"endpoint map names {name!r} twice ({mapping[name]} and {target}); keep one",
                              field="endpoint_map")
        mapping[name] = target
    return mapping


def resolve_endpoint_names(endpoints: Sequence[str], endpoint_map: Mapping[str, str]) -> list[str]:
    """Endpoints with every ``sagemaker:NAME`` whose NAME is in ``endpoint_map`` replaced by its target.

    Names the map does not list stay ``sagemaker:NAME`` (invoked through boto3).
    """
    resolved = []
    for endpoint in endpoints:
        name = endpoint.strip()[len(SAGEMAKER_PREFIX):] if endpoint.strip().startswith(SAGEMAKER_PREFIX) else None
        if name is not None and name in endpoint_map:
            logger.info("endpoint %s resolves to %s (endpoint map)", name, redact_url(endpoint_map[name]))
            resolved.append(endpoint_map[name])
        else:
            resolved.append(endpoint)
    return resolved
