"""python -m explain: usage errors (exit 2), failures (exit 1), and runs against the in-test endpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from explain.cli import main
from tests.fake_endpoint import FakeEndpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def image_dir(tmp_path) -> Path:
    """Two 40x48 PNG scenes whose red channel is bright (the fake detector scores it ~0.8)."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        image = np.zeros((40, 48, 3), dtype=np.uint8)
        image[..., 0] = 200 + rng.integers(0, 40, size=(40, 48))
        image[:, 24:, 1] = 120
        image[20:, :, 2] = 60 * index
        Image.fromarray(image).save(folder / f"scene{index}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def run_cli(args, env=None):
    runner = CliRunner()
    return runner.invoke(main, [str(arg) for arg in args], env=env, prog_name="python -m explain")


FAST = ["--num-samples", "16", "--num-segments", "4", "--quiet"]


def base_args(image_dir, tmp_path, endpoint="http://127.0.0.1:9", task="detection"):
    return ["--endpoint", endpoint, "--task", task, "--out", tmp_path / "out", image_dir]


BAD_PARAMETERS = [
    (["--out", ""], "Invalid value for '--out': give a folder (an empty --out would be the current folder; write . "
                    "for that)"),  # review 40, D8: it wrote into the current folder
    (["--task", "segmentation"], "Invalid value for '--task': 'segmentation' is not one of 'detection', 'classification'."),
    (["--num-samples", "2"], "Invalid value for '--num-samples': num_samples must be in [4, 1000000], got 2"),
    (["--num-samples", "many"], "Invalid value for '--num-samples': 'many' is not a valid integer."),
    (["--num-segments", "1"], "Invalid value for '--num-segments': num_segments must be in [2, 1000], got 1"),
    (["--segment-compactness", "0"], "Invalid value for '--segment-compactness': segment_compactness must be > 0.0, got 0.0"),
    (["--focus", "objects"], "Invalid value for '--focus': 'objects' is not one of 'boxes', 'none'."),
    (["--refine-fraction", "1.5"], "Invalid value for '--refine-fraction': refine_fraction must be in [0.0, 0.9], got 1.5"),
    (["--segmentation", "felzenszwalb"],
     "Invalid value for '--segmentation': 'felzenszwalb' is not one of 'merged', 'slico', 'slic'."),
    (["--baseline", "nowhere.png"],
     "Invalid value for '--baseline': must be one of noise, mean, blur, black, an existing image file or an s3://BUCKET/KEY image; 'nowhere.png' is none of these"),
    (["--baseline", "s3://bucket/baselines/"],
     "Invalid value for '--baseline': an S3 baseline must name one object, s3://BUCKET/KEY; 's3://bucket/baselines/' does not"),
    (["--max-objects", "0"], "Invalid value for '--max-objects': max_objects must be in [1, 1000], got 0"),
    (["--iou-threshold", "1.5"], "Invalid value for '--iou-threshold': iou_threshold must be in [0.0, 1.0], got 1.5"),
    (["--context", "-0.1"], "Invalid value for '--context': context must be in [0.0, 1.0], got -0.1"),
    (["--probability-threshold", "2"],
     "Invalid value for '--probability-threshold': probability_threshold must be in [0.0, 1.0], got 2.0"),
    (["--labels", "cat"],
     "Invalid value for '--labels': labels selects classes to explain and is allowed only with task='classification'"),
    (["--label-headers", "a,,b"], "Invalid value for '--label-headers': expected comma-separated non-empty names or a file"),
    # review 26: '' was "looks like a file of class names but is a directory" (Path('') is the current folder)
    (["--label-headers", ""], "Invalid value for '--label-headers': expected comma-separated non-empty names or a "
                              "file, got ''"),
    (["--label-headers", " "], "expected comma-separated non-empty names or a file, got ' '"),
    (["--label-headers", "circle,circle,square"], "Invalid value for '--label-headers': label_headers names 'circle' "
                                                  "more than once (circle, circle, square): give each class its own name"),
    # a mistyped file path is not one class name
    (["--label-headers", "labels.txt"], "Invalid value for '--label-headers': 'labels.txt' looks like a file of class "
                                        "names but does not exist; give an existing file (one name per line) or the "
                                        "names themselves as a,b,c"),
    (["--label-headers", "config/classes"], "Invalid value for '--label-headers': 'config/classes' looks like a file "
                                            "of class names but does not exist"),
    (["--label-headers", "Classes.CSV"], "Invalid value for '--label-headers': 'Classes.CSV' looks like a file"),
    (["--label-headers", "coco.names"], "Invalid value for '--label-headers': 'coco.names' looks like a file"),
    (["--label-headers", "."], "Invalid value for '--label-headers': '.' looks like a file of class names but is a "
                               "directory"),
    (["--target-error", "0"], "Invalid value for '--target-error': target_error must be in (0.0, 1.0], got 0.0"),
    (["--resize", "4"], "Invalid value for '--resize': resize must be in [16, 8192], got 4"),
    (["--content-type", "image/gif"], "Invalid value for '--content-type': 'image/gif' is not one of"),
    (["--accept", "text/csv"], "Invalid value for '--accept': 'text/csv' is not one of"),
    (["--max-payload-bytes", "10"],
     "Invalid value for '--max-payload-bytes': max_payload_bytes must be an integer in [1024, 2147483648], got 10"),
    (["--concurrency", "0"], "Invalid value for '--concurrency': concurrency must be an integer in [1, 256], got 0"),
    (["--timeout", "0"], "Invalid value for '--timeout': timeout must be a finite number of seconds > 0, got 0.0"),
    (["--endpoint", "ftp://host/model"],
     "Invalid value for '--endpoint': endpoint 'ftp://host/model' is neither an http(s):// URL, sagemaker:ENDPOINT_NAME"),
    (["--endpoint", "http://"], "Invalid value for '--endpoint': endpoint URL must look like http://HOST:PORT, got 'http://'"),
    (["--endpoint", "http://127.0.0.1:99999"], "Invalid value for '--endpoint': endpoint URL must look like "
                                              "http://HOST:PORT with a PORT in 1-65535, got 'http://127.0.0.1:99999'"),
    (["--endpoint", "http://127.0.0.1:80a"], "Invalid value for '--endpoint': endpoint URL must look like "
                                             "http://HOST:PORT with a PORT in 1-65535, got 'http://127.0.0.1:80a'"),
    (["--endpoint", "http://:8080"], "Invalid value for '--endpoint': endpoint URL must look like "
                                     "http://HOST:PORT with a HOST, got 'http://:8080'"),
    (["--endpoint", "sagemaker:bad_name"],
     "Invalid value for '--endpoint': SageMaker endpoint name must be 1-63 letters, digits or hyphens, got 'bad_name'"),
]


@pytest.mark.parametrize("extra, message", BAD_PARAMETERS)
def test_bad_parameters_exit_2_with_the_message(extra, message, image_dir, tmp_path):
    result = run_cli(base_args(image_dir, tmp_path) + extra)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    ([], "Missing option '--task'"),
    (["--endpoint", "http://h", "--task", "detection", "--out", "o"],
     "Error: no images: give IMAGE... (files, folders, s3://BUCKET/PREFIX) or a --clarify-config whose "
     "dataset_uri names them"),
    (["--task", "detection", "--out", "o", "x.png"], "Missing option '--endpoint'"),
    (["--endpoint", "http://h", "--out", "o", "x.png"], "Missing option '--task'"),
    (["--endpoint", "http://h", "--task", "detection", "x.png"], "Missing option '--out'"),
    (["--endpoint", "http://h", "--task", "detection", "--out", "o", "missing.png"],
     "Invalid value for '[IMAGES]...': Path 'missing.png' does not exist."),
])
def test_missing_arguments_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.png").write_bytes(b"")
    result = run_cli(args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_directory_without_images_is_a_usage_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli(base_args(empty, tmp_path))
    assert result.exit_code == 2
    assert "Invalid value for '[IMAGES]...': no .jpg/.jpeg/.png files in directory" in result.output


def test_environment_variables_are_fallbacks(image_dir, tmp_path):
    env = {"CLEARSIGHT_EXPLAIN_ENDPOINT": "http://127.0.0.1:9", "CLEARSIGHT_EXPLAIN_TASK": "detection",
           "CLEARSIGHT_EXPLAIN_OUT": str(tmp_path / "out"), "CLEARSIGHT_EXPLAIN_NUM_SAMPLES": "3"}
    result = run_cli([image_dir], env=env)
    assert result.exit_code == 2
    assert ("Invalid value for '--num-samples' (env var: 'CLEARSIGHT_EXPLAIN_NUM_SAMPLES'): num_samples must be "
            "in [4, 1000000], got 3") in result.output  # review 43: the variable, not only an option never typed
    assert "deprecated" not in result.output


def test_a_variable_is_named_for_a_missing_option_and_not_for_a_typed_value(image_dir, tmp_path):
    # review 44: every --out error named CLEARSIGHT_EXPLAIN_OUT, typed or not; --task's did not name its variable
    result = run_cli(["--endpoint", "http://127.0.0.1:9", "--out", tmp_path / "out", image_dir])
    assert result.exit_code == 2 and "Missing option '--task' (env var: 'CLEARSIGHT_EXPLAIN_TASK')" in result.output
    (tmp_path / "afile").write_text("x")
    result = run_cli(base_args(image_dir, tmp_path)[:-3] + ["--out", tmp_path / "afile", image_dir])
    assert result.exit_code == 2 and "Invalid value for '--out': " in result.output, result.output


def test_blank_environment_variables_are_unset_as_empty_ones_are(image_dir, tmp_path):
    # review 43: "  " was an error for some variables ("Invalid value for '--resize'") and unset for others
    names = ("RESIZE", "NUM_SAMPLES", "BASELINE", "SHARD", "CONTENT_TYPE", "PROBABILITY", "LABEL_HEADERS", "TASK",
             "VERBOSE", "CLARIFY_CONFIG", "TARGET_MODEL", "METRICS")
    env = {f"CLEARSIGHT_EXPLAIN_{name}": " \t " for name in names}
    result = run_cli(["--endpoint", "http://127.0.0.1:9", "--out", tmp_path / "out", image_dir], env=env)
    assert result.exit_code == 2
    assert "Missing option '--task'" in result.output and "Invalid value" not in result.output, result.output


def test_old_environment_variable_names_still_work_with_a_deprecation_warning(image_dir, tmp_path):
    env = {"EXPLAIN_ENDPOINT": "http://127.0.0.1:9", "EXPLAIN_TASK": "detection",
           "EXPLAIN_OUT": str(tmp_path / "out"), "EXPLAIN_NUM_SAMPLES": "3"}
    result = run_cli([image_dir], env=env)
    assert result.exit_code == 2
    assert ("Invalid value for '--num-samples' (env var: 'EXPLAIN_NUM_SAMPLES'): num_samples must be in "
            "[4, 1000000], got 3") in result.output
    for old, new in (("EXPLAIN_ENDPOINT", "CLEARSIGHT_EXPLAIN_ENDPOINT"), ("EXPLAIN_OUT", "CLEARSIGHT_EXPLAIN_OUT"),
                     ("EXPLAIN_NUM_SAMPLES", "CLEARSIGHT_EXPLAIN_NUM_SAMPLES")):
        assert f"Warning: environment variable {old} is deprecated; rename it to {new}" in result.stderr


def test_the_new_name_wins_over_the_old_one(image_dir, tmp_path):
    env = {"CLEARSIGHT_EXPLAIN_NUM_SAMPLES": "2", "EXPLAIN_NUM_SAMPLES": "3"}
    result = run_cli(base_args(image_dir, tmp_path), env=env)
    assert result.exit_code == 2
    assert "num_samples must be in [4, 1000000], got 2" in result.output and "deprecated" not in result.output


def test_bad_clarify_config_is_a_usage_error(image_dir, tmp_path):
    config = tmp_path / "analysis_config.json"
    config.write_text(json.dumps({"dataset_type": "application/x-image",
                                  "methods": {"shap": {"image_config": {"model_type": "SEGMENTATION"}}}}))
    result = run_cli(["--clarify-config", config] + base_args(image_dir, tmp_path))
    assert result.exit_code == 2
    assert ("Invalid value for '--clarify-config': methods.shap.image_config.model_type must be "
            "IMAGE_CLASSIFICATION or OBJECT_DETECTION, got 'SEGMENTATION'") in " ".join(result.output.split())


def test_help_states_defaults_and_environment_variables():
    result = run_cli(["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for expected in ("NUM_SAMPLES; default: 500]", "NUM_SEGMENTS; default: 20]", "COMPACTNESS; default: 5.0]",
                     "BASELINE; default: noise]", "SEGMENTATION; default: merged]", "MAX_OBJECTS; default: 3]",
                     "IOU_THRESHOLD; default: 0.5]", "CONTEXT; default: 1.0]",
                     "MAX_PAYLOAD_BYTES; default: 6291456]", "CONCURRENCY; default: 4]"):
        assert expected in text
    visible = [param for param in main.params if isinstance(param, click.Option) and not param.hidden
               and param.name not in ("help", "version")]
    for param in visible:  # every setting names its environment variable, all under one prefix
        name = "OUT" if param.name == "out_dir" else param.name.upper()
        assert f"env var: CLEARSIGHT_EXPLAIN_{name}" in text
    assert len(visible) >= 35


