"""examples/demo.py explains what the endpoint scores, every score included (not the 0.3 cut it prints)."""

import pytest
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


@pytest.mark.integration
def test_make_demo_runs_into_a_fresh_folder_and_again_into_the_same_one(tmp_path):
    # `make demo` on a fresh checkout: step 1 puts model.tar.gz into --out before step 4
    # explains into it (a folder clearsight did not mark). Found broken that way once.
    from click.testing import CliRunner

    from examples.demo import main

    samples = tmp_path / "samples"
    samples.mkdir()
    Image.fromarray(red_square_scene()).save(samples / "scene.png")
    out = tmp_path / "demo-out"
    for attempt in range(2):
        result = CliRunner().invoke(main, ["--images", str(samples), "--out", str(out),
                                           "--num-samples", "16", "--no-real-photo"])
        assert result.exit_code == 0, (attempt, result.output, result.exception)
        assert (out / "model.tar.gz").is_file() and (out / "report.html").is_file()
        assert (out / "scene.png_shap.npz").is_file()
