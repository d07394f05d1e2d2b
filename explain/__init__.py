"""Kernel SHAP explanations over superpixels for image detection and classification endpoints."""

from . import errors
from .config import ExplainConfig
from .errors import ConfigError, ExplainError, PredictorError
from .explainer import Explanation, explain_image, explain_images
from .predictors import HttpPredictor, InProcessPredictor, SageMakerPredictor, make_predictor

__all__ = [
    "ConfigError",
    "ExplainConfig",
    "ExplainError",
    "Explanation",
    "HttpPredictor",
    "InProcessPredictor",
    "PredictorError",
    "SageMakerPredictor",
    "errors",
    "explain_image",
    "explain_images",
    "make_predictor",
]