def test_version_is_the_project_version():
    import serving

    result = run_cli(["--version"])
    assert result.exit_code == 0 and result.output == f"clearsight explain, version {serving.__version__}\n"


# --------------------------------------------------------------------------------------
# End to end against the in-test HTTP endpoint
# --------------------------------------------------------------------------------------

def test_explains_a_directory_against_the_http_endpoint(image_dir, tmp_path):
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(base_args(image_dir, tmp_path, endpoint.url) + FAST + ["--concurrency", "2"])
        requests_seen = len(endpoint.requests)
        url = endpoint.url
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert "explained 2 image(s)" in result.stdout
    assert f"results in {out}" in result.stdout
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["predictor"]["transport"] == "http"
    assert analysis["predictor"]["endpoint"] == f"{url}/invocations"
    assert f"http {url}/invocations: {requests_seen} request(s), 0 retries" in result.stdout
    assert analysis["predictor"]["requests"] == requests_seen > 0
    assert analysis["predictor"]["retries"] == 0
    assert analysis["settings"]["num_samples"] == 16
    for stem in ("scene0.png", "scene1.png"):
        assert (out / f"shap_{stem}_box1_object.jpeg").is_file()
        assert (out / f"{stem}_objects.jpeg").is_file()
    assert (out / "report.html").is_file()


