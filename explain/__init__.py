"""Kernel SHAP explanations over superpixels for image detection and classification endpoints.

Start with ``Explainer`` (``explain.api``): ``Explainer(model, task=..., **settings)(image)``
returns an ``Explanation`` with ``plot()``, ``save()``/``Explanation.load()`` and ``to_shap()``.

Layers, each importing only those below it (and ``serving.contract``, the shared wire contract):

1. settings and errors: ``config``, ``errors``;
2. the estimator, pure numpy: ``segmentation``, ``baselines``, ``masking``, ``kernel_shap``,
   ``detection``, ``metrics``;
3. predictors: ``predictors`` (HTTP, SageMaker runtime, in process behind one engine);
4. one image: ``model_calls``, ``feature_masks``, ``explainer`` (explain_image, Explanation),
   ``npz``, ``shap_export``, ``images``, ``render``, ``report``;
5. many images: ``sources``, ``manifest``, ``sharding``, ``runner`` (run_explanations, the one pipeline);
6. front ends: ``api`` (Explainer), ``workers``, ``cli``, ``processing_worker``, ``clarify_config``
   (a Clarify analysis_config.json as settings), ``clarify_dataset`` (its dataset_uri as image sources).
"""

from . import errors
from .api import Explainer
from .config import ExplainConfig
from .errors import (
    ConfigError,
    EndpointAccessError,
    EndpointUnavailableError,
    ExplainError,
    PredictorError,
    UnknownSettingError,
)
from .explainer import Explanation, explain_image
from .images import load_image
from .predictors import (
    CallablePredictor,
    HttpPredictor,
    InProcessPredictor,
    MultiPredictor,
    SageMakerPredictor,
    TransportConfig,
    build_predictor,
    make_predictor,
)
from .runner import RunOptions, merge_outputs, run_explanations
from .sharding import Shard
from .sources import ImageSource, collect_sources

__all__ = [
    "CallablePredictor",
    "ConfigError",
    "EndpointAccessError",
    "EndpointUnavailableError",
    "ExplainConfig",
    "ExplainError",
    "Explainer",
    "Explanation",
    "HttpPredictor",
    "ImageSource",
    "InProcessPredictor",
    "MultiPredictor",
    "PredictorError",
    "RunOptions",
    "SageMakerPredictor",
    "Shard",
    "TransportConfig",
    "UnknownSettingError",
    "build_predictor",
    "collect_sources",
    "errors",
    "explain_image",
    "load_image",
    "make_predictor",
    "merge_outputs",
    "run_explanations",
]
