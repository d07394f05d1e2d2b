"""Clarify analysis configurations: what they map to, and the messages for unusable ones."""

from __future__ import annotations

import copy
import json
import re

import pytest

from explain.clarify_config import CLARIFY_KEYS, parse_clarify_config, read_clarify_config
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
    assert settings.options == {
        "task": "detection", "num_samples": 500, "seed": 7,
        "baseline": str(tmp_path / "noise_rgb.png"),
        "num_segments": 20, "segment_compactness": 5.0, "max_objects": 5,
        "iou_threshold": 0.5, "context": 1.0, "probability_threshold": 0.8,
        "label_headers": ("circle", "square", "triangle", "star"),
        "content_type": "application/x-npy", "accept": "application/json",
        "endpoint": ("sagemaker:gluoncv-yolo3",),
    }
    assert settings.dataset_uri is None
    assert settings.ignored == {"methods.report.title": "the report's title is fixed"}


def test_mapped_settings_build_an_explain_config(tmp_path):
    (tmp_path / "noise_rgb.png").write_bytes(b"")
    settings = parse_clarify_config(DETECTION_CONFIG, base_dir=tmp_path)
    fields = {key: value for key, value in settings.options.items()
              if key not in ("content_type", "accept", "endpoint")}
    config = ExplainConfig(**fields)
    assert config.max_objects == 5 and config.probability_threshold == 0.8


def test_minimal_classification_config_sets_only_what_it_names():
    config = {"methods": {"shap": {"image_config": {"model_type": "IMAGE_CLASSIFICATION"}}},
              "label_headers": ["cat", "dog"]}
    settings = parse_clarify_config(config)
    assert settings.options == {"task": "classification", "label_headers": ("cat", "dog")}
    assert settings.ignored == {} and settings.dataset_uri is None


@pytest.mark.parametrize("baseline", ["noise", "black", "/abs/noise.png", "s3://bucket/baselines/noise_rgb.png"])
def test_builtin_and_absolute_baselines_are_kept(baseline, tmp_path):
    settings = parse_clarify_config(with_changes("methods.shap.baseline", baseline), base_dir=tmp_path)
    assert settings.options["baseline"] == baseline


def test_read_clarify_config_resolves_the_baseline_next_to_the_file(tmp_path):
    path = tmp_path / "analysis_config.json"
    path.write_text(json.dumps(DETECTION_CONFIG))
    assert read_clarify_config(path).options["baseline"] == str(tmp_path / "noise_rgb.png")


# --------------------------------------------------------------------------------------
# Every key: honoured, accepted but ignored (named in one warning), or refused
# --------------------------------------------------------------------------------------

HONOURED = [
    ("predictor.custom_attributes", "score_threshold=0.2", "custom_attributes", "score_threshold=0.2"),
    ("predictor.target_model", "model-b.tar.gz", "target_model", "model-b.tar.gz"),
    ("predictor.probability", "prediction", "probability", "prediction"),
    ("predictor.label_headers", [0, 1, 2], "label_headers", ("0", "1", "2")),
    ("predictor.content_type", "image/png", "content_type", "image/png"),
    # Clarify's schema lower-cases media types (Use(str.lower)): so does this reader
    ("predictor.content_type", "IMAGE/PNG", "content_type", "image/png"),
    ("predictor.accept_type", "Application/JSON", "accept", "application/json"),
]


@pytest.mark.parametrize("path, value, option, expected", HONOURED)
def test_predictor_keys_become_options(path, value, option, expected):
    assert parse_clarify_config(with_changes(path, value)).options[option] == expected


@pytest.mark.parametrize("uri, expected", [
    ("s3://bucket/images/", "s3://bucket/images/"),
    ("images", "{base}/images"),
    ("/data/images.manifest", "/data/images.manifest"),
])
def test_dataset_uri_is_kept_and_local_paths_resolve_next_to_the_file(uri, expected, tmp_path):
    settings = parse_clarify_config(with_changes("dataset_uri", uri), base_dir=tmp_path)
    assert settings.dataset_uri == expected.format(base=tmp_path)
    assert "dataset_uri" not in settings.options