@pytest.mark.parametrize("model_type, task, expected", [
    ("IMAGE_CLASSIFICATION", "detection", "--task detection overrides the Clarify config's "
     "methods.shap.image_config.model_type IMAGE_CLASSIFICATION; its object-detection keys are not applied: "
     "set model_type to OBJECT_DETECTION in the file to apply them"),
    ("OBJECT_DETECTION", "classification", "--task classification overrides the Clarify config's "
     "methods.shap.image_config.model_type OBJECT_DETECTION; its object-detection keys do not apply to it")])
def test_a_task_other_than_the_clarify_configs_is_warned_about(model_type, task, expected, image_dir, tmp_path,
                                                               caplog):
    # a classification config run with --task detection read as a detection run with the file's max_objects
    config = tmp_path / "analysis_config.json"
    config.write_text(json.dumps({"dataset_type": "application/x-image", "methods": {"shap": {
        "num_samples": 16, "image_config": {"model_type": model_type, "num_segments": 4, "max_objects": 1}}},
        "predictor": {"label_headers": ["red", "green", "blue", "other"][:3 if task == "detection" else 4]}}))
    with FakeEndpoint(task) as endpoint, caplog.at_level("WARNING", logger="explain.cli"):
        result = run_cli(["--clarify-config", config, "--endpoint", endpoint.url, "--task", task,
                          "--out", tmp_path / "out", "--quiet", image_dir / "scene0.png"])
    assert result.exit_code == 0, result.output
    assert expected in [record.getMessage() for record in caplog.records]
    settings = json.loads((tmp_path / "out" / "analysis.json").read_text())["settings"]
    assert settings["task"] == task
    if task == "detection":
        assert settings["max_objects"] == 3  # the default: the classification file's max_objects is not applied


def test_the_clarify_configs_own_task_gives_no_such_warning(image_dir, tmp_path, caplog):
    config = tmp_path / "analysis_config.json"
    config.write_text(json.dumps({"dataset_type": "application/x-image", "methods": {"shap": {
        "image_config": {"model_type": "OBJECT_DETECTION"}}}}))
    with caplog.at_level("WARNING", logger="explain.cli"):
        result = run_cli(["--clarify-config", config, "--task", "detection", "--out", tmp_path / "out", image_dir])
    assert result.exit_code == 2  # no endpoint: stops after the warnings
    assert not any("overrides the Clarify config" in record.getMessage() for record in caplog.records)


def test_clarify_config_values_are_defaults_that_options_override(image_dir, tmp_path):
    with FakeEndpoint("detection") as endpoint:
        config = tmp_path / "analysis_config.json"
        config.write_text(json.dumps({
            "dataset_type": "application/x-image",
            "probability_threshold": 0.6,
            "methods": {"shap": {"num_samples": 12, "baseline": "black", "seed": 3,
                                 "image_config": {"model_type": "OBJECT_DETECTION", "num_segments": 4,
                                                  "max_objects": 1}}},
            "predictor": {"content_type": "image/png", "accept_type": "application/json",
                          "label_headers": ["red", "green", "blue"]},
        }))
        result = run_cli(["--clarify-config", config, "--endpoint", endpoint.url, "--out", tmp_path / "out",
                          "--num-samples", "20", "--quiet", image_dir / "scene0.png"])
        content_types = {request["content_type"] for request in endpoint.requests}
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "out" / "analysis.json").read_text())["settings"]
    assert settings["task"] == "detection"
    assert settings["num_samples"] == 20  # the option overrides the config's 12
    assert (settings["max_objects"], settings["seed"], settings["baseline"]) == (1, 3, "black")
    assert settings["probability_threshold"] == 0.6
    assert settings["label_headers"] == ["red", "green", "blue"]
    assert content_types == {"image/png"}


@pytest.mark.parametrize("extra, expected, description", [
    ([], "merged", "SLICO over-segmentation"), (["--segmentation", "slico"], "slico", "SLICO (slic_zero)"),
    (["--segmentation", "slic"], "slic", "plain SLIC superpixels")])
def test_segmentation_option_reaches_the_settings(extra, expected, description, image_dir, tmp_path):
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(base_args(image_dir / "scene0.png", tmp_path, endpoint.url) + FAST + extra)
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["settings"]["segmentation"] == expected
    assert analysis["estimator"]["segmentation"].startswith(description)


