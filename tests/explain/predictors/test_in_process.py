"""InProcessPredictor: serving.handler in this process, and the same answers over the real local endpoint."""

from __future__ import annotations

import json
import tarfile
import tempfile

import numpy as np
import pytest

from explain.errors import ConfigError, PredictorError
from explain.predictors import HttpPredictor, TransportConfig, make_predictor
from serving.contract import encode_images, npy_body_size
from tests.fake_endpoint import assert_same_predictions, random_batch

# --------------------------------------------------------------------------------------
# In process (serving.handler) and over the real local endpoint (deploy serve on MMS)
# --------------------------------------------------------------------------------------

def test_in_process_predictor_is_batch_size_invariant(tiny_detector_dir):
    from serving.handler import model_fn, transform_fn

    batch = random_batch(7, height=48, width=64, seed=2)
    model = model_fn(str(tiny_detector_dir))
    body, _ = transform_fn(model, encode_images(batch, "application/x-npy"), "application/x-npy",
                           "application/json")
    expected = [np.asarray(rows, dtype=np.float32).reshape(-1, 6) for rows in json.loads(body)]
    outputs = []
    for batch_size in (1, 3, 64):
        with make_predictor(str(tiny_detector_dir), "detection", TransportConfig(
                                                                                 concurrency=8), batch_size=batch_size) as predictor:
            outputs.append(predictor(batch))
            assert predictor.stats["requests"] == -(-7 // batch_size)
            assert predictor.stats["images"] == 7
            assert predictor.class_names == ["circle", "square", "triangle"]
    for output in outputs:
        assert_same_predictions(output, expected)


def test_in_process_predictor_from_a_model_archive(tiny_classifier_dir, tmp_path, monkeypatch):
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        for path in tiny_classifier_dir.iterdir():
            archive.add(path, arcname=path.name)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    predictor = make_predictor(str(tarball), "classification")
    assert len(list(scratch.iterdir())) == 1
    red = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    red[..., 0] = 255
    (probabilities,) = predictor(red)
    assert probabilities.shape == (3,) and int(np.argmax(probabilities)) == 0
    assert predictor.stats["transport"] == "in-process" and predictor.stats["endpoint"] == str(tarball)
    predictor.close()
    assert list(scratch.iterdir()) == []


def _handler_answer(model_dir, batch, content_type, score_threshold):
    """What serving.handler answers for ``batch`` sent as ``content_type`` with that score threshold."""
    from serving.handler import model_fn, transform_fn

    model = model_fn(str(model_dir))
    model.limits.score_threshold = score_threshold
    bodies = [encode_images(batch, content_type)] if content_type == "application/x-npy" else [
        encode_images(image, content_type) for image in batch]  # JPEG: one image per request
    answers = [json.loads(transform_fn(model, body, content_type, "application/json")[0]) for body in bodies]
    return [np.asarray(rows, dtype=np.float32).reshape(-1, 6) for answer in answers for rows in answer]


def test_in_process_applies_the_content_type_as_the_endpoint_does(tiny_detector_dir):
    batch = random_batch(3, height=48, width=64, seed=4)
    answers = {}
    for content_type in ("application/x-npy", "image/jpeg"):
        with make_predictor(str(tiny_detector_dir), "detection",
                            TransportConfig(content_type=content_type)) as predictor:
            answers[content_type] = predictor(batch)
            assert predictor.stats["content_type"] == content_type
        assert_same_predictions(answers[content_type], _handler_answer(tiny_detector_dir, batch, content_type, 0.0))
    assert any(npy.shape != jpeg.shape or not np.array_equal(npy, jpeg)  # JPEG's loss reaches the model
               for npy, jpeg in zip(answers["application/x-npy"], answers["image/jpeg"]))


def test_in_process_applies_custom_attributes_as_the_endpoint_does(tiny_detector_dir):
    batch = random_batch(3, height=48, width=64, seed=4)
    with make_predictor(str(tiny_detector_dir), "detection",
                        TransportConfig(custom_attributes="score_threshold=0.5,top_k=2")) as predictor:
        answers = predictor(batch)
    every = _handler_answer(tiny_detector_dir, batch, "application/x-npy", 0.0)
    assert_same_predictions(answers, [rows[rows[:, 1] >= 0.5][:2] for rows in every])
    assert sum(map(len, answers)) < sum(map(len, every))


def test_in_process_refuses_bad_custom_attributes_by_name(tiny_detector_dir):
    from explain.errors import ConfigError

    with pytest.raises(ConfigError, match="custom_attributes 'score_threshold=2': custom attribute "
                                          "score_threshold must be a number in \\[0, 1\\], got '2'") as raised:
        make_predictor(str(tiny_detector_dir), "detection", TransportConfig(custom_attributes="score_threshold=2"))
    assert raised.value.field == "custom_attributes"


def test_in_process_lists_the_network_settings_it_ignores(tiny_detector_dir):
    with make_predictor(str(tiny_detector_dir), "detection", TransportConfig(
            concurrency=8, target_model="a.tar.gz", timeout=70.0)) as predictor:
        assert sorted(predictor.stats["settings_not_applied"]) == ["concurrency", "target_model"]
    with make_predictor(str(tiny_detector_dir), "detection") as predictor:
        assert "settings_not_applied" not in predictor.stats


@pytest.mark.parametrize("task, served", [("detection", "classification"), ("classification", "detection")])
def test_in_process_task_mismatch_is_refused_before_any_image(task, served, tiny_classifier_dir, tiny_detector_dir):
    """The model folder's model.json names its task (review 30: a detector explained as a classifier failed
    only at its first image, each image of a folder again)."""
    folder = tiny_classifier_dir if served == "classification" else tiny_detector_dir
    with pytest.raises(ConfigError) as raised:
        make_predictor(str(folder), task)
    assert str(raised.value) == (f"model {folder} is a {served} model (its model.json), but it is asked for {task} "
                                 f"(--task, or task= from Python, whose default is detection): give task {served}")
    assert raised.value.field == "task"


@pytest.mark.integration
def test_in_process_without_mxnet_names_the_extra(tiny_detector_dir, monkeypatch):
    """The explain-only install has no mxnet: the error says what to install, or to use an endpoint."""
    import sys

    monkeypatch.setitem(sys.modules, "serving.handler", None)  # as if its import of mxnet failed
    with pytest.raises(PredictorError) as raised:
        make_predictor(str(tiny_detector_dir), "detection", TransportConfig())
    assert str(raised.value).endswith("(pip install 'clearsight[serve]' adds mxnet, '.[serve]' in a clearsight "
                                      "checkout; or explain against an endpoint serving it)")


@pytest.mark.parametrize("python_version, hint", [
    ((3, 11, 7), "pip install 'clearsight[serve]' adds mxnet, '.[serve]' in a clearsight checkout; or explain against "
                 "an endpoint serving it"),
    ((3, 12, 0), "mxnet, which the [serve] extra adds, installs on Python 3.10 or 3.11, not on this Python 3.12: "
                 "explain against an endpoint serving the model (deploy serve in a venv of one of those, or deploy "
                 "sagemaker), or run this in such a venv"),
    ((3, 13, 1), "not on this Python 3.13: explain against an endpoint"),
])
def test_without_mxnet_the_hint_offers_pip_only_where_the_serve_extra_installs(python_version, hint):
    """Review 26, finding 6: on Python 3.12 `pip install 'clearsight[serve]'` fails building numpy < 1.24."""
    from explain.predictors.in_process import serve_extra_hint

    assert hint in serve_extra_hint(python_version)
    assert ("pip install" in serve_extra_hint(python_version)) == (python_version < (3, 12))


def test_http_predictor_matches_in_process_on_the_real_endpoint(detector_endpoint, tiny_detector_dir):
    batch = random_batch(9, height=48, width=64, seed=4)
    with make_predictor(str(tiny_detector_dir), "detection") as in_process:
        expected = in_process(batch)
    budget = npy_body_size((4, 48, 64, 3))
    for accept in ("application/json", "application/x-npy"):
        predictor = HttpPredictor(detector_endpoint.url, "detection", TransportConfig(accept=accept,
                                                                                      max_payload_bytes=budget,
                                                                                      concurrency=2))
        assert_same_predictions(predictor(batch), expected)
        assert predictor.stats["requests"] == 3
    predictor = HttpPredictor(detector_endpoint.url, "detection", TransportConfig(content_type="image/png"))
    assert_same_predictions(predictor(batch[:2]), expected[:2])
