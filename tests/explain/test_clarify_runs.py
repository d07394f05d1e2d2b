"""Clarify analysis configurations written by the SageMaker SDK run with --clarify-config alone.

The configurations come from the installed SDK's own classes (DataConfig, ModelConfig,
ModelPredictedLabelConfig, ImageConfig, SHAPConfig -> _AnalysisConfigGenerator, what
SageMakerClarifyProcessor.run_explainability writes to analysis_config.json), never by hand.
The SDK hands Clarify the dataset as a ProcessingInput; the tests add ``dataset_uri``, the
key Clarify's schema has for it, which is how a local run finds the images. The endpoint
name resolves through the documented endpoint map (CLEARSIGHT_EXPLAIN_ENDPOINT_MAP).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from explain.clarify_config import CLARIFY_SEGMENTATION
from explain.cli import main
from tests.clarify_configs import ENDPOINT_NAME, sdk_analysis_config
from tests.conftest import ServeProcess
from tests.fake_endpoint import FakeEndpoint

pytest_plugins = ["tests.conftest_moto"]  # fixtures: moto_url (per module), aws (per test)

ROOT = Path(__file__).resolve().parents[2]
SHAPES = ["circle", "square", "triangle"]


def write_config(folder: Path, config: dict, dataset_uri: str) -> Path:
    path = folder / "analysis_config.json"
    path.write_text(json.dumps({**config, "dataset_uri": dataset_uri}))
    return path


@pytest.fixture()
def photos(tmp_path) -> Path:
    """Two 48x64 PNG scenes of the shapes detector's world: a bright square on a noisy background."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for index in range(2):
        image = rng.integers(90, 140, size=(48, 64, 3), dtype=np.uint8)
        image[10:30, 12 + 10 * index:32 + 10 * index] = (230, 40, 40)
        Image.fromarray(image).save(folder / f"scene{index}.png")
    return folder


def run_cli(args, env=None):
    return CliRunner().invoke(main, [str(arg) for arg in args], env=env, prog_name="python -m explain")


def endpoint_map(url: str) -> dict:
    return {"CLEARSIGHT_EXPLAIN_ENDPOINT_MAP": f"{ENDPOINT_NAME}={url}"}


# --------------------------------------------------------------------------------------
# In-test HTTP endpoints (fast)
# --------------------------------------------------------------------------------------

def test_a_detection_config_runs_alone_against_the_mapped_endpoint(photos, tmp_path):
    config = write_config(tmp_path, sdk_analysis_config("OBJECT_DETECTION", ["red", "green", "blue"],
                                                        custom_attributes="score_threshold=0", max_objects=2,
                                                        probability_threshold=0.3), "photos")
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(["--clarify-config", config, "--out", tmp_path / "out", "--quiet"],
                         env=endpoint_map(endpoint.url))
        attributes = {request["custom_attributes"] for request in endpoint.requests}
        url = endpoint.url
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["predictor"]["endpoint"] == f"{url}/invocations"
    settings = analysis["settings"]
    assert (settings["task"], settings["num_samples"], settings["num_segments"], settings["seed"]) == (
        "detection", 16, 4, 1)
    assert (settings["max_objects"], settings["probability_threshold"]) == (2, 0.3)
    assert settings["label_headers"] == ["red", "green", "blue"]
    assert attributes == {"score_threshold=0"}
    assert analysis["totals"]["images"] == 2 and analysis["totals"]["targets"] >= 2
    for stem in ("scene0.png", "scene1.png"):  # explain.sources.output_stem: only .jpg is dropped
        assert (tmp_path / "out" / f"shap_{stem}_box1_object.jpeg").is_file()
    assert "explained 2 image(s)" in result.stdout