def test_refinement_options_reach_the_settings_and_the_outputs(image_dir, tmp_path):
    extra = ["--focus", "none", "--refine-fraction", "0", "--max-segments", "30"]
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(base_args(image_dir / "scene0.png", tmp_path, endpoint.url) + FAST + extra)
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    settings = analysis["settings"]
    assert (settings["focus"], settings["refine_fraction"], settings["max_segments"]) == ("none", 0.0, 30)
    assert analysis["estimator"]["refinement"] == "none"
    image = analysis["images"][0]
    assert image["refinement_rounds"] == 0 and image["num_segments_used"] == image["num_segments_coarse"]


def test_endpoint_rejection_exits_1_with_one_line(image_dir, tmp_path):
    with FakeEndpoint("detection") as endpoint:
        endpoint.fail_status = 400
        endpoint.fail_message = "expected (N, H, W, 3) uint8"
        result = run_cli(base_args(image_dir, tmp_path, endpoint.url) + FAST)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: no image could be explained: 2 failed: 2 images: endpoint {endpoint.url}/invocations rejected "
        "the request with HTTP 400: expected (N, H, W, 3) uint8")  # the same reason once, with its count
    assert "Traceback" not in result.output

def test_an_endpoints_error_text_reaches_the_terminal_with_control_characters_escaped(image_dir, tmp_path):
    """The endpoint's own text in the error that ends the run: an escape sequence (here one that retitles
    the terminal window) or a newline in it is shown escaped, as the log line above it shows it."""
    with FakeEndpoint("detection") as endpoint:
        endpoint.fail_status = 400
        endpoint.fail_message = "bad\x1b]0;owned\x07 input\nError: fake"
        result = run_cli(base_args(image_dir, tmp_path, endpoint.url) + FAST)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: no image could be explained: 2 failed: 2 images: endpoint {endpoint.url}/invocations rejected "
        "the request with HTTP 400: bad\\x1b]0;owned\\x07 input\\nError: fake")
    assert "\x1b" not in result.output and "\x07" not in result.output



def test_unreachable_endpoint_exits_1(image_dir, tmp_path):
    with FakeEndpoint() as endpoint:
        url = endpoint.url
    result = run_cli(base_args(image_dir, tmp_path, url) + FAST + ["--max-retries", "0"])
    assert result.exit_code == 1
    assert "Error: endpoint " in result.stderr and "failed after 1 attempt(s), last:" in result.stderr
    assert "cannot connect to" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("value, names", [
    ("circle,square,triangle", ("circle", "square", "triangle")),
    ("person", ("person",)),
    ("traffic light/sign,car", ("traffic light/sign", "car")),  # a list: its names may hold a /
    ("classes.txt", ("circle", "square", "triangle")),  # the file below
    ("notepad.txt", ("circle", "square", "triangle")),  # a byte-order mark is no part of the first name
    ("labels.json", ("circle", "square", "traffic, light")),  # a JSON list, as Clarify writes label_headers
    ("brackets.txt", ("[circle]", "square")),  # one name per line that only starts like JSON
])
def test_label_headers_are_a_file_or_a_list(value, names, tmp_path, monkeypatch):
    from explain.cli import NameList

    monkeypatch.chdir(tmp_path)
    (tmp_path / "classes.txt").write_text("circle\nsquare\n\ntriangle\n")
    (tmp_path / "notepad.txt").write_bytes("\ufeffcircle\r\nsquare\r\ntriangle\r\n".encode())
    (tmp_path / "labels.json").write_text('["circle", "square", "traffic, light"]\n')
    (tmp_path / "brackets.txt").write_text("[circle]\nsquare\n")
    assert NameList(allow_file=True).convert(value, None, None) == names


def test_label_headers_that_do_not_fit_a_model_folders_classes_are_a_usage_error(image_dir, tmp_path,
                                                                                  tiny_detector_dir):
    """The model's model.json names circle, square, triangle: refused before --out is touched."""
    result = run_cli(base_args(image_dir, tmp_path, tiny_detector_dir) + FAST + ["--label-headers", "circle,square"])
    assert result.exit_code == 2, result.output
    assert ("Invalid value for '--label-headers': label_headers has 2 name(s) (circle, square) but the model names "
            "3 classes (circle, square, triangle); give one name per class, in class-id order"
            in " ".join(result.output.split())), result.output
    assert not (tmp_path / "out").exists()


