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


def test_the_demo_portrait_is_a_run_of_its_own_with_the_outputs_of_any_run(tmp_path):
    # The portrait was explained by hand and merged into the shapes' analysis.json: no predictor
    # block, label_headers null, not in any manifest, files named astronaut_* against the stem rule.
    import json

    from examples.demo import PORTRAIT_NAME, PORTRAIT_OUT, _explain_portrait

    out = tmp_path / "demo-out"
    out.mkdir()
    for attempt in range(2):  # a second demo starts the portrait's run over
        summary = _explain_portrait(out / PORTRAIT_NAME, out / PORTRAIT_OUT, num_samples=16)
        analysis = json.loads((out / PORTRAIT_OUT / "analysis.json").read_text())
        assert analysis["totals"]["explained_now"] == 1, attempt
    assert analysis == json.loads(json.dumps(summary))
    assert analysis["predictor"]["requests"] > 0 and analysis["settings"]["label_headers"] == ["face"]
    item, = analysis["images"]
    assert item["image"] == str((out / PORTRAIT_NAME).resolve()) and item["stem"] == "astronaut.png"
    assert "shap_astronaut.png_box1_object.jpeg" in item["files"] and "astronaut.png_shap.npz" in item["files"]
    entries = [json.loads(line) for line in (out / PORTRAIT_OUT / "manifest.jsonl").read_text().splitlines()]
    assert [(entry["key"], entry["status"]) for entry in entries] == [("astronaut.png", "explained")]  # restarted
    assert (out / PORTRAIT_OUT / "report.html").is_file()