def test_a_dataset_uri_folder_leaves_out_earlier_outputs_inside_it(photos, tmp_path):
    """review 32, finding 1: the tool's own heat maps in photos/explanations were explained as images on the
    next run of a config whose dataset_uri is the folder (an IMAGE argument already left them out)."""
    config = write_config(tmp_path, sdk_analysis_config("OBJECT_DETECTION", ["red", "green", "blue"]), "photos")
    with FakeEndpoint("detection") as endpoint:
        first = run_cli(["--clarify-config", config, "--out", photos / "explanations", "--quiet"],
                        env=endpoint_map(endpoint.url))
        second = run_cli(["--clarify-config", config, "--out", tmp_path / "again", "--quiet"],
                         env=endpoint_map(endpoint.url))
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert list(photos.glob("explanations/shap_*.jpeg"))
    assert "explained 2 image(s)" in second.stdout, second.output


def test_a_classification_config_with_a_probability_path_and_target_model(photos, tmp_path):
    config = write_config(tmp_path, sdk_analysis_config(
        "IMAGE_CLASSIFICATION", ["red", "green", "blue", "other"], probability="[*]",
        target_model="model-b.tar.gz"), str(photos / "scene0.png"))
    with FakeEndpoint("classification") as endpoint:
        result = run_cli(["--clarify-config", config, "--out", tmp_path / "out", "--quiet"],
                         env=endpoint_map(endpoint.url))
        target_models = {request["target_model"] for request in endpoint.requests}
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["settings"]["task"] == "classification"
    assert analysis["predictor"]["probability"] == "[*]"
    assert target_models == {"model-b.tar.gz"}
    assert (tmp_path / "out" / "shap_scene0.png.jpeg").is_file()


@pytest.mark.parametrize("probability", [None, "prediction"])
def test_a_builtin_object_detection_endpoint(photos, tmp_path, probability):
    """SageMaker's built-in Object Detection algorithm: image/png in, {"prediction": rows} out."""
    config = write_config(tmp_path, sdk_analysis_config("OBJECT_DETECTION", ["red", "green", "blue"],
                                                        content_type="image/png", probability=probability),
                          "photos")
    with FakeEndpoint("detection") as endpoint:
        endpoint.answer_format = "object-detection"
        result = run_cli(["--clarify-config", config, "--out", tmp_path / "out", "--quiet"],
                         env=endpoint_map(endpoint.url))
        images_per_request = {request["images"] for request in endpoint.requests}
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert images_per_request == {1}
    assert analysis["totals"]["images"] == 2 and analysis["totals"]["targets"] >= 2


def test_a_manifest_as_dataset_uri(photos, tmp_path):
    manifest = tmp_path / "images.manifest"
    manifest.write_text(json.dumps([{"prefix": "photos/"}, "scene1.png"]))
    config = write_config(tmp_path, sdk_analysis_config("OBJECT_DETECTION", ["red", "green", "blue"]),
                          "images.manifest")
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(["--clarify-config", config, "--out", tmp_path / "out", "--quiet"],
                         env=endpoint_map(endpoint.url))
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert [item["stem"] for item in analysis["images"]] == ["scene1.png"]


def test_a_clarify_run_with_a_bad_image_lists_it_and_exits_1_unless_partial_runs_are_allowed(photos, tmp_path):
    """The Clarify path ends as any run does: the failure listed, exit 1, and 0 with --allow-partial
    (here through the environment, CLEARSIGHT_EXPLAIN_ALLOW_PARTIAL)."""
    (photos / "notes.png").write_bytes(b"meeting notes, saved with the wrong extension")
    config = write_config(tmp_path, sdk_analysis_config("OBJECT_DETECTION", ["red", "green", "blue"]), "photos")
    with FakeEndpoint("detection") as endpoint:
        strict = run_cli(["--clarify-config", config, "--out", tmp_path / "out", "--quiet"],
                         env=endpoint_map(endpoint.url))
        partial = run_cli(["--clarify-config", config, "--out", tmp_path / "out", "--quiet"],
                          env={**endpoint_map(endpoint.url), "CLEARSIGHT_EXPLAIN_ALLOW_PARTIAL": "1"})
    assert strict.exit_code == 1, strict.output
    assert f"  {photos / 'notes.png'}: image: cannot read image" in strict.stdout
    assert ("Error: 1 image(s) failed (listed above and in analysis.json); the others were explained. Add "
            "--allow-partial to exit 0 on such runs") in strict.stderr
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["totals"]["images"] == 2 and [item["key"] for item in analysis["totals"]["failed"]] == [
        "notes.png"]
    assert partial.exit_code == 0, partial.output
    assert "1 image(s) failed (1 in an earlier run, not tried again: --retry-failed tries them):" in partial.stdout


