"""Explanations see every detection score, not only those above the model's default threshold."""
import json

import numpy as np

from explain.predictors import DETECTION_CUSTOM_ATTRIBUTES, TransportConfig, make_predictor
from serving.handler import model_fn, transform_fn
from tests.conftest import npy_bytes, random_images
from tests.tiny_models import export_tiny_model


def test_in_process_detection_ignores_the_default_score_threshold(tmp_path):
    model_dir = export_tiny_model(tmp_path, "detection")
    spec = json.loads((model_dir / "model.json").read_text())
    spec["score_threshold"] = 0.99
    (model_dir / "model.json").write_text(json.dumps(spec))
    images = random_images(2, 64, 64)
    served, _ = transform_fn(model_fn(str(model_dir)), npy_bytes(images), "application/x-npy", "application/json")
    assert json.loads(served) == [[], []]  # the endpoint's default hides these detections
    predictor = make_predictor(str(model_dir), "detection")
    rows = predictor(images)
    assert [len(r) for r in rows] == [3, 3]
    assert np.all(rows[0][:, 1] < 0.99)


def test_remote_detection_asks_for_every_score():
    predictor = make_predictor("http://127.0.0.1:9", "detection")
    assert predictor.transport.custom_attributes == DETECTION_CUSTOM_ATTRIBUTES == "score_threshold=0"
    classification = make_predictor("http://127.0.0.1:9", "classification")
    assert classification.transport.custom_attributes is None
    explicit = make_predictor("http://127.0.0.1:9", "detection", TransportConfig(custom_attributes="top_k=5"))
    assert explicit.transport.custom_attributes == "top_k=5"
