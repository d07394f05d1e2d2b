"""Kernel SHAP explanations over superpixels for image detection and classification endpoints."""

from . import errors
from .config import ExplainConfig
from .errors import ConfigError, EndpointUnavailableError, ExplainError, PredictorError
from .explainer import Explanation, explain_image, explain_images
from .predictors import HttpPredictor, InProcessPredictor, SageMakerPredictor, make_predictor
from .routing import MultiPredictor
from .runner import RunOptions, merge_outputs, run_explanations
from .sharding import Shard
from .sources import ImageSource, collect_sources

__all__ = [
    "ConfigError",
    "EndpointUnavailableError",
    "ExplainConfig",
    "ExplainError",
    "Explanation",
    "HttpPredictor",
    "ImageSource",
    "InProcessPredictor",
    "MultiPredictor",
    "PredictorError",
    "RunOptions",
    "SageMakerPredictor",
    "Shard",
    "collect_sources",
    "errors",
    "explain_image",
    "explain_images",
    "make_predictor",
    "merge_outputs",
    "run_explanations",
]