def test_image_arguments_and_options_override_the_config(photos, tmp_path):
    config = write_config(tmp_path, sdk_analysis_config("OBJECT_DETECTION", ["red", "green", "blue"]), "nowhere")
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(["--clarify-config", config, "--endpoint", endpoint.url, "--num-samples", "12",
                          "--out", tmp_path / "out", "--quiet", photos / "scene0.png"])
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["settings"]["num_samples"] == 12 and analysis["totals"]["images"] == 1
    # review 32, finding 7: the run records that its settings came from the file, and what it ignored there
    source = analysis["settings_source"]
    assert source["clarify_config"] == str(config)
    assert source["options_from_config"]["num_segments"] == "methods.shap.image_config.num_segments"
    assert source["options_from_config"]["label_headers"] == "predictor.label_headers"
    assert "num_samples" not in source["options_from_config"]
    assert source["options_overridden"] == ["endpoint", "num_samples"]
    assert source["config_keys_ignored"]["methods.report.title"] == "the report's title is fixed"
    report = (tmp_path / "out" / "report.html").read_text()
    assert f"Clarify config {config}" in report
    assert "set there but overridden by options or their variables: --endpoint, --num-samples" in report
    assert (source["dataset_uri"], source["images_from_dataset_uri"]) == (str(tmp_path / "nowhere"), False)
    assert f"images given instead of its dataset_uri {tmp_path / 'nowhere'}" in report
    assert "keys accepted but ignored: methods.report.title (the report&#x27;s title is fixed)" in report


def test_a_detection_config_run_as_classification_records_its_detection_keys_as_ignored(photos, tmp_path):
    """review 35: --task classification over a detection config recorded max_objects as taken from the file
    while settings_not_applied said it was not applied."""
    config = write_config(tmp_path, sdk_analysis_config("OBJECT_DETECTION", ["red", "green", "blue", "other"],
                                                        max_objects=2, probability_threshold=0.3), "photos")
    with FakeEndpoint("classification") as endpoint:
        result = run_cli(["--clarify-config", config, "--task", "classification", "--out", tmp_path / "out",
                          "--quiet"], env={**endpoint_map(endpoint.url), "CLEARSIGHT_EXPLAIN_MAX_OBJECTS": "3"})
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    source = analysis["settings_source"]
    assert {"max_objects", "probability_threshold"} <= set(analysis["settings_not_applied"])
    assert not {"max_objects", "probability_threshold"} & set(source["options_from_config"])
    assert source["config_keys_ignored"]["methods.shap.image_config.max_objects"] == (
        "object detection only: this run is --task classification")
    assert source["config_keys_ignored"]["probability_threshold"] == (
        "object detection only: this run is --task classification")
    assert source["options_overridden"] == ["max_objects", "task"]  # max_objects: ignored all the same (review 37)
    assert (source["dataset_uri"], source["images_from_dataset_uri"]) == (str(photos), True)


def test_a_run_without_a_clarify_config_records_no_settings_source(photos, tmp_path):
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(["--endpoint", endpoint.url, "--task", "detection", "--num-samples", "12", "--num-segments", "4",
                          "--out", tmp_path / "out", "--quiet", photos / "scene0.png"])
    assert result.exit_code == 0, result.output
    assert "settings_source" not in json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert "Settings from" not in (tmp_path / "out" / "report.html").read_text()