def test_a_model_folder_whose_model_json_misses_a_class_is_blamed_not_label_headers(image_dir, tmp_path,
                                                                                  tiny_detector_dir):
    """The model.json of an archive packaged unchecked names 2 of the detector's 3 classes, and no
    --label-headers was given: the error blamed --label-headers."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_detector_dir, model_dir)
    spec = json.loads((model_dir / "model.json").read_text())
    (model_dir / "model.json").write_text(json.dumps(dict(spec, classes=["circle", "square"])))
    result = run_cli(base_args(image_dir, tmp_path, model_dir) + FAST)
    assert result.exit_code == 2, result.output
    assert ("Invalid value for '--endpoint': the model's model.json names 2 class(es) (circle, square) but the model "
            "answered a detection of class id 2, which needs at least 3 names; package the model again with one name "
            "per class, in class-id order (`clearsight deploy package` checks them)"
            in " ".join(result.output.split())), result.output
    assert "--label-headers" not in result.output


def test_a_usage_error_quotes_class_names_with_control_characters_escaped(image_dir, tmp_path, tiny_detector_dir):
    """Class names from a file (or a Clarify config) someone else wrote: an escape sequence in one reached the
    terminal raw in the usage error that names them."""
    names = tmp_path / "names.txt"
    names.write_text("circle\x1b]0;owned\x07\nsquare\n", encoding="utf-8")
    result = run_cli(base_args(image_dir, tmp_path, tiny_detector_dir) + FAST + ["--label-headers", names])
    assert result.exit_code == 2, result.output
    assert ("label_headers has 2 name(s) (circle\\x1b]0;owned\\x07, square) but the model names 3 classes"
            in " ".join(result.output.split())), result.output
    assert "\x1b" not in result.output and "\x07" not in result.output


def test_label_headers_that_do_not_fit_a_classifiers_answer_are_a_usage_error(image_dir, tmp_path):
    """An endpoint says how many classes it has with its first answer: the run stops there."""
    with FakeEndpoint("classification") as endpoint:  # 4 classes
        result = run_cli(base_args(image_dir, tmp_path, endpoint.url, task="classification") + FAST
                         + ["--label-headers", "cat,dog"])
    assert result.exit_code == 2, result.output
    assert ("Invalid value for '--label-headers': label_headers has 2 name(s) (cat, dog) but the model returns 4 "
            "class scores; give one name per class, in class-id order" in " ".join(result.output.split()))
    assert "Traceback" not in result.output
    assert not list((tmp_path / "out").glob("*.npz"))


def test_label_headers_too_short_for_a_detection_endpoints_classes_are_a_usage_error(image_dir, tmp_path,
                                                                                      detector_endpoint):
    """A detection endpoint never says its class count: the real local endpoint (deploy serve) answers class ids
    0, 1 and 2 (every score, score_threshold=0), and two names cannot name class 2: the run stops there."""
    result = run_cli(base_args(image_dir, tmp_path, detector_endpoint.url) + FAST + ["--label-headers", "circle,square"])
    assert result.exit_code == 2, result.output
    assert ("Invalid value for '--label-headers': label_headers has 2 name(s) (circle, square) but the model answered "
            "a detection of class id 2, which needs at least 3 names; give one name per class, in class-id order (a "
            "detection endpoint does not say how many classes it has)") in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not list((tmp_path / "out").glob("*.npz"))
    fitting = run_cli(base_args(image_dir, tmp_path, detector_endpoint.url) + FAST
                      + ["--label-headers", "circle,square,triangle", "--restart"])
    assert fitting.exit_code == 0, fitting.output


def test_a_class_named_twice_in_labels_is_one_target(image_dir, tmp_path):
    with FakeEndpoint("classification") as endpoint:  # 4 classes
        result = run_cli(base_args(image_dir / "scene0.png", tmp_path, endpoint.url, task="classification") + FAST
                         + ["--labels", "c1,c3,1", "--label-headers", "c0,c1,c2,c3"])
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert [target["class_id"] for target in analysis["images"][0]["targets"]] == [1, 3]


@pytest.mark.integration  # starts processes (no fixture says so)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_settings_error_raised_in_a_worker_names_its_option(workers, image_dir, tmp_path):
    """--workers 2 sends ConfigError back from spawned processes (pickled): it keeps its ``field``."""
    with FakeEndpoint("classification") as endpoint:  # 4 classes, no label headers
        result = run_cli(base_args(image_dir, tmp_path, endpoint.url, task="classification") + FAST
                         + ["--labels", "zebra", "--workers", workers])
    assert result.exit_code == 2, result.output
    assert ("Invalid value for '--labels': labels: 'zebra' is not a known class; expected a class id "
            "in [0, 3]") in " ".join(result.output.split())
    assert "Traceback" not in result.output


@pytest.mark.integration  # starts processes (no fixture says so)
def test_python_dash_m_explain_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "explain", "--task", "detection"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Usage: python -m explain" in result.stderr and "Missing option '--out'" in result.stderr


@pytest.mark.integration  # starts processes (no fixture says so)
@pytest.mark.parametrize("closed", [1, 2])
def test_a_run_started_without_stdout_or_stderr_explains_as_usual(closed, image_dir, tmp_path, tiny_detector_dir):
    """Review 40, D3: `clearsight explain ... 2>&-` explained nothing and exited 1 without a word (the progress
    bar wrote to sys.stderr, None)."""
    args = [str(arg) for arg in base_args(image_dir / "scene0.png", tmp_path, tiny_detector_dir)]
    result = subprocess.run([sys.executable, "-m", "explain", *args, "--num-samples", "16", "--num-segments", "4"],
                            cwd=ROOT, preexec_fn=lambda: os.close(closed), timeout=300,
                            stdout=subprocess.DEVNULL if closed == 2 else None,
                            stderr=subprocess.DEVNULL if closed == 1 else None)
    assert result.returncode == 0
    assert (tmp_path / "out" / "shap_scene0.png_box1_object.jpeg").is_file()
    assert (tmp_path / "out" / "report.html").is_file()


@pytest.mark.integration  # starts processes (no fixture says so)
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_summary_stdout_cannot_take_is_one_error_line_after_the_results(image_dir, tmp_path, tiny_detector_dir):
    """Review 40, D3: `explain ... >/dev/full` ended with a traceback once every result was written."""
    args = [str(arg) for arg in base_args(image_dir / "scene0.png", tmp_path, tiny_detector_dir)]
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "explain", *args, *FAST], cwd=ROOT, stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr == ("Error: cannot write the summary to stdout (No space left on device); the results are "
                             f"in {tmp_path / 'out'}\n")
    assert (tmp_path / "out" / "report.html").is_file()


@pytest.mark.integration  # starts processes (no fixture says so)
def test_a_locale_whose_file_names_are_not_utf8_is_warned_about_and_its_failure_is_one_line(
        image_dir, tmp_path, tiny_detector_dir):
    """Review 40, D2: a --out begun in a UTF-8 locale and resumed where Python's file names are ASCII (LC_ALL=C,
    PYTHONUTF8=0) ended in a UnicodeEncodeError traceback; such a locale gives non-ASCII names other keys."""
    images = tmp_path / "photos"
    images.mkdir()
    shutil.copy(image_dir / "scene0.png", images / "fa\u00e7ade.png")
    args = [sys.executable, "-m", "explain", *map(str, base_args(images, tmp_path, tiny_detector_dir)),
            "--num-samples", "16", "--num-segments", "4", "--quiet"]
    utf8 = subprocess.run(args, cwd=ROOT, capture_output=True, timeout=300)
    assert utf8.returncode == 0, utf8.stderr
    ascii_locale = dict(os.environ, LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    resumed = subprocess.run(args, cwd=ROOT, capture_output=True, timeout=300, env=ascii_locale)
    stderr = resumed.stderr.decode("ascii", "backslashreplace")
    assert resumed.returncode == 1 and "Traceback" not in stderr, stderr
    assert "WARNING explain.cli: Python reads and writes file names as ascii here (a locale without UTF-8)" in stderr
    assert "Error: a file name holds '" in stderr  # then the letter, as the terminal's encoding allows
    assert stderr.endswith("', which file names cannot hold in this locale's "
                           f"encoding (ascii): run with PYTHONUTF8=1 (or a UTF-8 locale), as the run that wrote "
                           f"--out {tmp_path / 'out'} was\n"), stderr


def test_explains_with_an_in_process_model(image_dir, tmp_path, tiny_detector_dir):
    result = run_cli(base_args(image_dir / "scene0.png", tmp_path, tiny_detector_dir) + FAST)
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["predictor"]["transport"] == "in-process"
    assert analysis["settings"]["label_headers"] == ["circle", "square", "triangle"]  # from model.json
    assert (tmp_path / "out" / "shap_scene0.png_box1_object.jpeg").is_file()


@pytest.mark.integration
def test_explains_against_the_real_local_endpoint(image_dir, tmp_path, detector_endpoint):
    result = run_cli(base_args(image_dir, tmp_path, detector_endpoint.url) + FAST
                     + ["--label-headers", "circle,square,triangle"])
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["totals"]["images"] == 2 and analysis["totals"]["targets"] >= 2
    assert analysis["predictor"]["requests"] >= 2 and analysis["predictor"]["failed_requests"] == 0


def test_a_transport_error_is_reported_against_its_option(image_dir, tmp_path):
    result = run_cli(base_args(image_dir, tmp_path) + ["--concurrency", "0"])
    assert result.exit_code == 2, result.output
    assert ("Invalid value for '--concurrency': concurrency must be an integer in [1, 256], got 0"
            in " ".join(result.output.split()))
    assert not (tmp_path / "out").exists()


def test_a_run_where_no_image_can_be_read_fails(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = run_cli(["--endpoint", "http://127.0.0.1:9", "--task", "detection", "--out", tmp_path / "out",
                      "--quiet", broken])
    assert result.exit_code == 1, result.output
    assert "Error: no image could be explained: 1 failed: cannot read image" in result.output
    assert "broken.png" in result.output and not (tmp_path / "out" / "analysis.json").exists()


def test_endpoint_credentials_are_never_shown_or_stored(image_dir, tmp_path):
    """http://user:password@host: the password is sent (basic auth) but never printed, logged or written."""
    with FakeEndpoint("detection") as endpoint:
        url = endpoint.url.replace("http://", "http://scott:tiger-s3cret@")
        result = run_cli(base_args(image_dir, tmp_path, url) + FAST)
        sent = endpoint.requests[0]
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["predictor"]["endpoint"] == endpoint.url.replace("http://", "http://scott:***@") + "/invocations"
    written = "".join(path.read_text(errors="replace") for path in (tmp_path / "out").iterdir() if path.is_file())
    assert "tiger-s3cret" not in result.output + written
    assert sent["authorization"].startswith("Basic ")  # the credentials did reach the endpoint

    refused = run_cli(base_args(image_dir, tmp_path / "again", url.replace(endpoint.url.split(":")[-1], "9"))
                      + FAST + ["--max-retries", "0"])
    assert refused.exit_code == 1 and "cannot connect to http://scott:***@127.0.0.1:9/invocations" in refused.stderr
    assert "tiger-s3cret" not in refused.output
    bad = run_cli(base_args(image_dir, tmp_path / "bad", "ftp://scott:tiger-s3cret@host/model"))
    assert bad.exit_code == 2 and "'ftp://scott:***@host/model'" in bad.output and "tiger" not in bad.output


