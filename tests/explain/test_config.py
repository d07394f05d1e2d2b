"""ExplainConfig validation: bad values raise ConfigError naming the field and allowed range."""

import re

import pytest
from PIL import Image

from explain import ConfigError, ExplainConfig


def test_defaults_follow_clarify():
    config = ExplainConfig()
    assert (config.num_samples, config.num_segments, config.segment_compactness) == (500, 20, 5.0)
    assert (config.max_objects, config.iou_threshold, config.context) == (3, 0.5, 1.0)
    assert config.probability_threshold == 0.5
    assert config.baseline == "noise"
    assert config.segmentation == "merged"  # not Clarify's; "slic" is Clarify's description
    assert ExplainConfig(segmentation="slico").to_dict()["segmentation"] == "slico"
    # issue 15: box-aware segments and refinement are on by default, and part of the settings
    assert (config.focus, config.refine_fraction, config.max_segments) == ("boxes", 0.4, 64)
    assert {"focus", "refine_fraction", "max_segments"} <= set(config.to_dict())


@pytest.mark.parametrize("settings, message", [
    ({"task": "segmentation"}, "task must be one of detection, classification, got 'segmentation'"),
    ({"num_samples": 3}, "num_samples must be in [4, 1000000], got 3"),
    ({"num_samples": 50.5}, "num_samples must be an integer, got 50.5"),
    ({"num_segments": 1}, "num_segments must be in [2, 1000], got 1"),
    ({"segment_compactness": 0}, "segment_compactness must be > 0.0, got 0"),
    ({"segment_compactness": float("nan")}, "segment_compactness must be a finite number"),
    ({"segmentation": "felzenszwalb"}, "segmentation must be one of merged, slico, slic, got 'felzenszwalb'"),
    ({"focus": "objects"}, "focus must be one of boxes, none, got 'objects'"),
    ({"refine_fraction": 0.95}, "refine_fraction must be in [0.0, 0.9], got 0.95"),
    ({"refine_fraction": -0.1}, "refine_fraction must be in [0.0, 0.9], got -0.1"),
    ({"max_segments": 1}, "max_segments must be in [2, 10000], got 1"),
    ({"baseline": "no/such/file.png"}, "baseline must be one of noise, mean, blur, black, a path to an existing "
                                       "image file or an s3://BUCKET/KEY image, got 'no/such/file.png' (no such file)"),
    ({"baseline": "s3://bucket-only"}, "an S3 baseline must name one object, s3://BUCKET/KEY, got 's3://bucket-only'"),
    ({"baseline": "s3://bucket/folder/"}, "an S3 baseline must name one object"),
    ({"baseline": ""}, "baseline must be one of noise, mean, blur, black"),
    ({"max_objects": 0}, "max_objects must be in [1, 1000], got 0"),
    ({"iou_threshold": 1.5}, "iou_threshold must be in [0.0, 1.0], got 1.5"),
    ({"context": -0.1}, "context must be in [0.0, 1.0], got -0.1"),
    ({"probability_threshold": 2}, "probability_threshold must be in [0.0, 1.0], got 2"),
    ({"label_headers": ()}, "label_headers must be a non-empty tuple of non-empty strings"),
    ({"label_headers": ("cat", "")}, "label_headers must be a non-empty tuple of non-empty strings"),
    ({"label_headers": ("circle", "circle", "square")},  # review 18: a Clarify config's list, the API
     "label_headers names 'circle' more than once (circle, circle, square): give each class its own name"),
    ({"labels": ("cat",)}, "labels selects classes to explain and is allowed only with task='classification'"),
    ({"seed": -1}, "seed must be in [0, 9223372036854775807], got -1"),
    ({"target_error": 0.0}, "target_error must be in (0.0, 1.0], got 0.0"),
    ({"metrics": "yes"}, "metrics must be True or False, got 'yes'"),
    ({"resize": 8}, "resize must be in [16, 8192], got 8"),
    ({"batch_size": 0}, "batch_size must be in [1, 100000], got 0"),
    ({"batch_size": True}, "batch_size must be an integer, got True"),
])
def test_bad_values_name_field_and_range(settings, message):
    with pytest.raises(ConfigError) as raised:
        ExplainConfig(**settings)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_lists_become_tuples_and_baseline_file_is_accepted(tmp_path):
    path = tmp_path / "baseline.png"
    path.write_bytes(b"not read here")
    config = ExplainConfig(task="classification", labels=["cat"], label_headers=["cat", "dog"],
                           baseline=str(path))
    assert config.labels == ("cat",) and config.label_headers == ("cat", "dog")
    assert config.to_dict()["label_headers"] == ["cat", "dog"]