def baseline_png() -> bytes:
    """A 40x40 PNG of coarse noise: a baseline image as a Clarify notebook uploads one to S3."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(9).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)).save(
        buffer, format="PNG")
    return buffer.getvalue()


def shap_values(out: Path) -> dict:
    return {path.name: np.load(path)["shap_values"] for path in sorted(out.glob("*_shap.npz"))}


def test_an_s3_baseline_is_read_as_the_images_are_and_options_replace_it(aws, photos, tmp_path, monkeypatch):
    """A Clarify notebook's methods.shap.baseline is an S3 URI. It was refused, and the message's advice
    (download it, pass --baseline) was refused the same way: the file was rejected before options applied."""
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="baselines/noise_rgb.png", Body=baseline_png())
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where a download would go
    local = tmp_path / "noise_rgb.png"
    local.write_bytes(baseline_png())
    config = sdk_analysis_config("OBJECT_DETECTION", ["red", "green", "blue"])
    config["methods"]["shap"]["baseline"] = f"s3://{aws.bucket}/baselines/noise_rgb.png"
    from_s3 = write_config(tmp_path, config, "photos")
    missing = tmp_path / "missing" / "analysis_config.json"
    missing.parent.mkdir()
    config["methods"]["shap"]["baseline"] = f"s3://{aws.bucket}/baselines/gone.png"
    missing.write_text(json.dumps({**config, "dataset_uri": str(photos)}))
    with FakeEndpoint("detection") as endpoint:
        env = endpoint_map(endpoint.url)
        read = run_cli(["--clarify-config", from_s3, "--out", tmp_path / "s3", "--quiet"], env=env)
        given = run_cli(["--clarify-config", missing, "--baseline", local, "--out", tmp_path / "local", "--quiet"],
                        env=env)
        by_env = run_cli(["--clarify-config", missing, "--out", tmp_path / "env", "--quiet"],
                         env={**env, "CLEARSIGHT_EXPLAIN_BASELINE": "black"})
        refused = run_cli(["--clarify-config", missing, "--out", tmp_path / "refused", "--quiet"], env=env)
    for result in (read, given, by_env):
        assert result.exit_code == 0, result.output
    # the object's bytes are the baseline: the same values as the same image given as a file
    assert shap_values(tmp_path / "s3").keys() == shap_values(tmp_path / "local").keys() != set()
    for name, values in shap_values(tmp_path / "s3").items():
        np.testing.assert_array_equal(values, shap_values(tmp_path / "local")[name])
    assert json.loads((tmp_path / "env" / "analysis.json").read_text())["settings"]["baseline"] == "black"
    assert refused.exit_code == 2, refused.output
    assert (f"Invalid value for '--clarify-config': methods.shap.baseline: cannot read baseline image "
            f"'s3://{aws.bucket}/baselines/gone.png': An error occurred (NoSuchKey)") in " ".join(
                refused.output.split())
    assert not list((tmp_path / "tmp").iterdir())  # the object is read into memory, not into a file
    # the settings, analysis.json and the report name the object, not a temporary copy of it
    uri = f"s3://{aws.bucket}/baselines/noise_rgb.png"
    analysis = json.loads((tmp_path / "s3" / "analysis.json").read_text())
    assert analysis["settings"]["baseline"] == uri
    assert f"the image file {uri}" in analysis["estimator"]["baseline"]
    assert uri in (tmp_path / "s3" / "report.html").read_text()


def test_outputs_made_with_an_s3_baseline_merge_and_resume_by_the_objects_bytes(aws, photos, tmp_path):
    """Shards (the hosts of a Processing job) read the S3 baseline; explain-merge runs where the object may
    no longer be readable, and must not need it. A resumed run matches the object by its bytes: the same
    bytes resume, new bytes under the same URI are other settings."""
    from explain.runner import merge_outputs

    uri = f"s3://{aws.bucket}/baselines/noise_rgb.png"
    aws.clients.s3.put_object(Bucket=aws.bucket, Key="baselines/noise_rgb.png", Body=baseline_png())
    out = tmp_path / "out"
    with FakeEndpoint("detection") as endpoint:
        common = [endpoint.url, "--task", "detection", "--num-samples", "48", "--baseline", uri, "--out", out,
                  "--quiet", photos]
        for shard in ("0/2", "1/2"):
            result = run_cli(["--endpoint", *common, "--shard", shard])
            assert result.exit_code == 0, result.output
        aws.clients.s3.delete_object(Bucket=aws.bucket, Key="baselines/noise_rgb.png")
        summary = merge_outputs(out)  # the settings of the manifests: nothing read from S3
        assert summary["settings"]["baseline"] == uri
        assert summary["totals"]["images"] == len(list(photos.glob("*.png")))
        # in one process, as in a notebook: the object is read as it is now, not as it was
        aws.clients.s3.put_object(Bucket=aws.bucket, Key="baselines/noise_rgb.png", Body=baseline_png())
        resumed = run_cli(["--endpoint", *common])
        assert resumed.exit_code == 0, resumed.output
        assert "all explained by earlier runs" in resumed.output, resumed.output
        aws.clients.s3.put_object(Bucket=aws.bucket, Key="baselines/noise_rgb.png", Body=png_of_zeros())
        changed = run_cli(["--endpoint", *common])
    assert changed.exit_code != 0
    assert f"holds explanations made with other settings (the bytes of baseline image {uri})" in " ".join(
        changed.output.split()), changed.output


def test_an_s3_baseline_replaced_under_the_same_uri_is_read_again_in_the_same_process(aws):
    """A notebook re-uploads its baseline and explains again: the values must be the new baseline's (the
    object was cached by its URI for the life of the process)."""
    from explain.api import Explainer
    from tests.explain.test_explainer import red_square_scene
    from tests.fake_endpoint import fake_model

    uri = f"s3://{aws.bucket}/baselines/changing.png"
    scene = red_square_scene(seed=4)
    base_values = []
    for pixel in (0, 255):  # black, then white: the fake detector's scores are the channel means / 255
        aws.clients.s3.put_object(Bucket=aws.bucket, Key="baselines/changing.png",
                                  Body=png_of(np.full((40, 40, 3), pixel, dtype=np.uint8)))
        with Explainer(lambda batch: fake_model(batch, "detection"), task="detection", baseline=uri,
                       num_samples=48, num_segments=6, seed=1) as explainer:
            base_values.append(explainer(scene).base_values)
    np.testing.assert_allclose(base_values[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(base_values[1], 1.0, atol=1e-6)


def png_of(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_of_zeros() -> bytes:
    return png_of(np.zeros((40, 40, 3), dtype=np.uint8))


def test_an_unmapped_endpoint_name_goes_to_sagemaker(photos, tmp_path, monkeypatch):
    """Without a map entry the name is a SageMaker endpoint, invoked through boto3 (here: no region)."""
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    config = write_config(tmp_path, sdk_analysis_config("OBJECT_DETECTION", ["red"]), "photos")
    result = run_cli(["--clarify-config", config, "--out", tmp_path / "out", "--quiet"])
    assert result.exit_code == 1, result.output
    assert "no AWS region for the SageMaker endpoint" in result.output


def test_a_dataset_uri_prefix_that_cannot_be_listed_is_a_failure_not_a_usage_error(tmp_path, monkeypatch):
    """review 32, finding 5: exit 2 naming --clarify-config; as an IMAGE argument the same prefix exits 1."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    for name, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    config = write_config(tmp_path, sdk_analysis_config("OBJECT_DETECTION", ["red"]), "s3://photos/scenes/")
    result = run_cli(["--clarify-config", config, "--out", tmp_path / "out", "--quiet"])
    assert result.exit_code == 1, result.output
    assert "Error: dataset_uri 's3://photos/scenes/': cannot list s3://photos/scenes/: Could not connect" in (
        " ".join(result.output.split())), result.output


