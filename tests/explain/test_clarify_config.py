"""Clarify analysis configurations: what they map to, and the messages for unusable ones."""

from __future__ import annotations

import copy
import json

import pytest

from explain.clarify_config import parse_clarify_config, read_clarify_config
from explain.config import ExplainConfig
from explain.errors import ConfigError

# The object-detection notebook's configuration, as the SDK writes it.
DETECTION_CONFIG = {
    "dataset_type": "application/x-image",
    "probability_threshold": 0.8,
    "methods": {
        "shap": {
            "num_samples": 500,
            "baseline": "noise_rgb.png",
            "seed": 7,
            "use_logit": False,
            "save_local_shap_values": True,
            "image_config": {
                "model_type": "OBJECT_DETECTION",
                "num_segments": 20,
                "segment_compactness": 5,
                "feature_extraction_method": "segmentation",
                "max_objects": 5,
                "iou_threshold": 0.5,
                "context": 1.0,
            },
        },
        "report": {"name": "report", "title": "Analysis Report"},
    },
    "predictor": {
        "endpoint_name": "gluoncv-yolo3",
        "content_type": "application/x-npy",
        "accept_type": "application/json",
        "label_headers": ["circle", "square", "triangle", "star"],
    },
}


def with_changes(path: str, value, base=DETECTION_CONFIG) -> dict:
    """A copy of ``base`` with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    config = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return config


def test_detection_config_maps_to_explain_settings(tmp_path):
    settings = parse_clarify_config(DETECTION_CONFIG, base_dir=tmp_path)
    assert settings == {
        "task": "detection", "num_samples": 500, "seed": 7,
        "baseline": str(tmp_path / "noise_rgb.png"),
        "num_segments": 20, "segment_compactness": 5.0, "max_objects": 5,
        "iou_threshold": 0.5, "context": 1.0, "probability_threshold": 0.8,
        "label_headers": ("circle", "square", "triangle", "star"),
        "content_type": "application/x-npy", "accept": "application/json",
        "endpoint": "sagemaker:gluoncv-yolo3",
    }


def test_mapped_settings_build_an_explain_config(tmp_path):
    (tmp_path / "noise_rgb.png").write_bytes(b"")
    settings = parse_clarify_config(DETECTION_CONFIG, base_dir=tmp_path)
    fields = {key: value for key, value in settings.items()
              if key not in ("content_type", "accept", "endpoint")}
    config = ExplainConfig(**fields)
    assert config.max_objects == 5 and config.probability_threshold == 0.8


def test_minimal_classification_config_sets_only_what_it_names():
    config = {"methods": {"shap": {"image_config": {"model_type": "IMAGE_CLASSIFICATION"}}},
              "label_headers": ["cat", "dog"]}
    assert parse_clarify_config(config) == {"task": "classification", "label_headers": ("cat", "dog")}


@pytest.mark.parametrize("baseline", ["noise", "black", "/abs/noise.png"])
def test_builtin_and_absolute_baselines_are_kept(baseline, tmp_path):
    settings = parse_clarify_config(with_changes("methods.shap.baseline", baseline), base_dir=tmp_path)
    assert settings["baseline"] == baseline


def test_read_clarify_config_resolves_the_baseline_next_to_the_file(tmp_path):
    path = tmp_path / "analysis_config.json"
    path.write_text(json.dumps(DETECTION_CONFIG))
    assert read_clarify_config(path)["baseline"] == str(tmp_path / "noise_rgb.png")


BAD_CONFIGS = [
    (with_changes("methods.shap.image_config.model_type", "SEGMENTATION"),
     "methods.shap.image_config.model_type must be IMAGE_CLASSIFICATION or OBJECT_DETECTION, got 'SEGMENTATION'"),
    (with_changes("methods.shap.image_config.model_type", ...),
     "methods.shap.image_config.model_type must be IMAGE_CLASSIFICATION or OBJECT_DETECTION, got None"),
    (with_changes("dataset_type", "text/csv"),
     "dataset_type must be 'application/x-image' for image explanations, got 'text/csv'"),
    (with_changes("methods.shap", ...),
     "analysis config has no methods.shap section; only SHAP explanations are supported"),
    (with_changes("methods.shap.image_config", ...),
     "methods.shap.image_config is missing; only image models"),
    (with_changes("methods.shap.image_config.overlap", 0.5),
     "methods.shap.image_config.overlap is the old name of iou_threshold; rename it to iou_threshold"),
    (with_changes("methods.shap.image_config.num_segmnts", 20),
     "methods.shap.image_config has unknown key\\(s\\) num_segmnts; allowed: context, debug"),
    (with_changes("methods.shap.image_config.feature_extraction_method", "patches"),
     "methods.shap.image_config.feature_extraction_method must be 'segmentation', got 'patches'"),
    (with_changes("methods.shap.image_config.num_segments", "20"),
     "methods.shap.image_config.num_segments must be an integer, got '20'"),
    (with_changes("methods.shap.image_config.max_objects", 2.5),
     "methods.shap.image_config.max_objects must be an integer, got 2.5"),
    (with_changes("methods.shap.image_config.iou_threshold", True),
     "methods.shap.image_config.iou_threshold must be a number, got True"),
    (with_changes("methods.shap.num_samples", "500"),
     "methods.shap.num_samples must be an integer, got '500'"),
    (with_changes("methods.shap.baseline", "s3://bucket/noise_rgb.png"),
     "methods.shap.baseline is an S3 URI \\(s3://bucket/noise_rgb.png\\); download it first"),
    (with_changes("methods.shap.baseline", [0, 0, 0]),
     "methods.shap.baseline must be an image path or one of noise, mean, blur, black, got \\[0, 0, 0\\]"),
    (with_changes("methods.shap.use_logit", True),
     "methods.shap.use_logit is not supported for images"),
    (with_changes("methods.shap.num_clusters", 3),
     "methods.shap.num_clusters is for tabular data"),
    (with_changes("methods.shap.features_to_explain", ["a"]),
     "methods.shap.features_to_explain is not supported for images"),
    (with_changes("probability_threshold", "high"),
     "probability_threshold must be a number, got 'high'"),
    (with_changes("predictor.content_type", "image/jpg"),
     "predictor.content_type 'image/jpg' is not supported; use one of image/jpeg, image/png, application/x-npy"),
    (with_changes("predictor.content_type", "application/x-image"),
     "predictor.content_type 'application/x-image' is not supported"),
    (with_changes("predictor.accept_type", "text/csv"),
     "predictor.accept_type 'text/csv' is not supported for images; use one of application/json, application/x-npy"),
    (with_changes("predictor.label_headers", "circle,square"),
     "predictor.label_headers must be a non-empty list of class names, got 'circle,square'"),
    (with_changes("predictor.endpoint_name", ""),
     "predictor.endpoint_name must be a SageMaker endpoint name, got ''"),
    (with_changes("predictor", []), "predictor must be a JSON object, got list"),
    ([], "analysis config must be a JSON object, got list"),
]


@pytest.mark.parametrize("config, message", BAD_CONFIGS)
def test_bad_configs_name_the_problem(config, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        parse_clarify_config(config)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read Clarify config '.*missing.json': No such file"):
        read_clarify_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"methods": ')
    with pytest.raises(ConfigError, match="Clarify config '.*broken.json' is not valid JSON: .* line 1, column 13"):
        read_clarify_config(broken)
