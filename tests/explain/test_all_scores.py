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
    # review 23: custom attributes without a score_threshold dropped it (values moved by up to 0.24)
    for given, sent in [("top_k=5", "top_k=5,score_threshold=0"), ("accept_eula=true,", "accept_eula=true,score_threshold=0"),
                        ("score_threshold=0.2", "score_threshold=0.2"), ("top_k=5, Score_Threshold=0.1", "top_k=5, Score_Threshold=0.1"),
                        ("  ", "score_threshold=0")]:
        explicit = make_predictor("http://127.0.0.1:9", "detection", TransportConfig(custom_attributes=given))
        assert explicit.transport.custom_attributes == sent, given
    assert make_predictor("http://127.0.0.1:9", "classification",
                          TransportConfig(custom_attributes="top_k=5")).transport.custom_attributes == "top_k=5"


def test_in_process_detection_with_other_custom_attributes_still_answers_every_score(tmp_path):
    model_dir = export_tiny_model(tmp_path, "detection")
    spec = json.loads((model_dir / "model.json").read_text())
    spec["score_threshold"] = 0.99
    (model_dir / "model.json").write_text(json.dumps(spec))
    images = random_images(2, 64, 64)
    rows = make_predictor(str(model_dir), "detection", TransportConfig(custom_attributes="top_k=2"))(images)
    assert [len(r) for r in rows] == [2, 2] and np.all(rows[0][:, 1] < 0.99)  # top_k applied, threshold 0


def test_an_upper_case_scheme_is_an_http_endpoint():
    # review 23: HTTP://127.0.0.1:18080 (schemes are case-insensitive) was refused as no URL
    predictor = make_predictor("HTTP://127.0.0.1:9/x", "classification")
    assert type(predictor).__name__ == "HttpPredictor"


def test_the_settings_record_the_custom_attributes_sent_so_an_older_run_is_not_resumed_with_others():
    # review 24: an --out begun with top_k=10 alone (the model's default threshold) resumed with
    # score_threshold=0 added, one report mixing both; the settings now record what is sent
    import pytest

    from explain import ExplainConfig
    from explain.errors import ConfigError

    assert ExplainConfig(custom_attributes=" top_k=10 ").custom_attributes == "top_k=10,score_threshold=0"
    assert ExplainConfig(custom_attributes="Score_Threshold = 0.3").custom_attributes == "Score_Threshold = 0.3"
    assert ExplainConfig(custom_attributes=None).custom_attributes is None
    assert ExplainConfig(task="classification", custom_attributes=" top_k=3 ").custom_attributes == "top_k=3"
    longest = "trace=" + "a" * (1024 - len("trace=") - len(",score_threshold=0"))
    assert len(ExplainConfig(custom_attributes=longest).custom_attributes) == 1024
    with pytest.raises(ConfigError, match=r"custom_attributes is 1007 characters, and detection explanations add "
                                          r",score_threshold=0 \(every score counts\): 1025 would pass SageMaker's "
                                          r"limit of 1024; shorten it, or set score_threshold in it yourself"):
        ExplainConfig(custom_attributes=longest + "a")
    # a header value cannot start with a space: requests refused every request (InvalidHeader)
    assert TransportConfig(custom_attributes=" Score_Threshold = 0.3 ").custom_attributes == "Score_Threshold = 0.3"


def test_blank_custom_attributes_are_none():
    # review 25: "   " for classification was sent as a header of spaces (every request failed, InvalidHeader)
    assert TransportConfig(custom_attributes="   ").custom_attributes is None