BAD_RUNS = [
    ({"dataset_uri": "empty"}, [],
     "Invalid value for '--clarify-config': dataset_uri '{tmp}/empty': no .jpg/.jpeg/.png files in directory"),
    ({"dataset_uri": "missing.manifest"}, [],
     "Invalid value for '--clarify-config': dataset_uri '{tmp}/missing.manifest': cannot read manifest"),
    ({}, ["--endpoint-map", "bad name=http://x"],
     "Invalid value for '--endpoint-map': endpoint map entry 'bad name=http://x': 'bad name' is not a SageMaker "
     "endpoint name"),
    ({}, ["--endpoint-map", "just-a-name"],
     "Invalid value for '--endpoint-map': endpoint map entries look like NAME=URL"),
    ({"predictor": {"label_headers": ["a"], "model_name": "my-model", "instance_type": "ml.m5.xlarge",
                    "initial_instance_count": 1}}, [],
     "Missing option '--endpoint' (env var: 'CLEARSIGHT_EXPLAIN_ENDPOINT'). The Clarify config names a model "
     "(predictor.model_name) but no endpoint_name: serve the model (clearsight deploy serve, or clearsight deploy sagemaker up) and give its endpoint."),
    ({"predictor": {}}, [],
     "Missing option '--endpoint' (env var: 'CLEARSIGHT_EXPLAIN_ENDPOINT'). The Clarify config has no "
     "predictor.endpoint_name: add it, or give --endpoint."),
    ({"predictor": {"label_headers": ["a"], "endpoint_name": ENDPOINT_NAME, "label": "predicted_label",
                    "content_type": "application/x-npy"}}, [],
     "predictor.label locates predicted labels, but Kernel SHAP needs every class's score"),
]