def _settings_errors():
    """Callables that raise ConfigError, each with the setting (and CLI option name) it is about."""
    from explain.predictors import TransportConfig, make_predictor
    from explain.runner import RunOptions
    from explain.sharding import Shard

    return [
        (lambda: ExplainConfig(num_samples=2), "num_samples"),
        (lambda: ExplainConfig(segmentation="felzenszwalb"), "segmentation"),
        (lambda: ExplainConfig(baseline="no/such/file.png"), "baseline"),
        (lambda: ExplainConfig(labels=("cat",)), "labels"),
        (lambda: TransportConfig(concurrency=0), "concurrency"),
        (lambda: TransportConfig(accept="text/plain"), "accept"),
        (lambda: TransportConfig(timeout=0), "timeout"),
        (lambda: Shard.parse("4/4"), "shard"),
        (lambda: Shard.parse("x"), "shard"),
        (lambda: RunOptions(images_in_flight=0), "images_in_flight"),
        (lambda: RunOptions(shard="0/4"), "shard"),
        (lambda: make_predictor("ftp://host", "detection"), "endpoint"),
        (lambda: make_predictor("sagemaker:bad_name!", "detection", region="us-east-1"), "endpoint"),
        (lambda: make_predictor("http://", "detection"), "endpoint"),
    ]


@pytest.mark.parametrize("index", range(len(_settings_errors())))
def test_every_settings_error_names_its_field_and_that_field_is_a_cli_option(index):
    """The CLI reports a ConfigError against the option named by ``field`` (no message parsing)."""
    from explain.cli import main

    build, field = _settings_errors()[index]
    with pytest.raises(ConfigError) as raised:
        build()
    assert raised.value.field == field
    assert field in {param.name for param in main.params}


@pytest.mark.parametrize("index", range(len(_settings_errors())))
def test_a_settings_error_keeps_its_field_through_pickling(index):
    """--workers runs shards in spawned processes; their errors come back pickled and must still name the option."""
    import pickle

    build, field = _settings_errors()[index]
    with pytest.raises(ConfigError) as raised:
        build()
    copy = pickle.loads(pickle.dumps(raised.value))
    assert (type(copy), str(copy), copy.field) == (ConfigError, str(raised.value), field)


def test_numpy_scalars_are_accepted_as_the_python_numbers_they_hold():
    # review 19: np.int64(8) was refused as "num_segments must be an integer, got 8"
    import json

    import numpy as np

    config = ExplainConfig(num_samples=np.int64(40), num_segments=np.int32(8), seed=np.uint64(3),
                           probability_threshold=np.float32(0.5), context=np.float64(0.25),
                           metrics=np.bool_(True), resize=np.int16(64))
    assert (config.num_samples, config.num_segments, config.seed, config.resize) == (40, 8, 3, 64)
    assert type(config.num_samples) is int and type(config.metrics) is bool
    assert (config.probability_threshold, config.context) == (0.5, 0.25)
    assert json.loads(json.dumps(config.to_dict()))["num_samples"] == 40  # the digest of resumed runs
    with pytest.raises(ConfigError, match="num_samples must be an integer, got 40.0"):
        ExplainConfig(num_samples=np.float64(40.0))
    with pytest.raises(ConfigError, match="num_samples must be an integer, got True"):
        ExplainConfig(num_samples=np.bool_(True))


def test_run_options_and_shards_take_numpy_scalars_as_the_python_numbers_they_hold():
    # review 20: review 19 converted them in ExplainConfig and TransportConfig only; RunOptions
    # refused images_in_flight=np.int64(2) as "got 2", Shard(np.int64(1), np.int64(4)) as "got 1"
    import numpy as np

    from explain.runner import RunOptions
    from explain.sharding import Shard

    options = RunOptions(images_in_flight=np.int64(2), shard=Shard(np.int64(1), np.int32(4)))
    assert type(options.images_in_flight) is int and options.images_in_flight == 2
    assert options.shard == Shard(1, 4) and options.shard.name == "shard-1-of-4"
    with pytest.raises(ConfigError, match="shard count must be an integer, got 4.0"):
        Shard(0, np.float64(4.0))
    with pytest.raises(ConfigError, match=re.escape("shard must be a Shard (Shard(index, count), or "
                                                    "Shard.parse('0/4')), got '0/4'")):
        RunOptions(shard="0/4")  # was an AttributeError on shard.name when the run began


def test_float32_settings_are_recorded_as_the_decimal_they_show():
    # review 36: np.float32(0.3) was recorded as 0.30000001192092896, so a resume with 0.3 was a settings change
    import numpy as np

    from explain.manifest import settings_digest

    given = ExplainConfig(probability_threshold=np.float32(0.3), context=np.float32(0.1))
    assert (given.probability_threshold, given.context) == (0.3, 0.1)
    typed = ExplainConfig(probability_threshold=0.3, context=0.1)
    assert settings_digest(given.to_dict()) == settings_digest(typed.to_dict())


