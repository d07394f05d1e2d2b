"""Predictors: ``predict(batch) -> list of N arrays`` over an HTTP endpoint, SageMaker or a model in process.

Layers, each importing only those below it:

- ``responses``: an answer to N images decoded into N arrays (the wire contract's, SageMaker's
  built-in Object Detection format, a JMESPath to the scores as Clarify's ``probability``);
- ``transport``: TransportConfig (how requests are made) and the Connection interface (``send``);
- ``planning`` (which images go in which request) and ``stats`` (typed counters that add up);
- ``engine``: Predictor, which plans, sends concurrently with retries, decodes and counts;
- ``http``, ``sagemaker``, ``in_process``: one Connection each, and the Predictor built on it;
- ``callables``: CallablePredictor, any ``predict(batch)`` function fed request-sized chunks;
- ``routing``: MultiPredictor, several predictors behind one, least outstanding work first;
- ``factory``: make_predictor / build_predictor from the endpoint strings a user gives, and the
  endpoint map (``NAME=URL``) that sends ``sagemaker:NAME`` to a local endpoint instead.
"""

from serving.contract import NPY

from .callables import CallablePredictor
from .engine import Predictor
from .factory import (
    DETECTION_CUSTOM_ATTRIBUTES,
    build_predictor,
    make_predictor,
    parse_endpoint_map,
    resolve_endpoint_names,
    transport_for_task,
)
from .http import TARGET_MODEL_HEADER, HttpConnection, HttpPredictor
from .in_process import InProcessConnection, InProcessPredictor
from .planning import images_per_request, plan_requests
from .responses import decode_response
from .routing import MultiPredictor
from .sagemaker import SAGEMAKER_PREFIX, SageMakerConnection, SageMakerPredictor
from .stats import PredictorStats
from .transport import Connection, TransientError, TransportConfig

__all__ = [
    "DETECTION_CUSTOM_ATTRIBUTES",
    "transport_for_task",
    "NPY",
    "SAGEMAKER_PREFIX",
    "TARGET_MODEL_HEADER",
    "CallablePredictor",
    "Connection",
    "HttpConnection",
    "HttpPredictor",
    "InProcessConnection",
    "InProcessPredictor",
    "MultiPredictor",
    "Predictor",
    "PredictorStats",
    "SageMakerConnection",
    "SageMakerPredictor",
    "TransientError",
    "TransportConfig",
    "build_predictor",
    "decode_response",
    "images_per_request",
    "make_predictor",
    "parse_endpoint_map",
    "plan_requests",
    "resolve_endpoint_names",
]