@pytest.mark.parametrize("changes, extra, message", BAD_RUNS)
def test_unusable_clarify_runs_are_usage_errors(changes, extra, message, tmp_path):
    (tmp_path / "empty").mkdir()
    config = {**sdk_analysis_config("OBJECT_DETECTION", ["red"]), "dataset_uri": "photos", **changes}
    path = tmp_path / "analysis_config.json"
    path.write_text(json.dumps(config))
    result = run_cli(["--clarify-config", path, "--out", tmp_path / "out", *extra])
    assert result.exit_code == 2, result.output
    assert message.format(tmp=tmp_path) in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("predictor, extra, message", [
    ({"label_headers": ["a", "a"]}, [],
     "Invalid value for '--label-headers': label_headers names 'a' more than once (a, a): give each class its own "
     "name, in class-id order (the value of label_headers or predictor.label_headers in --clarify-config)"),
    ({"label_headers": ["a"], "probability": "prediction["}, [],
     "Invalid value for '--probability': probability 'prediction[' is not a valid JMESPath expression: Invalid "
     'jmespath expression: Incomplete expression: "prediction[" ^ (the value of predictor.probability in '
     "--clarify-config)"),
    ({"label_headers": ["a"]}, ["--label-headers", "b,b"],  # the command line's value: no config key named
     "Invalid value for '--label-headers': label_headers names 'b' more than once (b, b): give each class its own "
     "name, in class-id order"),
])
def test_a_config_value_refused_names_its_key(photos, tmp_path, predictor, extra, message):
    """review 32, finding 4: a value the file gave was named only as the command-line option it became."""
    config = write_config(tmp_path, {**sdk_analysis_config("OBJECT_DETECTION", ["a"]),
                                     "predictor": {"endpoint_name": ENDPOINT_NAME, **predictor}}, "photos")
    result = run_cli(["--clarify-config", config, "--out", tmp_path / "out", *extra])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert output.endswith(message), output


def test_clarify_compatible_uses_clarify_segmentation_and_defaults(photos, tmp_path):
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(["--clarify-compatible", "--endpoint", endpoint.url, "--task", "detection",
                          "--num-samples", "16", "--out", tmp_path / "out", "--quiet", photos / "scene0.png"])
        content_types = {request["content_type"] for request in endpoint.requests}
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "out" / "analysis.json").read_text())["settings"]
    assert settings["segmentation"] == CLARIFY_SEGMENTATION
    assert (settings["focus"], settings["refine_fraction"]) == ("none", 0.0)  # Clarify's segments as they are
    assert (settings["num_segments"], settings["segment_compactness"], settings["baseline"]) == (20, 5.0, "noise")
    assert (settings["max_objects"], settings["iou_threshold"], settings["context"]) == (3, 0.5, 1.0)
    assert content_types == {"image/jpeg"}  # Clarify's default request encoding for images


