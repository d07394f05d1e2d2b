"""Files written by run_explanations: Clarify names, npz arrays, report.html, analysis.json."""

import json

import numpy as np
import pytest
from PIL import Image

from explain import ExplainConfig, ExplainError, Explanation, RunOptions, run_explanations
from tests.explain.test_explainer import (
    additive_classifier,
    pixel_weights,
    red_square_detector,
    red_square_scene,
    textured_image,
)
from tests.report_html import embedded_files


@pytest.fixture
def scene_files(tmp_path):
    paths = []
    for index in range(2):
        path = tmp_path / "in" / f"scene-{index}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(red_square_scene(seed=index)).save(path)
        paths.append(path)
    return paths


def test_detection_outputs(tmp_path, scene_files):
    out_dir = tmp_path / "out"
    config = ExplainConfig(num_samples=80, num_segments=12, metrics=True)
    summary = run_explanations(scene_files, red_square_detector, config, out_dir, RunOptions(progress=False),
                               label_headers=["square", "corner"])
    names = {path.name for path in out_dir.iterdir()}
    jpegs = []
    for stem in ("scene-0.png", "scene-1.png"):
        jpegs += [f"shap_{stem}_box1_object.jpeg", f"shap_{stem}_box2_object.jpeg",
                  f"{stem}_objects.jpeg"]
        assert f"{stem}_shap.npz" in names
    assert set(jpegs) <= names and {"report.html", "analysis.json"} <= names
    for name in jpegs:
        with Image.open(out_dir / name) as opened:
            assert opened.format == "JPEG"

    arrays = np.load(out_dir / "scene-0.png_shap.npz")
    num_segments = summary["images"][0]["num_segments_used"]
    assert arrays["segments"].shape == (64, 64) and arrays["segments"].dtype == np.int32
    assert arrays["segments"].max() + 1 == num_segments
    assert arrays["shap_values"].shape == (2, num_segments)
    assert arrays["shap_values"].dtype == np.float64
    assert arrays["standard_errors"].shape == (2, num_segments)
    assert arrays["base_values"].shape == arrays["predictions"].shape == (2,)
    assert arrays["labels"].tolist() == [0, 1] and arrays["labels"].dtype.kind == "i"
    assert arrays["boxes"].shape == (2, 4)
    assert int(arrays["model_calls"]) == summary["images"][0]["model_calls"]
    levels = arrays["segment_levels"]
    assert levels.shape == (num_segments,) and levels.min() == 0
    assert np.bincount(levels).tolist() == summary["images"][0]["segments_per_level"]
    np.testing.assert_allclose(arrays["shap_values"].sum(axis=1),
                               arrays["predictions"] - arrays["base_values"], atol=1e-9)
    np.testing.assert_array_equal(arrays["image"], red_square_scene(seed=0))  # anything can be re-plotted
    assert Explanation.load(out_dir / "scene-0.png_shap.npz").label_headers == ("square", "corner")

    report = (out_dir / "report.html").read_text()
    embedded = embedded_files(out_dir / "report.html")
    for name in jpegs:
        assert embedded[name] == (out_dir / name).read_bytes()
    assert "square" in report and "insertion AUC" in report

    analysis = json.loads((out_dir / "analysis.json").read_text())
    assert analysis == json.loads(json.dumps(summary))
    assert analysis["settings"]["num_samples"] == 80
    assert analysis["settings"]["label_headers"] == ["square", "corner"]
    first = analysis["images"][0]
    assert first["targets"][0]["label"] == "square"
    assert first["targets"][0]["sum_of_values"] == pytest.approx(
        first["targets"][0]["prediction"] - first["targets"][0]["base_value"])
    assert {"segmentation_s", "shap_s", "total_s", "render_s"} <= set(first["timings"])
    assert analysis["totals"]["model_calls"] == sum(item["model_calls"]
                                                    for item in analysis["images"])
    assert analysis["totals"]["failed"] == []  # present when nothing failed: the one place to look


def test_classification_outputs_and_same_named_images(tmp_path):
    predict, _ = additive_classifier(pixel_weights())
    paths = []
    for folder in ("a", "b"):
        path = tmp_path / "in" / folder / "photo.jpg"
        path.parent.mkdir(parents=True)
        Image.fromarray(textured_image()).save(path)
        paths.append(path)
    out_dir = tmp_path / "out"
    config = ExplainConfig(task="classification", num_samples=40, label_headers=("cat", "dog"))
    # a folder's images are known by their path in it: a/photo.jpg and b/photo.jpg write apart
    summary = run_explanations([tmp_path / "in"], predict, config, out_dir, RunOptions(progress=False))
    names = {path.name for path in out_dir.iterdir()}
    assert {"shap_a__photo.jpeg", "shap_b__photo.jpeg", "a__photo_shap.npz", "b__photo_shap.npz"} <= names
    arrays = np.load(out_dir / "a__photo_shap.npz")
    assert "boxes" not in arrays
    assert arrays["shap_values"].shape[0] == 1
    embedded = embedded_files(out_dir / "report.html")
    for name in ("shap_a__photo.jpeg", "shap_b__photo.jpeg"):
        assert embedded[name] == (out_dir / name).read_bytes()
    assert summary["images"][0]["targets"][0]["box"] is None
    # given as files, both are "photo.jpg": refused before anything is written
    with pytest.raises(ExplainError) as refused:
        run_explanations(paths, predict, config, tmp_path / "files", RunOptions(progress=False))
    assert str(refused.value) == (
        f"{str(paths[0])!r} and {str(paths[1])!r} are both image 'photo.jpg' of this run (a file argument is "
        "known by its name, a folder's or a manifest's image by its path in the folder or bucket) and would "
        "write the same outputs: rename one, or explain them in separate runs with different --out")
    assert not (tmp_path / "files").exists()


