"""Read a SageMaker Clarify analysis configuration (analysis_config.json) into explain settings."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from .config import BUILTIN_BASELINES
from .errors import ConfigError

__all__ = ["read_clarify_config", "parse_clarify_config", "MODEL_TYPES"]

logger = logging.getLogger(__name__)

MODEL_TYPES = {"IMAGE_CLASSIFICATION": "classification", "OBJECT_DETECTION": "detection"}
CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-npy")
ACCEPT_TYPES = ("application/json", "application/x-npy")
_IMAGE_CONFIG_KEYS = {
    "model_type", "num_segments", "segment_compactness", "feature_extraction_method",
    "max_objects", "iou_threshold", "context", "debug",
}
_IGNORED_SHAP_KEYS = ("agg_method", "save_local_shap_values")


def _require_mapping(value, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _integer(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    return value


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return float(value)


def _baseline(value, where: str, base_dir: Path | None) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be an image path or one of {', '.join(BUILTIN_BASELINES)}, got {value!r}")
    if value.startswith("s3://"):
        raise ConfigError(
            f"{where} is an S3 URI ({value}); download it first (aws s3 cp {value} .) "
            "and pass the local file with --baseline")
    if value in BUILTIN_BASELINES or Path(value).is_absolute() or base_dir is None:
        return value
    return str(base_dir / value)


def _label_headers(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise ConfigError(f"{where} must be a non-empty list of class names, got {value!r}")
    return tuple(value)


def parse_clarify_config(analysis_config: Mapping, base_dir: str | Path | None = None) -> dict:
    """Map a Clarify analysis configuration to explain settings named as the CLI names them.

    Returns a dict with only the keys the configuration sets, among: task, num_samples,
    num_segments, segment_compactness, baseline, max_objects, iou_threshold, context,
    probability_threshold, label_headers (tuple), seed (ExplainConfig fields), content_type,
    accept (transport options) and endpoint (``sagemaker:NAME`` from predictor.endpoint_name).
    A relative baseline path is resolved against ``base_dir``. Raises ConfigError naming the
    JSON path of the first unusable value.
    """
    base = Path(base_dir) if base_dir is not None else None
    root = _require_mapping(analysis_config, "analysis config")
    dataset_type = root.get("dataset_type")
    if dataset_type is not None and dataset_type != "application/x-image":
        raise ConfigError(
            f"dataset_type must be 'application/x-image' for image explanations, got {dataset_type!r}")
    methods = _require_mapping(root.get("methods", {}), "methods")
    if "shap" not in methods:
        raise ConfigError("analysis config has no methods.shap section; only SHAP explanations are supported")
    shap = _require_mapping(methods["shap"], "methods.shap")
    if "image_config" not in shap:
        raise ConfigError(
            "methods.shap.image_config is missing; only image models (IMAGE_CLASSIFICATION, "
            "OBJECT_DETECTION) are supported")
    image_config = _require_mapping(shap["image_config"], "methods.shap.image_config")

    settings: dict = {}
    where = "methods.shap.image_config"
    unknown = sorted(set(image_config) - _IMAGE_CONFIG_KEYS)
    if "overlap" in unknown:
        raise ConfigError(f"{where}.overlap is the old name of iou_threshold; rename it to iou_threshold")
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_IMAGE_CONFIG_KEYS))}")
    model_type = image_config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ConfigError(
            f"{where}.model_type must be IMAGE_CLASSIFICATION or OBJECT_DETECTION, got {model_type!r}")
    settings["task"] = MODEL_TYPES[model_type]
    method = image_config.get("feature_extraction_method")
    if method is not None and method != "segmentation":
        raise ConfigError(f"{where}.feature_extraction_method must be 'segmentation', got {method!r}")
    for key in ("num_segments", "max_objects"):
        if key in image_config:
            settings[key] = _integer(image_config[key], f"{where}.{key}")
    for key in ("segment_compactness", "iou_threshold", "context"):
        if key in image_config:
            settings[key] = _number(image_config[key], f"{where}.{key}")
    if "debug" in image_config:
        logger.warning("ignoring %s.debug (an undocumented Clarify option)", where)

    if "features_to_explain" in shap:
        raise ConfigError("methods.shap.features_to_explain is not supported for images")
    if shap.get("num_clusters") is not None:
        raise ConfigError("methods.shap.num_clusters is for tabular data; use methods.shap.baseline for images")
    if shap.get("use_logit"):
        raise ConfigError("methods.shap.use_logit is not supported for images; remove it or set it to false")
    for key in _IGNORED_SHAP_KEYS:
        if key in shap:
            logger.info("ignoring methods.shap.%s (it has no effect on image explanations)", key)
    if "num_samples" in shap:
        settings["num_samples"] = _integer(shap["num_samples"], "methods.shap.num_samples")
    if "seed" in shap:
        settings["seed"] = _integer(shap["seed"], "methods.shap.seed")
    if shap.get("baseline") is not None:
        settings["baseline"] = _baseline(shap["baseline"], "methods.shap.baseline", base)

    if "probability_threshold" in root:
        settings["probability_threshold"] = _number(root["probability_threshold"], "probability_threshold")
    predictor = _require_mapping(root.get("predictor", {}), "predictor")
    for where_headers, container in (("predictor.label_headers", predictor), ("label_headers", root)):
        if container.get("label_headers") is not None:
            settings["label_headers"] = _label_headers(container["label_headers"], where_headers)
            break
    content_type = predictor.get("content_type")
    if content_type is not None:
        if content_type not in CONTENT_TYPES:
            raise ConfigError(
                f"predictor.content_type {content_type!r} is not supported; use one of {', '.join(CONTENT_TYPES)}")
        settings["content_type"] = content_type
    accept = predictor.get("accept_type")
    if accept is not None:
        if accept not in ACCEPT_TYPES:
            raise ConfigError(
                f"predictor.accept_type {accept!r} is not supported for images; use one of {', '.join(ACCEPT_TYPES)}")
        settings["accept"] = accept
    endpoint_name = predictor.get("endpoint_name")
    if endpoint_name is not None:
        if not isinstance(endpoint_name, str) or not endpoint_name:
            raise ConfigError(f"predictor.endpoint_name must be a SageMaker endpoint name, got {endpoint_name!r}")
        settings["endpoint"] = f"sagemaker:{endpoint_name}"
    elif predictor.get("model_name"):
        logger.warning("predictor.model_name: shadow endpoints are not created here; pass --endpoint")
    return settings


def read_clarify_config(path: str | Path) -> dict:
    """Read analysis_config.json at ``path``; see parse_clarify_config for the returned dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read Clarify config {str(path)!r}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"Clarify config {str(path)!r} is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}") from None
    return parse_clarify_config(data, base_dir=path.parent)