def test_a_clarify_config_wins_over_clarify_compatible_defaults(photos, tmp_path):
    config = write_config(tmp_path, sdk_analysis_config("OBJECT_DETECTION", ["red", "green", "blue"],
                                                        num_segments=6), "photos/scene0.png")
    with FakeEndpoint("detection") as endpoint:
        result = run_cli(["--clarify-config", config, "--clarify-compatible", "--out", tmp_path / "out",
                          "--quiet"], env=endpoint_map(endpoint.url))
        content_types = {request["content_type"] for request in endpoint.requests}
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "out" / "analysis.json").read_text())["settings"]
    assert (settings["segmentation"], settings["num_segments"]) == (CLARIFY_SEGMENTATION, 6)
    assert content_types == {"application/x-npy"}  # the config's content_type


# --------------------------------------------------------------------------------------
# The real serving stack (multi-model-server), as `python -m explain` in a subprocess
# --------------------------------------------------------------------------------------

def run_explain_process(args, env_extra, drop=()):
    env = {name: value for name, value in os.environ.items() if name not in drop}
    env.update({"PYTHONPATH": str(ROOT), **env_extra})
    return subprocess.run([sys.executable, "-m", "explain", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_sdk_detection_config_runs_unchanged_against_the_local_endpoint(detector_endpoint, photos, tmp_path):
    config = write_config(tmp_path, sdk_analysis_config("OBJECT_DETECTION", SHAPES, max_objects=2,
                                                        probability_threshold=0.0), str(photos))
    result = run_explain_process(["--clarify-config", config, "--out", tmp_path / "out", "--quiet"],
                                 endpoint_map(detector_endpoint.url))
    assert result.returncode == 0, result.stderr
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["predictor"]["endpoint"] == f"{detector_endpoint.url}/invocations"
    assert analysis["predictor"]["failed_requests"] == 0 and analysis["predictor"]["requests"] >= 2
    assert analysis["totals"]["images"] == 2 and analysis["totals"]["targets"] >= 2
    assert analysis["settings"]["label_headers"] == SHAPES
    assert "Clarify config keys accepted but ignored: methods.report.title" in result.stderr


@pytest.fixture(scope="module")
def classifier_endpoint(tiny_classifier_dir):
    server = ServeProcess(tiny_classifier_dir, None)
    yield server
    server.stop()


@pytest.mark.integration
def test_sdk_classification_config_runs_unchanged_against_the_local_endpoint(classifier_endpoint, photos,
                                                                            tmp_path):
    manifest = tmp_path / "images.jsonl"
    manifest.write_text("".join(json.dumps({"source-ref": str(path), "class": 0}) + "\n"
                                for path in sorted(photos.glob("*.png"))))
    config = write_config(tmp_path, sdk_analysis_config("IMAGE_CLASSIFICATION", SHAPES), "images.jsonl")
    result = run_explain_process(["--clarify-config", config, "--out", tmp_path / "out", "--quiet", "-v"],
                                 endpoint_map(classifier_endpoint.url))
    assert result.returncode == 0, result.stderr
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["predictor"]["endpoint"] == f"{classifier_endpoint.url}/invocations"
    assert analysis["settings"]["task"] == "classification" and analysis["totals"]["images"] == 2
    assert f"endpoint {ENDPOINT_NAME} resolves to {classifier_endpoint.url} (endpoint map)" in result.stderr
    assert "Clarify config passes the analysis-config schema of SageMaker SDK" in result.stderr


def test_s3_prefix_and_s3_manifest_through_aws_endpoint_url_s3(aws, photos, tmp_path):
    """dataset_uri on S3 (a prefix; a ManifestFile), reached through the standard AWS_ENDPOINT_URL_S3 alone."""
    s3 = aws.client("s3")
    for path in sorted(photos.glob("*.png")):
        s3.upload_file(str(path), aws.bucket, f"clarify/photos/{path.name}")
    manifest = [{"prefix": f"s3://{aws.bucket}/clarify/photos/"}, "scene1.png"]
    s3.put_object(Bucket=aws.bucket, Key="clarify/images.manifest", Body=json.dumps(manifest).encode())
    runs = [(f"s3://{aws.bucket}/clarify/photos/", ["scene0.png", "scene1.png"]),  # output_stem keeps .png
            (f"s3://{aws.bucket}/clarify/images.manifest", ["scene1.png"])]
    with FakeEndpoint("detection") as endpoint:
        for index, (uri, stems) in enumerate(runs):
            folder = tmp_path / f"run{index}"
            folder.mkdir()
            config = write_config(folder, sdk_analysis_config("OBJECT_DETECTION", ["red", "green", "blue"]), uri)
            result = run_explain_process(["--clarify-config", config, "--out", folder / "out", "--quiet"],
                                         {**endpoint_map(endpoint.url), "AWS_ENDPOINT_URL_S3": aws.url},
                                         drop=("AWS_ENDPOINT_URL", "CLEARSIGHT_AWS_ENDPOINT_URL"))
            assert result.returncode == 0, result.stderr
            analysis = json.loads((folder / "out" / "analysis.json").read_text())
            assert [item["stem"] for item in analysis["images"]] == stems
            assert "deprecated" not in result.stderr


def test_a_manifest_naming_two_images_with_one_key_is_refused(tmp_path):
    # The key of an S3 image is its path in the bucket: two buckets' photos/x.png would write the
    # same outputs, and the second was dropped without a word.
    from explain.clarify_dataset import dataset_sources
    from explain.errors import ExplainError

    manifest = tmp_path / "gt.manifest"
    manifest.write_text('{"source-ref": "s3://imgs/photos/x.png"}\n{"source-ref": "s3://imgs2/photos/x.png"}\n'
                        '{"source-ref": "s3://imgs/photos/y.png"}\n')
    with pytest.raises(ExplainError) as raised:
        dataset_sources(str(manifest))
    assert ("'s3://imgs/photos/x.png' and 's3://imgs2/photos/x.png' are both image 'photos/x.png' of this run"
            in str(raised.value))
    # the same image listed twice is one image
    manifest.write_text('{"source-ref": "s3://imgs/photos/x.png"}\n{"source-ref": "s3://imgs/photos/x.png"}\n')
    assert [source.location for source in dataset_sources(str(manifest))] == ["s3://imgs/photos/x.png"]


def test_clarify_compatible_says_when_plain_slic_gives_one_segment_and_halves_are_explained(tmp_path, caplog):
    # Plain SLIC at Clarify's compactness 5 gives one segment on a shipped shapes scene; the run explained
    # the image's left and right halves with nothing but a debug line.
    image = ROOT / "examples" / "shapes" / "samples" / "shapes_0.png"
    with FakeEndpoint("detection") as endpoint, caplog.at_level("WARNING"):
        result = run_cli(["--clarify-compatible", "--endpoint", endpoint.url, "--task", "detection",
                          "--num-samples", "16", "--out", tmp_path / "out", "--quiet", image])
    assert result.exit_code == 0, result.output
    warning = ("plain SLIC (segmentation slic) gave 1 segment of the 20 asked (segment_compactness 5); explained "
               "with 2 segments instead, the left and right halves of the image. For more segments, raise "
               "--segment-compactness (e.g. 20 or 50; Clarify: segment_compactness) or --num-segments, or use "
               "--segmentation merged (the default without --clarify-compatible), which gives --num-segments")
    assert [(record.levelname, record.getMessage()) for record in caplog.records
            if record.name == "explain.segmentation"] == [("WARNING", f"{image}: {warning}")]
    item, = json.loads((tmp_path / "out" / "analysis.json").read_text())["images"]
    assert (item["num_segments_requested"], item["num_segments_used"]) == (20, 2)
    assert item["warnings"] == [warning]
    report = (tmp_path / "out" / "report.html").read_text()
    assert "<strong>Warning:</strong> plain SLIC (segmentation slic) gave 1 segment of the 20 asked" in report