def test_missing_and_unreadable_images(tmp_path):
    with pytest.raises(ExplainError, match="image file\\(s\\) not found: .*nope.png"):
        run_explanations([tmp_path / "nope.png"], red_square_detector, ExplainConfig(), tmp_path,
                         RunOptions(progress=False))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    with pytest.raises(ExplainError, match="no image could be explained: 1 failed: cannot read image .*broken.png"):
        run_explanations([broken], red_square_detector, ExplainConfig(), tmp_path / "out", RunOptions(progress=False))


def test_the_library_run_records_the_predictor_and_returns_what_it_wrote(tmp_path, scene_files):
    """One pipeline: a run from Python writes the predictor's counters as the CLI does."""
    from explain.predictors import HttpPredictor
    from tests.fake_endpoint import FakeEndpoint

    with FakeEndpoint("detection") as endpoint, HttpPredictor(endpoint.url, "detection") as predictor:
        summary = run_explanations(scene_files, predictor, ExplainConfig(num_samples=16, num_segments=4),
                                   tmp_path / "out", RunOptions(progress=False))
        requests = len(endpoint.requests)
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis == json.loads(json.dumps(summary))
    assert analysis["predictor"]["transport"] == "http" and analysis["predictor"]["requests"] == requests > 0
    assert analysis["totals"]["explained_now"] == 2


# class names with dollar signs: matplotlib reads text between two '$' as mathtext
DOLLAR_NAMES = ("$\\frac$", "US$5 to $10")


def test_class_names_with_dollar_signs_are_drawn_as_they_are_not_as_mathtext(tmp_path, scene_files):
    """'$\\frac$' failed every image's rendering (a mathtext syntax error), and 'US$5 to $10' was
    typeset as math ('5 to ' in italics, the '$' gone): names are text."""
    from matplotlib.text import Text

    from explain.render import plot_explanation

    config = ExplainConfig(num_samples=24, num_segments=6, metrics=True)
    summary = run_explanations(scene_files[:1], red_square_detector, config, tmp_path / "out",
                               RunOptions(progress=False), label_headers=DOLLAR_NAMES)
    assert summary["totals"]["failed"] == []
    assert [target["label"] for target in summary["images"][0]["targets"]] == list(DOLLAR_NAMES)
    assert {"shap_scene-0.png_box1_object.jpeg", "shap_scene-0.png_box2_object.jpeg",
            "scene-0.png_objects.jpeg"} <= {path.name for path in (tmp_path / "out").iterdir()}
    explanation = Explanation.load(tmp_path / "out" / "scene-0.png_shap.npz")
    figure = plot_explanation(explanation, label_headers=DOLLAR_NAMES)
    titles = [text for text in figure.findobj(Text) if "$" in text.get_text()]
    assert sorted(text.get_text() for text in titles) == ["box 1: $\\frac$ 1.00", "box 2: US$5 to $10 0.60"]
    assert not any(text.get_parse_math() for text in titles)


def test_a_very_long_class_name_is_cut_in_the_figures_and_kept_whole_in_the_report(tmp_path, scene_files):
    """A class name of 12,000 characters made the heatmap figure as wide as its title: 88,594 pixels, which
    no JPEG holds, so every image of the run failed. The figures cut it at FIGURE_NAME_CHARACTERS."""
    from explain.render import FIGURE_NAME_CHARACTERS

    names = ("n" * 12000, "short")
    config = ExplainConfig(num_samples=24, num_segments=6)
    summary = run_explanations(scene_files[:1], red_square_detector, config, tmp_path / "long",
                               RunOptions(progress=False), label_headers=names)
    assert summary["totals"]["failed"] == []
    assert [target["label"] for target in summary["images"][0]["targets"]] == list(names)
    short = run_explanations(scene_files[:1], red_square_detector, config, tmp_path / "short",
                             RunOptions(progress=False), label_headers=("n", "short"))
    for name in ("shap_scene-0.png_box1_object.jpeg", "scene-0.png_objects.jpeg"):
        with Image.open(tmp_path / "long" / name) as long_figure, Image.open(tmp_path / "short" / name) as figure:
            assert long_figure.width <= figure.width + 400, name  # the cut name's width, no more
    assert short["totals"]["failed"] == []
    explanation = Explanation.load(tmp_path / "long" / "scene-0.png_shap.npz")
    from matplotlib.text import Text

    from explain.render import plot_explanation

    texts = [text.get_text() for text in plot_explanation(explanation).findobj(Text)]
    cut = "n" * (FIGURE_NAME_CHARACTERS - 1) + "…"
    assert "box 1: %s 1.00" % cut in texts and "box 2: short 0.60" in texts
    assert "n" * 12000 in (tmp_path / "long" / "report.html").read_text(encoding="utf-8")