IGNORED = [
    ("methods.shap.agg_method", "median", "methods.shap.agg_method"),
    ("methods.shap.save_local_shap_values", False, "methods.shap.save_local_shap_values"),
    ("methods.shap.image_config.debug", {"sample_from": 0}, "methods.shap.image_config.debug"),
    ("methods.report", {"name": "my-report"}, "methods.report.name"),
    ("headers", ["image"], "headers"),
    ("label", "class", "label"),
    ("predictor.model_name", "my-model", "predictor.model_name"),
    ("predictor.instance_type", "ml.g4dn.xlarge", "predictor.instance_type"),
    ("predictor.accelerator_type", "ml.eia2.medium", "predictor.accelerator_type"),
]


@pytest.mark.parametrize("path, value, ignored_key", IGNORED)
def test_accepted_but_ignored_keys_are_named_in_one_warning(path, value, ignored_key, caplog):
    settings = parse_clarify_config(with_changes(path, value))
    assert ignored_key in settings.ignored
    with caplog.at_level("WARNING", logger="explain.clarify_config"):
        settings.log_notes()
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("Clarify config keys accepted but ignored: ")
    assert f"{ignored_key} (" in warnings[0]


def test_label_with_probability_is_accepted_and_ignored():
    config = with_changes("predictor.probability", "probabilities",
                          with_changes("predictor.label", "labels"))
    settings = parse_clarify_config(config)
    assert settings.options["probability"] == "probabilities"
    assert settings.ignored["predictor.label"].startswith("the scores come from predictor.probability")


BAD_CONFIGS = [
    (with_changes("methods.shap.image_config.model_type", "SEGMENTATION"),
     "methods.shap.image_config.model_type must be IMAGE_CLASSIFICATION or OBJECT_DETECTION, got 'SEGMENTATION'"),
    (with_changes("methods.shap.image_config.model_type", ...),
     "methods.shap.image_config.model_type must be IMAGE_CLASSIFICATION or OBJECT_DETECTION, got None"),
    (with_changes("methods.shap.image_config.model_type", ["OBJECT_DETECTION"]),  # a list: no TypeError
     "methods.shap.image_config.model_type must be IMAGE_CLASSIFICATION or OBJECT_DETECTION, got "
     "\\['OBJECT_DETECTION'\\]"),
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
    (with_changes("methods.shap.baseline", "s3://bucket/"),
     "methods.shap.baseline must name one S3 object, s3://BUCKET/KEY, got 's3://bucket/'"),
    (with_changes("methods.shap.baseline", [0, 0, 0]),
     "methods.shap.baseline must be an image path, an s3:// URI of an image or one of noise, mean, blur, black, "
     "got \\[0, 0, 0\\]"),
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
     "predictor.accept_type 'text/csv' is not supported for images; use application/json"),
    (with_changes("predictor.accept_type", "application/jsonlines"),
     "predictor.accept_type 'application/jsonlines' is not supported for images"),
    (with_changes("predictor.label", "predicted_label"),
     "predictor.label locates predicted labels, but Kernel SHAP needs every class's score: set "
     "predictor.probability"),
    (with_changes("predictor.probability", 1), "predictor.probability 1 is an index into a CSV answer"),
    (with_changes("predictor.probability", ""), "predictor.probability must be a non-empty string"),
    (with_changes("predictor.content_template", "$features"), "predictor.content_template applies to tabular"),
    (with_changes("predictor.record_template", "$features"), "predictor.record_template applies to tabular"),
    (with_changes("predictor.custom_attributes", 5), "predictor.custom_attributes must be a non-empty string"),
    (with_changes("predictor.endpoint_nam", "x"), "predictor has unknown key\\(s\\) endpoint_nam; allowed:"),
    (with_changes("methods.shap.text_config", {"granularity": "token"}), "methods.shap.text_config is for text"),
    (with_changes("methods.post_training_bias", {"methods": "all"}),
     "methods.post_training_bias is not an image explanation; only methods.shap"),
    (with_changes("methods.pdp", {"grid_resolution": 5}), "methods.pdp is not an image explanation"),
    (with_changes("facet", [{"name_or_index": "x"}]), "facet applies to tabular"),
    (with_changes("features", "data"), "features applies to tabular"),
    (with_changes("excluded_columns", ["a"]), "excluded_columns applies to tabular"),
    (with_changes("dataset_uri", "http://host/images"),
     "dataset_uri must be an s3:// URI, a local folder or a manifest file, got 'http://host/images'"),
    (with_changes("dataset_uri", 3), "dataset_uri must be a non-empty string"),
    (with_changes("methods.shap.image_config.model_type", ["OBJECT_DETECTION"]),
     "methods.shap.image_config.model_type must be IMAGE_CLASSIFICATION or OBJECT_DETECTION, got \\['OBJECT"),
    (with_changes("predictor.label_headers", "circle,square"),
     "predictor.label_headers must be a non-empty list of class names, got 'circle,square'"),
    (with_changes("predictor.endpoint_name", ""),
     "predictor.endpoint_name must be a SageMaker endpoint name, got ''"),
    (with_changes("predictor", []), "predictor must be a JSON object, got list"),
    # a value out of range is refused by its key in the file, not by the option it becomes
    (with_changes("methods.shap.num_samples", -5),
     "methods.shap.num_samples: num_samples must be in \\[4, 1000000\\], got -5"),
    (with_changes("methods.shap.image_config.num_segments", 0), "methods.shap.image_config.num_segments: "),
    (with_changes("methods.shap.image_config.context", 2.0), "methods.shap.image_config.context: "),
    (with_changes("methods.shap.image_config.iou_threshold", 1.5), "methods.shap.image_config.iou_threshold: "),
    (with_changes("probability_threshold", 1.5), "probability_threshold: probability_threshold must be"),
    ([], "analysis config must be a JSON object, got list"),
]