def test_an_endpoint_query_is_sent_after_the_path_and_never_shown_or_stored(image_dir, tmp_path):
    """Review 6: ``?api_key=SECRET`` went before /invocations (404 for every image) and was printed."""
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(base_args(image_dir, tmp_path, endpoint.url + "/?api_key=SECRET123") + FAST)
        paths = {request["path"] for request in endpoint.requests}
    assert result.exit_code == 0, result.output
    assert paths == {"/invocations?api_key=SECRET123"}
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["predictor"]["endpoint"] == endpoint.url + "/invocations?api_key=***"
    written = "".join(path.read_text(errors="replace") for path in (tmp_path / "out").iterdir() if path.is_file())
    assert "SECRET123" not in result.output + written

    refused = run_cli(base_args(image_dir, tmp_path / "again", "http://127.0.0.1:9?api_key=SECRET123") + FAST
                      + ["--max-retries", "0"])
    assert refused.exit_code == 1 and "cannot connect to http://127.0.0.1:9/invocations?api_key=***" in refused.stderr
    assert "SECRET123" not in refused.output


# --------------------------------------------------------------------------------------
# Logging: -v shows retries (INFO), the deprecated AWS variable is named
# --------------------------------------------------------------------------------------

@pytest.mark.integration  # runs python -m explain in a subprocess (its own logging setup)
@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_verbose_shows_retries(verbose, image_dir, tmp_path):
    with FakeEndpoint("detection") as endpoint:
        endpoint.fail_first = 1  # one 503, retried
        result = subprocess.run(
            [sys.executable, "-m", "explain", *verbose, *map(str, base_args(image_dir / "scene0.png", tmp_path,
                                                                             endpoint.url)), *FAST],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "1 retries" in result.stdout
    retry_lines = [line for line in result.stderr.splitlines()
                   if line.startswith("INFO explain.predictors.engine: retrying in ")]
    assert len(retry_lines) == (1 if verbose else 0), result.stderr
    if verbose:
        assert "No worker is available to serve request" in retry_lines[0]


def test_the_progress_bar_counts_model_calls_beside_images(image_dir, tmp_path):
    # review 43: with a large --num-samples the bar stayed at 0/1 for minutes, like a hang
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(base_args(image_dir / "scene0.png", tmp_path, endpoint.url)
                         + ["--num-samples", "16", "--num-segments", "4"])
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    calls = analysis["images"][0]["model_calls"]
    assert f"{calls} model calls" in result.stderr, result.stderr


@pytest.mark.integration  # runs python -m explain in a subprocess (its own logging setup)
def test_warnings_are_printed_on_their_own_line_above_the_progress_bar(image_dir, tmp_path):
    # 16 samples for 12 segments: kernel_shap warns while the images bar is drawn; the warning
    # was written after the bar's text on the same line.
    with FakeEndpoint("detection") as endpoint:
        result = subprocess.run(
            [sys.executable, "-m", "explain", *map(str, base_args(image_dir / "scene0.png", tmp_path, endpoint.url)),
             "--num-samples", "16", "--num-segments", "12"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "images:" in result.stderr  # the bar was drawn
    starts = [index for index in range(len(result.stderr)) if result.stderr.startswith("WARNING ", index)]
    assert starts, result.stderr
    assert all(index == 0 or result.stderr[index - 1] in "\r\n" for index in starts), repr(result.stderr)


def test_the_old_aws_endpoint_variable_is_named_as_deprecated(image_dir, tmp_path, caplog):
    with FakeEndpoint("detection") as endpoint, caplog.at_level("WARNING", logger="explain.cli"):
        result = run_cli(base_args(image_dir / "scene0.png", tmp_path, endpoint.url) + FAST,
                         env={"CLEARSIGHT_AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 0, result.output
    assert ("CLEARSIGHT_AWS_ENDPOINT_URL is deprecated: set AWS_ENDPOINT_URL (every AWS service) or "
            "AWS_ENDPOINT_URL_S3, which boto3 reads itself") in caplog.text


# Detection-only options on a classification run: one warning naming those given; marked not applied.
DETECTION_OPTIONS_ON_CLASSIFICATION = [
    (["--context", "0"], {}, "--context applies to detection only"),
    (["--max-objects", "2", "--iou-threshold", "0.9", "--probability-threshold", "0.99"], {},
     "--probability-threshold, --max-objects, --iou-threshold apply to detection only"),
    (["--focus", "none"], {}, "--focus applies to detection only"),
    ([], {"CLEARSIGHT_EXPLAIN_CONTEXT": "0.5"}, "--context applies to detection only"),
]


@pytest.mark.parametrize("extra, env, warning", DETECTION_OPTIONS_ON_CLASSIFICATION)
def test_detection_options_on_a_classification_run_warn_and_are_marked_not_applied(extra, env, warning, image_dir,
                                                                                   tmp_path, caplog):
    from tests.report_html import page_text

    with FakeEndpoint("classification") as endpoint, caplog.at_level("WARNING", logger="explain.cli"):
        result = run_cli(base_args(image_dir / "scene0.png", tmp_path, endpoint.url, task="classification")
                         + FAST + extra, env=env)
    assert result.exit_code == 0, result.output
    warnings = [record.getMessage() for record in caplog.records if "detection only" in record.getMessage()]
    assert len(warnings) == 1
    one = "," not in warning  # one option: "applies ... it is ignored" (review 19: "--context apply")
    assert warnings[0] == (f"{warning}; this run is --task classification, so {'it is' if one else 'they are'} "
                           f"ignored (analysis.json lists {'it' if one else 'them'} under settings_not_applied)")
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert sorted(analysis["settings_not_applied"]) == ["context", "focus", "iou_threshold", "max_objects",
                                                        "probability_threshold"]
    text = page_text(tmp_path / "out" / "report.html")
    assert text.count("(not applied: detection only: this run is classification)") == 5


def test_a_classification_run_without_detection_options_does_not_warn(image_dir, tmp_path, caplog):
    with FakeEndpoint("classification") as endpoint, caplog.at_level("WARNING", logger="explain.cli"):
        result = run_cli(base_args(image_dir / "scene0.png", tmp_path, endpoint.url, task="classification") + FAST)
    assert result.exit_code == 0, result.output
    assert "detection only" not in caplog.text
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(base_args(image_dir / "scene0.png", tmp_path / "d", endpoint.url) + FAST + ["--context", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d" / "out" / "analysis.json").read_text())["settings_not_applied"] == {}


# --------------------------------------------------------------------------------------
# An endpoint this machine cannot call: one line at the first image, nothing recorded as failed
# --------------------------------------------------------------------------------------

@pytest.fixture()
def no_aws_credentials(monkeypatch, tmp_path):
    """An environment where boto3 finds a region but no credentials (no files, no instance metadata)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "CLEARSIGHT_EXPLAIN_ENDPOINT_MAP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never AWS itself, whatever happens
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # an earlier test's session holds its credentials


def _six_images(tmp_path) -> Path:
    from PIL import Image

    folder = tmp_path / "six"
    folder.mkdir()
    for index in range(6):
        Image.fromarray(np.full((40, 48, 3), 40 * index, dtype=np.uint8)).save(folder / f"scene{index}.png")
    return folder


@pytest.mark.parametrize("how, origin", [
    ("clarify", "the Clarify config's predictor.endpoint_name"),
    ("option", "--endpoint"),
    ("workers", "--endpoint"),
])
def test_no_aws_credentials_stop_the_run_with_one_line_naming_the_endpoint_and_the_map(how, origin, tmp_path,
                                                                                        no_aws_credentials):
    images = _six_images(tmp_path)
    if how == "clarify":
        config = tmp_path / "analysis_config.json"
        config.write_text(json.dumps({
            "dataset_type": "application/x-image",
            "methods": {"shap": {"image_config": {"model_type": "OBJECT_DETECTION"}}},
            "predictor": {"endpoint_name": "my-detector", "label_headers": ["red", "green", "blue"]}}))
        args = ["--clarify-config", config]
    else:
        args = ["--endpoint", "sagemaker:my-detector", "--task", "detection"]
    args += ["--out", tmp_path / "out", *FAST, images] + (["--workers", "2"] if how == "workers" else [])
    result = run_cli(args)
    assert result.exit_code == 1, result.output
    assert result.output.count("Error:") == 1 and "no AWS credentials found" in result.output
    error_line = result.output[result.output.index("Error:"):].strip()
    assert "\n" not in error_line
    assert error_line == (
        "Error: SageMaker endpoint my-detector: no AWS credentials found: configure them (aws configure, "
        "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY). my-detector (from " + origin + ") was resolved "
        "as a SageMaker endpoint name, called through AWS, because no --endpoint-map entry names it; "
        "--endpoint-map my-detector=URL (e.g. http://127.0.0.1:8080) sends it to a local endpoint instead. The run "
        "stopped at its first image; no image was recorded as failed")
    manifest_lines = [line for path in (tmp_path / "out").glob("manifest*.jsonl")
                      for line in path.read_text().splitlines()]
    assert manifest_lines == []


# Network options with a model run in process: one warning naming those given; marked not applied.
NETWORK_OPTIONS_IN_PROCESS = [
    (["--concurrency", "8"], "--concurrency", "one forward pass at a time", ["concurrency"]),
    (["--timeout", "5", "--max-retries", "1"], "--timeout, --max-retries",
     "no network call to wait for; no network call to retry", ["max_retries", "timeout"]),
    (["--target-model", "a.tar.gz"], "--target-model",
     "it is the one model; there is no multi-model endpoint to address", ["target_model"]),
    (["--content-type", "image/jpeg", "--custom-attributes", "score_threshold=0.2", "--max-payload-bytes",
      "9000000"], None, None, []),
]


@pytest.mark.parametrize("extra, named, reasons, not_applied", NETWORK_OPTIONS_IN_PROCESS)
def test_network_options_with_an_in_process_model_warn_and_are_marked_not_applied(extra, named, reasons, not_applied,
                                                                                  image_dir, tmp_path, caplog,
                                                                                  tiny_detector_dir):
    with caplog.at_level("WARNING", logger="explain.cli"):
        result = run_cli(base_args(image_dir / "scene0.png", tmp_path, tiny_detector_dir) + FAST + extra)
    assert result.exit_code == 0, result.output
    warnings = [record.getMessage() for record in caplog.records if "in this process" in record.getMessage()]
    if named is None:
        assert warnings == []
    else:
        one = "," not in named  # one option: "does not apply ... it is ignored" (review 19: "--concurrency do not")
        assert warnings == [f"{named} {'does not apply' if one else 'do not apply'} to a model run in this process "
                            f"({tiny_detector_dir}): {reasons}; {'it is' if one else 'they are'} ignored (analysis.json "
                            f"lists {'it' if one else 'them'} under settings_not_applied)"]
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert sorted(analysis["settings_not_applied"]) == not_applied


@pytest.mark.parametrize("name, shown", [
    ("plain.png", "plain.png"),
    ("two\nlines.png", "two\\nlines.png"),  # would look like a log line of its own
    ("\x1b[2Jclear.png", "\\x1b[2Jclear.png"),  # would clear the terminal
    ("tab\tcr\r\x7f\x9b.png", "tab\\tcr\\r\\x7f\\x9b.png"),
    ("café 猫.png", "café 猫.png"),  # printable non-ASCII stays
    ("x\u202ebroken.png", "x\\u202ebroken.png"),  # a right-to-left override: 'xgnp.nekorb' on a bidi terminal
    ("a\u2066b\u2069.png", "a\\u2066b\\u2069.png"),  # isolates
    ("line\u2028sep\u2029.png", "line\\u2028sep\\u2029.png"),  # line breaks to str.splitlines and log viewers
    ("שלום.png", "שלום.png"),  # right-to-left letters stay
])
def test_names_reach_the_terminal_with_control_characters_escaped(name, shown):
    """Review 17, F11: a name quoted by a log line is escaped; the message's own text is not."""
    import logging

    from explain.terminal import LOG_FORMAT, TerminalFormatter, printable

    assert printable(name) == shown
    record = logging.makeLogRecord({"msg": "%s: explained with %d segments", "args": (name, 3),
                                    "levelname": "WARNING", "name": "explain.runner"})
    assert TerminalFormatter(LOG_FORMAT).format(record) == f"WARNING explain.runner: {shown}: explained with 3 segments"
    assert record.args == (name, 3)  # other handlers (a log file) still get the name as it is
    as_path = logging.makeLogRecord({"msg": "%s is skipped", "args": (Path(name),), "levelname": "WARNING",
                                     "name": "explain.sources"})  # review 18: a path argument too
    assert TerminalFormatter(LOG_FORMAT).format(as_path) == f"WARNING explain.sources: {shown} is skipped"


def test_a_name_that_stdout_cannot_encode_is_listed_escaped_not_a_crash(image_dir, tmp_path):
    """A Latin-1 terminal (LANG=de_DE.ISO-8859-1, PYTHONIOENCODING=latin-1, a cp1252 console): the summary
    naming a failed image '猫.png' raised UnicodeEncodeError after the run, a traceback and exit 1 instead
    of the summary; the name is written with backslash escapes, as the log line on stderr writes it."""
    (image_dir / "broken 猫 café.png").write_bytes(b"not a png")
    with FakeEndpoint("detection") as endpoint:
        result = CliRunner(charset="latin-1").invoke(
            main, [str(arg) for arg in base_args(image_dir, tmp_path, endpoint.url) + FAST + ["--allow-partial"]],
            prog_name="python -m explain")
    assert result.exit_code == 0, result.output
    assert f"  {image_dir}/broken \\u732b café.png: image: cannot read image " in result.stdout
    assert result.stdout.splitlines()[-1] == f"results in {tmp_path / 'out'} (report: {tmp_path / 'out' / 'report.html'})"


def test_a_failed_images_name_is_listed_with_control_characters_escaped(image_dir, tmp_path):
    (image_dir / "evil\n\x1b[2J.png").write_bytes(b"not a png")
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(base_args(image_dir, tmp_path, endpoint.url) + FAST)
    assert result.exit_code == 1, result.output
    assert f"  {image_dir}/evil\\n\\x1b[2J.png: image: cannot read image " in result.stdout
    assert "\x1b" not in result.stdout and "evil\n" not in result.stdout


def test_the_http_libraries_debug_lines_hide_the_query_values_and_password():
    # review 23: -vv showed urllib3's 'POST /invocations?api_key=TOPSECRETKEY' while clearsight's own said api_key=***
    import logging

    from explain.terminal import LOG_FORMAT, TerminalFormatter

    formatter = TerminalFormatter(LOG_FORMAT)
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1, '%s://%s:%s "%s %s %s" %s %s',
                               ("http", "127.0.0.1", 8080, "POST", "/invocations?api_key=TOPSECRETKEY", "HTTP/1.1",
                                200, 10523), None)
    shown = formatter.format(record)
    assert "TOPSECRETKEY" not in shown and '"POST /invocations?api_key=*** HTTP/1.1" 200' in shown
    connect = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1, "Starting new connection: %s",
                                ("http://user:s3cretpw@127.0.0.1:8080/?k=v",), None)
    assert "s3cretpw" not in formatter.format(connect)
    own = logging.LogRecord("explain.sources", logging.WARNING, __file__, 1, "%s failed", ("photo?.png",), None)
    assert formatter.format(own).endswith("photo?.png failed")  # other loggers' names stay as they are
