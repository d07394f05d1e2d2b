"""Read a SageMaker Clarify analysis configuration (analysis_config.json) into explain settings.

Every key of Clarify's analysis-config schema (``sagemaker.clarify.ANALYSIS_CONFIG_SCHEMA_V1_0``)
is either honoured, accepted and ignored (one warning names each, with the reason), or refused
with a ConfigError that names its JSON path and says what to do; ``CLARIFY_KEYS`` lists which.
When the SageMaker SDK is installed (the ``aws`` extra) the file is first checked against that
schema, as Clarify's own processing job checks it; otherwise one warning says the check was
skipped. Clarify's defaults are ``CLARIFY_DEFAULTS``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .clarify_schema import check_against_sdk_schema
from .config import BUILTIN_BASELINES, DETECTION_ONLY_SETTINGS, SEGMENTATION_METHODS, ExplainConfig
from .errors import ConfigError

__all__ = [
    "ClarifySettings",
    "CONFIG_KEY_OF_OPTION",
    "CLARIFY_DEFAULTS",
    "CLARIFY_KEYS",
    "CLARIFY_SEGMENTATION",
    "MODEL_TYPES",
    "check_against_sdk_schema",
    "parse_clarify_config",
    "read_clarify_config",
]

logger = logging.getLogger(__name__)

MODEL_TYPES = {"IMAGE_CLASSIFICATION": "classification", "OBJECT_DETECTION": "detection"}
CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-npy")
ACCEPT_TYPES = ("application/json",)
# Keys whose values this reader narrows further than Clarify's schema: a value the schema
# refuses there is refused naming only what works for images.
_IMAGE_VALUES = {"dataset_type": ("application/x-image",), "predictor.content_type": CONTENT_TYPES,
                 "predictor.accept_type": ACCEPT_TYPES}
# Clarify segments with plain SLIC (scikit-image's slic, n_segments and compactness only).
CLARIFY_SEGMENTATION = "slic" if "slic" in SEGMENTATION_METHODS else "slico"
# Clarify's defaults for image explanations (ImageConfig / SHAPConfig / analysis-config docs),
# named as the CLI names them; --clarify-compatible pins every one.
CLARIFY_DEFAULTS = {
    "segmentation": CLARIFY_SEGMENTATION,
    # Clarify's segments ignore the targets and are never refined (clearsight's --focus and
    # --refine-fraction have no Clarify key: CLI and API settings only).
    "focus": "none",
    "refine_fraction": 0.0,
    "num_segments": 20,
    "segment_compactness": 5.0,
    "baseline": "noise",
    "max_objects": 3,
    "iou_threshold": 0.5,
    "context": 1.0,
    "probability_threshold": 0.5,
    "content_type": "image/jpeg",
    "accept": "application/json",
}

_TABULAR = "applies to tabular, text or time-series data, or to bias analyses, not to image explanations; remove it"
# Every key of the schema (and the legacy top-level label_headers), by what happens to it.
CLARIFY_KEYS = {
    "honoured": (
        "version", "dataset_type", "dataset_uri", "probability_threshold", "label_headers", "methods",
        "methods.shap", "methods.shap.num_samples", "methods.shap.seed", "methods.shap.baseline",
        "methods.shap.use_logit (false)", "methods.shap.save_local_shap_values (true)", "methods.shap.image_config",
        "methods.shap.image_config.model_type", "methods.shap.image_config.num_segments",
        "methods.shap.image_config.segment_compactness", "methods.shap.image_config.feature_extraction_method",
        "methods.shap.image_config.max_objects", "methods.shap.image_config.iou_threshold",
        "methods.shap.image_config.context", "methods.report", "methods.report.name (report)",
        "predictor", "predictor.endpoint_name", "predictor.content_type", "predictor.accept_type", "predictor.probability",
        "predictor.label_headers", "predictor.custom_attributes", "predictor.target_model",
    ),
    "ignored": (
        "headers", "label", "methods.shap.agg_method", "methods.shap.save_local_shap_values (false)",
        "methods.shap.image_config.debug", "methods.report.title", "methods.report.name (other)",
        "predictor.label (with probability)", "predictor.model_name", "predictor.endpoint_name_prefix",
        "predictor.instance_type", "predictor.initial_instance_count", "predictor.accelerator_type",
        "probability_threshold (IMAGE_CLASSIFICATION)", "methods.shap.image_config.max_objects (IMAGE_CLASSIFICATION)",
        "methods.shap.image_config.iou_threshold (IMAGE_CLASSIFICATION)",
        "methods.shap.image_config.context (IMAGE_CLASSIFICATION)",
    ),
    "refused": (
        "features", "predicted_label", "label_values_or_threshold", "segment_config", "facet", "facet_dataset_uri",
        "facet_headers", "predicted_label_dataset_uri", "predicted_label_headers", "excluded_columns",
        "joinsource_name_or_index", "group_variable", "time_series_data_config", "methods.pre_training_bias",
        "methods.post_training_bias", "methods.pdp", "methods.asymmetric_shapley_value",
        "methods.shap.num_clusters", "methods.shap.use_logit (true)", "methods.shap.text_config",
        "methods.shap.features_to_explain", "predictor.label (alone)", "predictor.content_template",
        "predictor.record_template", "predictor.time_series_predictor_config",
    ),
}

_TOP_LEVEL_KEYS = {"version", "dataset_type", "dataset_uri", "probability_threshold", "label_headers", "methods", "predictor",
                   "headers", "label"}
_TOP_LEVEL_REFUSED = {"features", "predicted_label", "label_values_or_threshold", "segment_config", "facet",
                      "facet_dataset_uri", "facet_headers", "predicted_label_dataset_uri",
                      "predicted_label_headers", "excluded_columns", "joinsource_name_or_index",
                      "group_variable", "time_series_data_config"}
_METHODS_REFUSED = {"pre_training_bias", "post_training_bias", "pdp", "asymmetric_shapley_value"}
_SHAP_KEYS = {"baseline", "num_clusters", "use_logit", "num_samples", "agg_method", "save_local_shap_values",
              "text_config", "image_config", "seed", "features_to_explain"}
_IMAGE_CONFIG_KEYS = {
    "model_type", "num_segments", "segment_compactness", "feature_extraction_method",
    "max_objects", "iou_threshold", "context", "debug",
}
_PREDICTOR_KEYS = {"endpoint_name", "endpoint_name_prefix", "model_name", "target_model", "instance_type",
                   "initial_instance_count", "accelerator_type", "content_type", "accept_type", "label",
                   "probability", "label_headers", "content_template", "record_template", "custom_attributes",
                   "time_series_predictor_config"}
_SHADOW_ENDPOINT_KEYS = ("model_name", "endpoint_name_prefix", "instance_type", "initial_instance_count",
                         "accelerator_type")


# where each option of ClarifySettings.options comes from in the file: an error about a value the file gave
# names the key the user wrote, not only the command-line option it became
_IMAGE = "methods.shap.image_config"
CONFIG_KEY_OF_OPTION = {
    "task": f"{_IMAGE}.model_type", "num_samples": "methods.shap.num_samples", "seed": "methods.shap.seed",
    "num_segments": f"{_IMAGE}.num_segments", "segment_compactness": f"{_IMAGE}.segment_compactness",
    "max_objects": f"{_IMAGE}.max_objects", "iou_threshold": f"{_IMAGE}.iou_threshold",
    "context": f"{_IMAGE}.context", "baseline": "methods.shap.baseline",
    "probability_threshold": "probability_threshold", "label_headers": "predictor.label_headers",
    "content_type": "predictor.content_type", "accept": "predictor.accept_type",
    "probability": "predictor.probability", "custom_attributes": "predictor.custom_attributes",
    "target_model": "predictor.target_model", "endpoint": "predictor.endpoint_name",
}


@dataclass(frozen=True)
class ClarifySettings:
    """What a Clarify analysis configuration asks for.

    options: explain settings named as the CLI names its options (only those the file sets):
    task, num_samples, num_segments, segment_compactness, baseline, max_objects,
    iou_threshold, context, probability_threshold, label_headers (tuple), seed; content_type,
    accept, probability, custom_attributes, target_model; endpoint (``("sagemaker:NAME",)``
    from predictor.endpoint_name). dataset_uri: where the images are (None: not set).
    ignored: JSON path -> why it has no effect, for keys accepted but ignored.
    schema_check: one line saying whether the file passed Clarify's schema or was not checked
    ('' when no check was asked for).
    """

    options: dict
    dataset_uri: str | None = None
    ignored: dict = field(default_factory=dict)
    schema_check: str = ""

    def log_notes(self, log: logging.Logger = logger) -> None:
        """Log the schema check (INFO when it passed, WARNING when skipped) and one WARNING naming ignored keys."""
        if self.schema_check:
            log.log(logging.INFO if self.schema_check.startswith("passes") else logging.WARNING,
                    "Clarify config %s", self.schema_check)
        if self.ignored:
            log.warning("Clarify config keys accepted but ignored: %s",
                        "; ".join(f"{key} ({reason})" for key, reason in self.ignored.items()))


def _lower(value):
    """A media type as Clarify's schema reads it (``Use(str.lower)``): strings lower-cased."""
    return value.lower() if isinstance(value, str) else value


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


