"""``detector_class_count``: the number of classes read from exported detector graphs with known answers."""
import json
import tarfile

import pytest

from deploy.graph_classes import detector_class_count
from deploy.package import export_zoo_model
from tests.conftest import REPO
from tests.tiny_models import export_tiny_model


def _graph(path):
    return json.loads(path.read_text())


def test_the_shipped_detector_has_3_classes_in_its_heatmap_and_the_classifier_says_nothing():
    assert detector_class_count(_graph(REPO / "models" / "shapes-detector" / "model-symbol.json")) == (
        3, "CenterNet class heatmap")
    assert detector_class_count(_graph(REPO / "models" / "shapes-classifier" / "model-symbol.json")) is None


def test_a_graph_with_no_known_class_node_says_nothing(tmp_path):
    model_dir = export_tiny_model(tmp_path / "tiny", "detection")
    assert detector_class_count(_graph(model_dir / "model-symbol.json")) is None


@pytest.mark.parametrize("zoo_name, classes, expected", [
    ("yolo3_mobilenet0.25_coco", None, (80, "YOLOv3 output layers")),
    ("yolo3_mobilenet0.25_coco", ["person", "car"], (2, "YOLOv3 output layers")),  # reset_class
    ("ssd_512_mobilenet1.0_voc", None, (20, "per-class decoder")),
    ("center_net_resnet18_v1b_voc", None, (20, "CenterNet class heatmap")),
])
def test_gluoncv_zoo_detectors_say_how_many_classes_they_have(zoo_name, classes, expected, tmp_path):
    export_zoo_model(zoo_name, tmp_path, classes, pretrained=False)
    assert detector_class_count(_graph(tmp_path / "model-symbol.json")) == expected


def test_a_gluoncv_faster_rcnn_says_how_many_classes_it_has(faster_rcnn_package):
    _, path = faster_rcnn_package  # the archive packs the exported graph as it is
    with tarfile.open(path) as archive:
        graph = json.load(archive.extractfile("model-symbol.json"))
    assert detector_class_count(graph) == (20, "per-class decoder")


def _arange(name, **attrs):
    return {"op": "_arange", "name": name, "attrs": {key: str(value) for key, value in attrs.items()}, "inputs": []}


@pytest.mark.parametrize("nodes, expected", [
    ([_arange("ssd0_multiperclassdecoder0__arange0", start=20, stop=None)], (20, "per-class decoder")),
    ([_arange("yolov30_yolooutputv30__arange0", start=0, stop=7, step=1.0)], (7, "YOLOv3 output layers")),
    # an arange outside those blocks numbers something else (Faster R-CNN's batch index)
    ([_arange("fasterrcnn0__arange0", start=0, stop=1)], None),
    # nodes that disagree, or a range that is not one whole step: not known
    ([_arange("a_yolooutputv30__arange0", stop=7), _arange("a_yolooutputv31__arange0", stop=8)], None),
    ([_arange("a_yolooutputv30__arange0", stop=7, step=2)], None),
    ([_arange("a_yolooutputv30__arange0", stop="x")], None),
])
def test_class_ranges_in_gluoncv_blocks(nodes, expected):
    assert detector_class_count({"nodes": nodes}) == expected


@pytest.mark.parametrize("graph", [None, [], {"nodes": "x"}, {"nodes": [1]}, {}])
def test_malformed_graphs_say_nothing(graph):
    assert detector_class_count(graph) is None
