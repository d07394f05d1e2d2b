"""The shipped shapes demo models load, keep GluonCV's output contract and find the sample objects."""
import json
import os

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from examples.shapes.dataset import CLASSES, generate_classification_batch
from examples.shapes.metrics import box_iou
from serving.model_spec import load_model_spec
from serving.preprocess import preprocess_batch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DETECTOR_DIR = os.path.join(ROOT, "models", "shapes-detector")
CLASSIFIER_DIR = os.path.join(ROOT, "models", "shapes-classifier")
SAMPLES_DIR = os.path.join(ROOT, "examples", "shapes", "samples")
MAX_ARTIFACT_BYTES = 15 * 1024 * 1024

# SymbolBlock.imports cannot infer the dtype of ``data`` before the first call; harmless.
pytestmark = pytest.mark.filterwarnings("ignore:Cannot decide type")


def _load(model_dir):
    spec = load_model_spec(model_dir)
    net = mx.gluon.SymbolBlock.imports(os.path.join(model_dir, spec.symbol_file), [spec.input_name],
                                       os.path.join(model_dir, spec.params_file))
    return spec, net


@pytest.fixture(scope="module")
def detector():
    return _load(DETECTOR_DIR)


@pytest.fixture(scope="module")
def classifier():
    return _load(CLASSIFIER_DIR)


@pytest.mark.parametrize("model_dir, task", [(DETECTOR_DIR, "detection"), (CLASSIFIER_DIR, "classification")])
def test_model_json_validates_and_files_are_small(model_dir, task):
    spec = load_model_spec(model_dir)
    assert spec.task == task
    assert spec.classes == list(CLASSES)
    assert spec.input_name == "data"
    for name in (spec.symbol_file, spec.params_file):
        path = os.path.join(model_dir, name)
        assert os.path.isfile(path)
        assert os.path.getsize(path) <= MAX_ARTIFACT_BYTES


@pytest.mark.parametrize("input_shape", [(1, 3, 160, 160), (1, 3, 160, 213), (2, 3, 96, 128), (1, 3, 32, 32)])
def test_detector_returns_gluoncv_outputs_with_minus_one_padding(detector, input_shape):
    spec, net = detector
    data = mx.nd.array(np.random.default_rng(0).normal(size=input_shape).astype(np.float32))
    class_ids, scores, boxes = (output.asnumpy() for output in net(data))
    count = input_shape[0]
    assert class_ids.shape == (count, spec.top_k, 1)
    assert scores.shape == (count, spec.top_k, 1)
    assert boxes.shape == (count, spec.top_k, 4)
    for ids_row, scores_row in zip(class_ids[..., 0], scores[..., 0]):
        padding = ids_row < 0
        assert padding.any()
        np.testing.assert_array_equal(ids_row[padding], -1)
        np.testing.assert_array_equal(scores_row[padding], -1)
        valid_count = int((~padding).sum())
        assert not padding[:valid_count].any(), "padding rows must come after all detections"
        assert np.all(np.diff(scores_row[:valid_count]) <= 0), "detections must be sorted by score"
        assert set(ids_row[:valid_count].astype(int).tolist()) <= set(range(len(CLASSES)))


def test_classifier_returns_logits_at_two_sizes(classifier):
    _, net = classifier
    for shape in ((1, 3, 128, 128), (3, 3, 96, 160)):
        logits = net(mx.nd.zeros(shape))
        assert logits.shape == (shape[0], len(CLASSES))


def test_detector_finds_every_object_in_the_committed_samples(detector):
    spec, net = detector
    with open(os.path.join(SAMPLES_DIR, "ground_truth.json")) as handle:
        truth = json.load(handle)
    assert len(truth["samples"]) == 6
    for record in truth["samples"]:
        image = np.array(Image.open(os.path.join(SAMPLES_DIR, record["image"])).convert("RGB"))
        data = preprocess_batch(image[None], spec.preprocess)
        scale = np.array([data.shape[3] / image.shape[1], data.shape[2] / image.shape[0]] * 2)
        class_ids, scores, boxes = (output.asnumpy()[0] for output in net(data))
        kept = scores[:, 0] >= spec.score_threshold
        for obj in record["objects"]:
            same_class = kept & (class_ids[:, 0] == obj["class_id"])
            ious = box_iou(np.array(obj["box"]) * scale, boxes[same_class])
            assert ious.size and ious.max() >= 0.5, "%s: missed %s at %s" % (record["image"], obj["class"], obj["box"])


def test_classifier_is_right_on_fresh_images(classifier):
    spec, net = classifier
    images, labels = generate_classification_batch(np.random.default_rng(2026_7777), 12)
    predicted = net(preprocess_batch(images, spec.preprocess)).asnumpy().argmax(axis=1)
    np.testing.assert_array_equal(predicted, labels)