def _text(value, where: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string such as {example!r}, got {value!r}")
    return value


def _check_keys(container: Mapping, where: str, allowed: set[str]) -> None:
    unknown = sorted(set(container) - allowed)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _baseline(value, where: str, base_dir: Path | None) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be an image path, an s3:// URI of an image or one of "
                          f"{', '.join(BUILTIN_BASELINES)}, got {value!r}")
    if value.startswith("s3://"):  # read when the run starts, as the images are (explain.sources)
        bucket, _, key = value[len("s3://"):].partition("/")
        if not bucket or not key or key.endswith("/"):
            raise ConfigError(f"{where} must name one S3 object, s3://BUCKET/KEY, got {value!r}")
        return value
    if value in BUILTIN_BASELINES or Path(value).is_absolute() or base_dir is None:
        return value
    return str(base_dir / value)


def _dataset_uri(value, base_dir: Path | None) -> str:
    value = _text(value, "dataset_uri", "s3://bucket/images/")
    if "://" in value and not value.startswith("s3://"):
        raise ConfigError(f"dataset_uri must be an s3:// URI, a local folder or a manifest file, got {value!r}")
    if value.startswith("s3://") or Path(value).is_absolute() or base_dir is None:
        return value
    return str(base_dir / value)


def _label_headers(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(
            (isinstance(item, str) and item) or (isinstance(item, int) and not isinstance(item, bool))
            for item in value):
        raise ConfigError(f"{where} must be a non-empty list of class names, got {value!r}")
    return tuple(str(item) for item in value)


def _parse_image_config(image_config: Mapping, settings: dict, ignored: dict) -> None:
    where = "methods.shap.image_config"
    unknown = set(image_config) - _IMAGE_CONFIG_KEYS
    if "overlap" in unknown:
        raise ConfigError(f"{where}.overlap is the old name of iou_threshold; rename it to iou_threshold")
    _check_keys(image_config, where, _IMAGE_CONFIG_KEYS)
    model_type = image_config.get("model_type")
    if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
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
        ignored[f"{where}.debug"] = "an undocumented Clarify option"


def _parse_shap(shap: Mapping, base: Path | None, settings: dict, ignored: dict) -> None:
    _check_keys(shap, "methods.shap", _SHAP_KEYS)
    if "image_config" not in shap:
        raise ConfigError(
            "methods.shap.image_config is missing; only image models (IMAGE_CLASSIFICATION, "
            "OBJECT_DETECTION) are supported")
    if "features_to_explain" in shap:
        raise ConfigError("methods.shap.features_to_explain is not supported for images")
    if "text_config" in shap:
        raise ConfigError("methods.shap.text_config is for text models; image explanations use image_config")
    if shap.get("num_clusters") is not None:
        raise ConfigError("methods.shap.num_clusters is for tabular data; use methods.shap.baseline for images")
    if shap.get("use_logit"):
        raise ConfigError("methods.shap.use_logit is not supported for images; remove it or set it to false")
    _parse_image_config(_require_mapping(shap["image_config"], "methods.shap.image_config"), settings, ignored)
    if "agg_method" in shap:
        ignored["methods.shap.agg_method"] = "segments differ per image, so there is no global aggregate"
    if shap.get("save_local_shap_values") is False:
        ignored["methods.shap.save_local_shap_values"] = "local values are always saved (<stem>_shap.npz)"
    if "num_samples" in shap:
        settings["num_samples"] = _integer(shap["num_samples"], "methods.shap.num_samples")
    if "seed" in shap:
        settings["seed"] = _integer(shap["seed"], "methods.shap.seed")
    if shap.get("baseline") is not None:
        settings["baseline"] = _baseline(shap["baseline"], "methods.shap.baseline", base)


def _parse_predictor(predictor: Mapping, settings: dict, ignored: dict) -> None:
    _check_keys(predictor, "predictor", _PREDICTOR_KEYS)
    for key in ("content_template", "record_template", "time_series_predictor_config"):
        if key in predictor:
            raise ConfigError(f"predictor.{key} {_TABULAR}")
    if predictor.get("label_headers") is not None:
        settings["label_headers"] = _label_headers(predictor["label_headers"], "predictor.label_headers")
    content_type = _lower(predictor.get("content_type"))  # Clarify's schema lower-cases these
    if content_type is not None:
        if content_type not in CONTENT_TYPES:
            raise ConfigError(
                f"predictor.content_type {content_type!r} is not supported; use one of {', '.join(CONTENT_TYPES)}")
        settings["content_type"] = content_type
    accept = _lower(predictor.get("accept_type"))
    if accept is not None:
        if accept not in ACCEPT_TYPES:
            raise ConfigError(
                f"predictor.accept_type {accept!r} is not supported for images; use application/json "
                "(the command line's --accept also takes application/x-npy)")
        settings["accept"] = accept
    for key in ("probability", "label"):
        if isinstance(predictor.get(key), int):
            raise ConfigError(f"predictor.{key} {predictor[key]!r} is an index into a CSV answer; image answers "
                              f"are JSON: give a JMESPath expression such as 'prediction'")
    if predictor.get("probability") is not None:
        settings["probability"] = _text(predictor["probability"], "predictor.probability", "prediction")
    if predictor.get("label") is not None:
        if "probability" not in settings:
            raise ConfigError(
                "predictor.label locates predicted labels, but Kernel SHAP needs every class's score: set "
                "predictor.probability to the JMESPath of the scores (and label_headers to their names)")
        ignored["predictor.label"] = ("the scores come from predictor.probability, in the order of "
                                      "label_headers")
    if predictor.get("custom_attributes") is not None:
        settings["custom_attributes"] = _text(predictor["custom_attributes"], "predictor.custom_attributes",
                                              "score_threshold=0")
    if predictor.get("target_model") is not None:
        settings["target_model"] = _text(predictor["target_model"], "predictor.target_model", "model-a.tar.gz")
    endpoint_name = predictor.get("endpoint_name")
    if endpoint_name is not None:
        if not isinstance(endpoint_name, str) or not endpoint_name:
            raise ConfigError(f"predictor.endpoint_name must be a SageMaker endpoint name, got {endpoint_name!r}")
        settings["endpoint"] = (f"sagemaker:{endpoint_name}",)
    for key in _SHADOW_ENDPOINT_KEYS:
        if key in predictor:
            ignored[f"predictor.{key}"] = ("no shadow endpoint is created here: serve the model "
                                           "(clearsight deploy serve / clearsight deploy sagemaker up) and give "
                                           "predictor.endpoint_name or --endpoint")


def parse_clarify_config(analysis_config: Mapping, base_dir: str | Path | None = None) -> ClarifySettings:
    """Map a Clarify analysis configuration to explain settings (see ClarifySettings).

    Relative local paths (baseline, dataset_uri) are resolved against ``base_dir``. Raises
    ConfigError naming the JSON path of the first unusable value.
    """
    base = Path(base_dir) if base_dir is not None else None
    root = _require_mapping(analysis_config, "analysis config")
    for key in sorted(_TOP_LEVEL_REFUSED & set(root)):
        raise ConfigError(f"{key} {_TABULAR}")
    _check_keys(root, "analysis config", _TOP_LEVEL_KEYS)
    dataset_type = _lower(root.get("dataset_type"))
    if dataset_type is not None and dataset_type != "application/x-image":
        raise ConfigError(
            f"dataset_type must be 'application/x-image' for image explanations, got {dataset_type!r}")
    methods = _require_mapping(root.get("methods", {}), "methods")
    for key in sorted(_METHODS_REFUSED & set(methods)):
        raise ConfigError(f"methods.{key} is not an image explanation; only methods.shap (and methods.report) "
                          "run here: remove it")
    _check_keys(methods, "methods", {"shap", "report"})
    if "shap" not in methods:
        raise ConfigError("analysis config has no methods.shap section; only SHAP explanations are supported")

    settings: dict = {}
    ignored: dict[str, str] = {}
    _parse_shap(_require_mapping(methods["shap"], "methods.shap"), base, settings, ignored)
    report = _require_mapping(methods.get("report", {}), "methods.report")
    if report.get("name", "report") != "report":
        ignored["methods.report.name"] = "the report is always report.html"
    if "title" in report:
        ignored["methods.report.title"] = "the report's title is fixed"
    for key in ("headers", "label"):
        if key in root:
            ignored[key] = "dataset columns: images have none"
    dataset_uri = _dataset_uri(root["dataset_uri"], base) if "dataset_uri" in root else None
    if "probability_threshold" in root:
        settings["probability_threshold"] = _number(root["probability_threshold"], "probability_threshold")
    if root.get("label_headers") is not None:
        settings["label_headers"] = _label_headers(root["label_headers"], "label_headers")
    _parse_predictor(_require_mapping(root.get("predictor", {}), "predictor"), settings, ignored)
    if settings.get("task") == "classification":  # detection's keys: named as ignored, not applied
        for name in DETECTION_ONLY_SETTINGS:
            if name in settings:
                del settings[name]
                ignored[_SETTING_KEYS[name]] = "object detection only: model_type is IMAGE_CLASSIFICATION"
    _check_ranges(settings)
    return ClarifySettings(options=settings, dataset_uri=dataset_uri, ignored=ignored)


# the file's key of each explain setting whose range ExplainConfig checks
_SETTING_KEYS = {
    "num_samples": "methods.shap.num_samples", "seed": "methods.shap.seed",
    "num_segments": "methods.shap.image_config.num_segments",
    "max_objects": "methods.shap.image_config.max_objects",
    "segment_compactness": "methods.shap.image_config.segment_compactness",
    "iou_threshold": "methods.shap.image_config.iou_threshold",
    "context": "methods.shap.image_config.context", "probability_threshold": "probability_threshold",
}


def _check_ranges(settings: dict) -> None:
    """The explain settings' ranges, checked here so that a value out of range is refused by its
    key in the file (as Clarify would name it), not by the command-line option it becomes."""
    trial = {name: settings[name] for name in _SETTING_KEYS if name in settings}
    try:
        ExplainConfig(task=settings.get("task", "detection"), **trial)
    except ConfigError as error:
        if error.field not in _SETTING_KEYS:
            raise
        raise ConfigError(f"{_SETTING_KEYS[error.field]}: {error}") from None


def read_clarify_config(path: str | Path, validate: bool = True) -> ClarifySettings:
    """Read analysis_config.json at ``path`` (see parse_clarify_config).

    With ``validate`` the file is first checked against the SageMaker SDK's schema when the
    SDK is installed; ``schema_check`` says which happened.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not JSON's
    except OSError as error:
        raise ConfigError(f"cannot read Clarify config {str(path)!r}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"Clarify config {str(path)!r} is not UTF-8 text (byte {error.start}: "
                          f"{error.reason}); save it as UTF-8 JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"Clarify config {str(path)!r} is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}") from None
    except RecursionError:
        raise ConfigError(f"Clarify config {str(path)!r} nests JSON too deeply to read; an analysis "
                          "configuration is a few levels deep") from None
    _require_mapping(data, "analysis config")
    schema_check = ""
    if validate:
        version = check_against_sdk_schema(data, _IMAGE_VALUES)
        schema_check = (f"passes the analysis-config schema of SageMaker SDK {version}" if version else
                        "not checked against Clarify's schema: the SageMaker SDK is not installed "
                        "(pip install 'clearsight[aws]' adds it; in a clearsight checkout '.[aws]')")
    settings = parse_clarify_config(data, base_dir=path.parent)
    return ClarifySettings(settings.options, settings.dataset_uri, settings.ignored, schema_check)