@pytest.mark.parametrize("config, message", BAD_CONFIGS)
def test_bad_configs_name_the_problem(config, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        parse_clarify_config(config)


def sdk_schema_keys() -> list[str]:
    """The dotted path of every named key of the SDK's analysis-config schema."""
    from sagemaker.clarify import ANALYSIS_CONFIG_SCHEMA_V1_0
    from schema import Optional as SchemaOptional

    def keys(schema, prefix=""):
        if isinstance(schema, dict):
            for key, value in schema.items():
                name = key.schema if isinstance(key, SchemaOptional) else key
                if isinstance(name, str):
                    yield prefix + name
                    yield from keys(value, prefix + name + ".")
        elif hasattr(schema, "schema"):
            yield from keys(schema.schema, prefix)

    return list(keys(ANALYSIS_CONFIG_SCHEMA_V1_0))


def test_every_schema_key_is_classified():
    """CLARIFY_KEYS names every key of the SDK's schema: honoured, ignored or refused (with its contents)."""
    def named(group):
        return {entry.split(" ")[0] for entry in CLARIFY_KEYS[group]}

    whole = named("refused") | named("ignored")  # their contents go with them
    classified = named("honoured") | whole
    schema_keys = sdk_schema_keys()
    missing = [key for key in schema_keys if key not in classified
               and not any(key.startswith(container + ".") for container in whole)]
    assert missing == []
    assert len(schema_keys) > 60


# What Clarify's schema (the SageMaker SDK's) refuses, worded: the JSON path, what the key takes, the value.
# The schema library's own words quoted its internals: "<lambda>('x') should evaluate to True",
# "None should be instance of 'int'" for a key that also takes strings, "missing key <class 'object'>",
# "'x' does not match '^[a-zA-Z0-9](-*[a-zA-Z0-9])'".
SDK_SCHEMA_ERRORS = [
    ("dataset_type", "x", "dataset_type: it must be application/x-image (in any case) for image explanations, "
                          "got 'x'"),
    ("dataset_type", 1, "dataset_type: it must be application/x-image (in any case) for image explanations, got 1"),
    ("dataset_type", ..., "the file: missing key 'dataset_type'"),
    ("dataset_uri", 3, "dataset_uri: it must be a string, got 3"),
    ("probability_threshold", 1, "probability_threshold: it must be a number with a decimal point, got 1 "
                                 "(write 1.0, not 1)"),
    ("probability_threshold", "high", "probability_threshold: it must be a number with a decimal point, got 'high'"),
    ("headers", [1], "headers[0]: it must be a string, got 1"),
    ("label", None, "label: it must be a string or an integer, got None"),
    ("version", 1.0, "version: it must be a string, got 1.0"),
    ("methods", [], "methods: it must be a JSON object, got []"),
    ("methods.shap.num_samples", "500", "methods.shap.num_samples: it must be an integer, got '500'"),
    ("methods.shap.num_samples", 500.0, "methods.shap.num_samples: it must be an integer, got 500.0 "
                                        "(write 500, not 500.0)"),
    ("methods.shap.seed", True, "methods.shap.seed: it must be an integer, got True"),
    ("methods.shap.baseline", 3, "methods.shap.baseline: it must be a string, a list, or a non-empty JSON object, "
                                 "got 3"),
    ("methods.shap.baseline", {}, "methods.shap.baseline: it must be a non-empty JSON object, got {}"),
    ("methods.shap.baseline", [3], "methods.shap.baseline[0]: it must be a list or a non-empty JSON object, got 3"),
    ("methods.shap.use_logit", "no", "methods.shap.use_logit: it must be true or false, got 'no'"),
    ("methods.shap.save_local_shap_values", 1, "methods.shap.save_local_shap_values: it must be true or false, "
                                               "got 1"),
    ("methods.shap.agg_method", "mean", "methods.shap.agg_method: it must be one of mean_abs, median, mean_sq "
                                        "(in any case), got 'mean'"),
    ("methods.shap.num_clusters", 2.5, "methods.shap.num_clusters: it must be an integer, got 2.5"),
    ("methods.shap.features_to_explain", "a", "methods.shap.features_to_explain: it must be a list of integers or "
                                              "strings, got 'a'"),
    ("methods.shap.text_config", {"granularity": "word", "language": "en"},
     "methods.shap.text_config.granularity: it must be one of token, sentence, paragraph (in any case), got 'word'"),
    ("methods.shap.text_config", {"granularity": "token"}, "methods.shap.text_config: missing key 'language'"),
    ("methods.shap.image_config.model_type", 1, "methods.shap.image_config.model_type: it must be a string, got 1"),
    ("methods.shap.image_config.num_segments", 20.5, "methods.shap.image_config.num_segments: it must be an "
                                                     "integer, got 20.5"),
    ("methods.shap.image_config.segment_compactness", 5.0,
     "methods.shap.image_config.segment_compactness: it must be an integer, got 5.0 (write 5, not 5.0)"),
    ("methods.shap.image_config.feature_extraction_method", None,
     "methods.shap.image_config.feature_extraction_method: it must be a string, got None"),
    ("methods.shap.image_config.max_objects", "3", "methods.shap.image_config.max_objects: it must be an integer, "
                                                   "got '3'"),
    ("methods.shap.image_config.iou_threshold", 1, "methods.shap.image_config.iou_threshold: it must be a number "
                                                   "with a decimal point, got 1 (write 1.0, not 1)"),
    ("methods.shap.image_config.context", 1, "methods.shap.image_config.context: it must be a number with a "
                                             "decimal point, got 1 (write 1.0, not 1)"),
    ("methods.shap.image_config.debug", {"class_ids": ["a"]},
     "methods.shap.image_config.debug.class_ids[0]: it must be an integer, got 'a'"),
    ("methods.shap.image_config.debug", {"sample": 1}, "methods.shap.image_config.debug: unknown key 'sample'"),
    ("methods.report", {"title": "t"}, "methods.report: missing key 'name'"),
    ("methods.report", {"nmae": "report"}, "methods.report: missing key 'name', and unknown key 'nmae'"),  # review 32
    ("methods.report.name", 1, "methods.report.name: it must be a string, got 1"),
    ("methods.pdp", {"grid_resolution": 1.5}, "methods.pdp.grid_resolution: it must be an integer, got 1.5"),
    ("methods.pre_training_bias", {"methods": 3},
     "methods.pre_training_bias.methods: it must be a string or a list of strings, got 3"),
    ("methods.asymmetric_shapley_value", {"direction": "forward", "granularity": "timewise"},
     "methods.asymmetric_shapley_value.direction: it must be one of chronological, anti_chronological, "
     "bidirectional (in any case), got 'forward'"),
    ("predictor.endpoint_name", 5, "predictor.endpoint_name: it must be a string, got 5"),
    ("predictor.endpoint_name_prefix", "-demo", "predictor.endpoint_name_prefix: it must be a string that starts "
                                                "with a letter or digit followed, after any hyphens, by another "
                                                "letter or digit, got '-demo'"),
    ("predictor.content_type", "image/gif", "predictor.content_type: it must be one of image/jpeg, image/png, "
                                            "application/x-npy (in any case) for image explanations, got 'image/gif'"),
    ("predictor.accept_type", "application/x-npy", "predictor.accept_type: it must be application/json (in any "
                                                   "case) for image explanations, got 'application/x-npy'"),
    ("predictor.probability", 1.5, "predictor.probability: it must be a string or an integer, got 1.5"),
    ("predictor.label", None, "predictor.label: it must be a string or an integer, got None"),
    ("predictor.label_headers", "circle", "predictor.label_headers: it must be a list of strings or integers, "
                                          "got 'circle'"),
    ("predictor.label_headers", ["circle", 1.5], "predictor.label_headers[1]: it must be a string or an integer, "
                                                 "got 1.5"),
    ("predictor.initial_instance_count", "1", "predictor.initial_instance_count: it must be an integer, got '1'"),
    ("predictor.custom_attributes", {"score_threshold": 0},
     "predictor.custom_attributes: it must be a string, got {'score_threshold': 0}"),
    ("predictor.content_template", {"a": 1}, "predictor.content_template.a: it must be a string, got 1"),
    ("predictor.content_template", {}, "predictor.content_template: it must be a non-empty JSON object whose "
                                       "values are strings, got {}"),
    ("facet", [{"name_or_index": 1.5}], "facet[0].name_or_index: it must be a string or an integer, got 1.5"),
    ("segment_config", [{"name_or_index": "a", "segments": [[None]]}],
     "segment_config[0].segments[0][0]: it must be a string or an integer, got None"),
    ("bogus", 1, "the file: unknown key 'bogus'"),
]


@pytest.mark.parametrize("path, value, message", SDK_SCHEMA_ERRORS)
def test_files_clarify_would_refuse_are_refused_naming_the_path(path, value, message, tmp_path):
    file = tmp_path / "analysis_config.json"
    file.write_text(json.dumps(with_changes(path, value)))
    with pytest.raises(ConfigError) as refused:
        read_clarify_config(file)
    assert re.fullmatch(r"Clarify's analysis-config schema \(SageMaker SDK 2\.\d+\.\d+\) refuses " + re.escape(message),
                        str(refused.value)), str(refused.value)


SCHEMA_INTERNALS = re.compile(r"lambda|should evaluate|should be instance|<class|does not match|did not validate|"
                              r"Or\(|And\(|Use\(|Regex\(")
WRONG_VALUES = [None, True, 0, -1, 1.5, "", "x", "-x", [], [1.5], [None], {}, {"a": 1}, {"a": [None]}]


def schema_paths():
    """Every key of the SDK's schema whose parents the detection config has (the rest: their container's)."""
    def has_parents(path):
        node = DETECTION_CONFIG
        for part in path.split(".")[:-1]:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return isinstance(node, dict)

    return [path for path in sdk_schema_keys() if has_parents(path)]


def test_no_refusal_quotes_the_schema_librarys_internals(tmp_path):
    """Every key the schema checks, given values of the wrong type or range: each refusal is a sentence."""
    paths = schema_paths()
    assert len(paths) > 45
    file = tmp_path / "analysis_config.json"
    quoted = []
    for path in paths:
        for value in WRONG_VALUES:
            file.write_text(json.dumps(with_changes(path, value)))
            try:
                read_clarify_config(file)
            except ConfigError as error:
                if SCHEMA_INTERNALS.search(str(error)):
                    quoted.append(str(error))
    assert quoted == []


def test_every_list_of_values_in_the_schema_is_named():
    """Each ``And(str, Use(str.lower), lambda s: s in (...))`` of the schema: the refusal lists values it takes."""
    from sagemaker.clarify import ANALYSIS_CONFIG_SCHEMA_V1_0
    from schema import And, Or, Schema
    from schema import Optional as SchemaOptional

    from explain.clarify_schema import describe_schema_refusal

    def enumerations(node):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from enumerations(key.schema if isinstance(key, SchemaOptional) else key)
                yield from enumerations(value)
        elif isinstance(node, list):
            for item in node:
                yield from enumerations(item)
        elif isinstance(node, And) and any(getattr(item, "__name__", "") == "<lambda>" for item in node.args):
            yield node
        elif isinstance(node, Or):
            for item in node.args:
                yield from enumerations(item)

    found = list(enumerations(ANALYSIS_CONFIG_SCHEMA_V1_0.schema))
    assert len(found) >= 8
    for node in found:
        message = describe_schema_refusal(node, "no-such-value")
        match = re.fullmatch(r"the file: it must be (?:one of )?(.+?)(?: and \d+ more)? \(in any case\), "
                             r"got 'no-such-value'", message)
        assert match, message
        assert all(Schema(node).is_valid(value) for value in match.group(1).split(", ")), message


def test_top_level_label_headers_are_refused_by_the_sdk_schema_and_read_without_it(tmp_path, monkeypatch):
    """What docs/from-clarify.md says: only predictor.label_headers passes Clarify's schema."""
    import sys

    top_level = tmp_path / "top_level.json"
    top_level.write_text(json.dumps({**with_changes("predictor.label_headers", ...), "label_headers": ["a", "b"]}))
    in_predictor = tmp_path / "in_predictor.json"
    in_predictor.write_text(json.dumps(with_changes("predictor.label_headers", ["a", "b"])))
    with pytest.raises(ConfigError) as refused:
        read_clarify_config(top_level)
    assert re.fullmatch(r"Clarify's analysis-config schema \(SageMaker SDK 2\.\d+\.\d+\) refuses the file: unknown "
                        r"key 'label_headers' \(Clarify reads class names from predictor.label_headers: move them "
                        r"there\)", str(refused.value)), str(refused.value)
    assert read_clarify_config(in_predictor).options["label_headers"] == ("a", "b")

    monkeypatch.setitem(sys.modules, "sagemaker", None)  # the explain-only install: no schema check
    assert read_clarify_config(top_level).options["label_headers"] == ("a", "b")
    both = tmp_path / "both.json"
    both.write_text(json.dumps({**with_changes("predictor.label_headers", ["c", "d"]), "label_headers": ["a", "b"]}))
    assert read_clarify_config(both).options["label_headers"] == ("c", "d")


def test_the_old_overlap_key_is_named_as_iou_threshold_with_and_without_the_sdk(tmp_path, monkeypatch):
    """review 32, finding 6: with the SDK installed its schema said only "unknown key 'overlap'"."""
    import sys

    path = tmp_path / "overlap.json"
    path.write_text(json.dumps(with_changes("methods.shap.image_config.overlap", 0.5)))
    with pytest.raises(ConfigError, match=r"refuses methods.shap.image_config: unknown key 'overlap' \(the old name "
                                          r"of iou_threshold: rename it to iou_threshold\)$"):
        read_clarify_config(path)
    monkeypatch.setitem(sys.modules, "sagemaker", None)  # the explain-only install: the tool's own message
    with pytest.raises(ConfigError, match=r"overlap is the old name of iou_threshold; rename it to iou_threshold"):
        read_clarify_config(path)


def test_the_schema_check_is_reported(tmp_path):
    path = tmp_path / "analysis_config.json"
    path.write_text(json.dumps(DETECTION_CONFIG))
    assert read_clarify_config(path).schema_check.startswith("passes the analysis-config schema of SageMaker SDK 2.")
    assert read_clarify_config(path, validate=False).schema_check == ""


def test_without_the_sdk_the_check_is_skipped_with_one_warning(tmp_path, monkeypatch, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "sagemaker", None)  # as in the explain-only install: import fails
    path = tmp_path / "analysis_config.json"
    path.write_text(json.dumps(with_changes("methods.shap.image_config.context", 1)))  # Clarify would refuse
    settings = read_clarify_config(path)
    assert settings.options["context"] == 1.0
    with caplog.at_level("INFO", logger="explain.clarify_config"):
        settings.log_notes()
    assert [record.getMessage() for record in caplog.records if "schema" in record.getMessage()] == [
        "Clarify config not checked against Clarify's schema: the SageMaker SDK is not installed "
        "(pip install 'clearsight[aws]' adds it; in a clearsight checkout '.[aws]')"]


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read Clarify config '.*missing.json': No such file"):
        read_clarify_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"methods": ')
    with pytest.raises(ConfigError, match="Clarify config '.*broken.json' is not valid JSON: .* line 1, column 13"):
        read_clarify_config(broken)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"label_headers": ["caf\u00e9"]}'.encode("latin-1"))
    with pytest.raises(ConfigError, match="Clarify config '.*latin1.json' is not UTF-8 text .*; save it as UTF-8 JSON"):
        read_clarify_config(latin1)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="Clarify config '.*deep.json' nests JSON too deeply to read"):
        read_clarify_config(deep)