def test_numpy_floats_do_not_depend_on_numpys_print_options():
    # review 37: float(str(value)) kept 12 digits under np.set_printoptions(legacy='1.13')
    import numpy as np

    from explain.config import plain_number

    saved = np.get_printoptions()
    try:
        np.set_printoptions(legacy="1.13")
        assert plain_number(np.float64(0.1 + 0.2)) == 0.1 + 0.2
        assert plain_number(np.float64(0.123456789012345)) == 0.123456789012345
        assert plain_number(np.float32(0.3)) == 0.3 and plain_number(np.float16(0.1)) == 0.1
        assert str(plain_number(np.float32(-0.0))) == "-0.0" and plain_number(np.float32("-inf")) == float("-inf")
    finally:
        np.set_printoptions(**saved)


def test_a_run_recorded_with_a_float32_binary_value_says_how_to_resume(tmp_path):
    # review 37: runs before 2026-12-03 recorded np.float32(0.3) as 0.30000001192092896; now 0.3 is recorded
    import numpy as np

    from explain.manifest import SettingsChangedError
    from explain.runner import RunOptions, run_explanations
    from tests.explain.test_explainer import red_square_detector, red_square_scene

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(red_square_scene()).save(images / "scene.png")
    old = ExplainConfig(num_samples=16, num_segments=4, segment_compactness=float(np.float32(0.3)))
    run_explanations([images], red_square_detector, old, tmp_path / "out", RunOptions(progress=False))
    new = ExplainConfig(num_samples=16, num_segments=4, segment_compactness=np.float32(0.3))
    with pytest.raises(SettingsChangedError, match=re.escape(
            "(since 2026-12-03 a numpy float32 setting is recorded as the decimal it shows: to resume, give "
            "segment_compactness=0.30000001192092896 as a Python float)")):
        run_explanations([images], red_square_detector, new, tmp_path / "out", RunOptions(progress=False))


@pytest.mark.parametrize("name", ["restart", "retry_failed", "allow_non_empty_out", "merge", "progress"])
def test_run_options_flags_must_be_booleans(name):
    # review 36: restart="false" was true, and deleted the earlier run's outputs
    import numpy as np

    from explain.runner import RunOptions

    with pytest.raises(ConfigError, match=f"{name} must be True or False, got 'false'"):
        RunOptions(**{name: "false"})
    with pytest.raises(ConfigError, match=f"{name} must be True or False, got 1"):
        RunOptions(**{name: 1})
    assert getattr(RunOptions(**{name: np.bool_(False)}), name) is False


def test_class_names_given_as_a_numpy_array_or_a_generator_are_taken_as_a_tuple_of_str():
    # review 20: review 19 took numpy numbers, but np.array(["cat", "dog"]) (np.loadtxt's names) and a
    # generator were refused as "must be a non-empty tuple of non-empty strings"
    import json

    import numpy as np

    for names in (np.array(["cat", "dog"]), (name for name in ["cat", "dog"]), ["cat", np.str_("dog")]):
        config = ExplainConfig(task="classification", label_headers=names, labels=np.array(["dog"]))
        assert config.label_headers == ("cat", "dog") and config.labels == ("dog",)
        assert {type(name) for name in config.label_headers} == {str}
        assert json.loads(json.dumps(config.to_dict()))["label_headers"] == ["cat", "dog"]
    with pytest.raises(ConfigError, match="label_headers must be a non-empty tuple of non-empty strings"):
        ExplainConfig(label_headers=np.array([["cat"]]))


def test_a_baseline_array_is_named_by_its_shape_and_a_path_object_is_taken(tmp_path):
    # review 19: an array baseline's whole repr was the message; a pathlib.Path was refused
    import numpy as np

    with pytest.raises(ConfigError) as raised:
        ExplainConfig(baseline=np.zeros((64, 64, 3), np.uint8))
    assert str(raised.value).endswith("got an array of shape (64, 64, 3) (save it as a PNG file and give its path)")
    path = tmp_path / "baseline.png"
    path.write_bytes(b"read when explaining")
    config = ExplainConfig(baseline=path)
    assert config.baseline == str(path) and config.to_dict()["baseline"] == str(path)


def test_labels_given_as_ints_are_refused_with_how_to_write_an_id():
    # review 44: labels=(0,) was "must be a non-empty tuple of non-empty strings" while ('0',) worked; ints are
    # not taken as ids (review 45): a name is matched first, so 1 would pick a class named "1"
    assert ExplainConfig(task="classification", labels=("0", "cat")).labels == ("0", "cat")
    with pytest.raises(ConfigError, match=re.escape("labels must be a non-empty tuple of class names, or class ids "
                                                    "written as strings ('0', as --labels takes them), got (0,)")):
        ExplainConfig(task="classification", labels=(0,))
