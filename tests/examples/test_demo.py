"""examples/demo.py explains what the endpoint scores, every score included (not the 0.3 cut it prints)."""

from PIL import Image

from examples.demo import demo_explainer
from explain import RunOptions
from tests.explain.test_explainer import red_square_scene
from tests.fake_endpoint import FakeEndpoint


def test_the_demo_asks_the_endpoint_for_every_detection_score(tmp_path):
    image = tmp_path / "scene.png"
    Image.fromarray(red_square_scene()).save(image)
    with FakeEndpoint("detection") as endpoint:
        with demo_explainer(endpoint.url, ["red", "green", "blue"], num_samples=16) as explainer:
            summary = explainer.run([image], tmp_path / "out", RunOptions(progress=False))
    assert len(endpoint.requests) > 1
    assert {request["custom_attributes"] for request in endpoint.requests} == {"score_threshold=0"}
    target = summary["images"][0]["targets"][0]
    assert target["label"] in {"red", "green", "blue"} and "insertion_curve" in target  # the report's curves