def test_media_types_are_read_in_any_case_as_clarify_reads_them(tmp_path):
    config = with_changes("predictor.content_type", "Application/X-NPY",
                          with_changes("dataset_type", "Application/X-Image"))
    config["methods"]["shap"]["baseline"] = "noise"
    path = tmp_path / "analysis_config.json"
    path.write_text(json.dumps({**config, "dataset_uri": "s3://bucket/images/"}))
    assert read_clarify_config(path).options["content_type"] == "application/x-npy"


# A classification config with object-detection keys: each named as ignored, none applied.
CLASSIFICATION_CONFIG = with_changes("methods.shap.image_config.model_type", "IMAGE_CLASSIFICATION")
DETECTION_KEYS_ON_CLASSIFICATION = [
    ("probability_threshold", 0.99, "probability_threshold"),
    ("methods.shap.image_config.max_objects", 2, "max_objects"),
    ("methods.shap.image_config.iou_threshold", 0.9, "iou_threshold"),
    ("methods.shap.image_config.context", 0.0, "context"),
]


@pytest.mark.parametrize("path, value, setting", DETECTION_KEYS_ON_CLASSIFICATION)
def test_detection_keys_of_a_classification_config_are_named_as_ignored(path, value, setting, caplog):
    settings = parse_clarify_config(with_changes(path, value, CLASSIFICATION_CONFIG))
    assert settings.options["task"] == "classification"
    assert setting not in settings.options
    assert settings.ignored[path] == "object detection only: model_type is IMAGE_CLASSIFICATION"
    with caplog.at_level("WARNING", logger="explain.clarify_config"):
        settings.log_notes()
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1
    assert f"{path} (object detection only: model_type is IMAGE_CLASSIFICATION)" in warnings[0]


def test_a_detection_config_applies_its_detection_keys():
    settings = parse_clarify_config(DETECTION_CONFIG)
    assert (settings.options["probability_threshold"], settings.options["max_objects"]) == (0.8, 5)
    assert not any("IMAGE_CLASSIFICATION" in reason for reason in settings.ignored.values())


def test_a_config_saved_with_a_byte_order_mark_is_read(tmp_path):
    # review 23: Notepad's "UTF-8 with BOM" was refused as invalid JSON, while label files with a BOM were read
    path = tmp_path / "analysis_config.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"methods": {"shap": {"image_config": {
        "model_type": "IMAGE_CLASSIFICATION"}}}, "label_headers": ["caf\u00e9", "dog"]}).encode("utf-8"))
    settings = read_clarify_config(path, validate=False)
    assert settings.options == {"task": "classification", "label_headers": ("caf\u00e9", "dog")}
