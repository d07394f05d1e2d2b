"""The object API: Explainer over functions, endpoints and SageMaker Predictors; Explanation's methods."""

from __future__ import annotations

import io
import json
import re
import sys

import numpy as np
import pytest
from PIL import Image

from explain import (
    ConfigError,
    ExplainConfig,
    Explainer,
    ExplainError,
    Explanation,
    TransportConfig,
    UnknownSettingError,
    explain_image,
)
from explain.predictors import HttpPredictor
from serving.contract import npy_body_size
from tests.explain.test_explainer import (
    SIZE,
    additive_classifier,
    pixel_weights,
    red_square_detector,
    red_square_scene,
    textured_image,
)
from tests.fake_endpoint import FakeEndpoint, fake_detections, fake_model

QUADRANTS = ((np.arange(SIZE)[:, None] >= SIZE // 2) * 2 + (np.arange(SIZE)[None, :] >= SIZE // 2)).astype(np.int64)


def exact_quadrant_values(image, weights, norm):
    """Shapley values of the additive classifier's class 0 over QUADRANTS, baseline black."""
    contribution = (image.astype(np.float64) * weights).sum(axis=2) / norm
    return np.bincount(QUADRANTS.ravel(), weights=contribution.ravel(), minlength=4)


# --------------------------------------------------------------------------------------
# Explainer: inputs, settings, segments
# --------------------------------------------------------------------------------------

def test_an_image_a_batch_a_file_and_a_folder_give_the_same_explanations(tmp_path):
    images = [red_square_scene(seed) for seed in range(3)]
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"scene-{index}.png")
    config = ExplainConfig(num_samples=40, num_segments=8)
    expected = [explain_image(image, red_square_detector, config) for image in images]

    explainer = Explainer(red_square_detector, task="detection", num_samples=40, num_segments=8)
    single = explainer(images[0])
    batch = explainer(np.stack(images))
    from_file = explainer(folder / "scene-1.png")
    from_folder = explainer(str(folder))
    from_list = explainer([images[2], str(folder / "scene-0.png")])

    assert isinstance(single, Explanation)
    assert isinstance(from_file, Explanation)
    assert [len(batch), len(from_folder), len(from_list)] == [3, 3, 2]
    for got, want in [(single, expected[0]), (from_file, expected[1]), *zip(batch, expected, strict=True),
                      *zip(from_folder, expected, strict=True), (from_list[0], expected[2]),
                      (from_list[1], expected[0])]:
        np.testing.assert_array_equal(got.shap_values, want.shap_values)
        np.testing.assert_array_equal(got.image, want.image)
        np.testing.assert_array_equal(got.segments, want.segments)
        np.testing.assert_array_equal(got.base_values, want.base_values)
        np.testing.assert_array_equal(got.standard_errors, want.standard_errors)
        assert got.labels.tolist() == want.labels.tolist() == [0, 1]


def test_your_own_segments_give_the_known_shapley_values():
    image = textured_image()
    weights = pixel_weights()
    predict, norm = additive_classifier(weights)
    explainer = Explainer(predict, task="classification", baseline="black", labels=("0",), num_samples=16)
    explanation = explainer(image, segments=QUADRANTS)
    np.testing.assert_array_equal(explanation.segments, QUADRANTS)
    np.testing.assert_allclose(explanation.shap_values[0], exact_quadrant_values(image, weights, norm), atol=1e-12)
    assert explanation.exact and explanation.num_segments_used == 4

    per_image = np.stack([QUADRANTS, (QUADRANTS >= 2).astype(np.int64)])
    first, second = explainer(np.stack([image, image]), segments=per_image)
    np.testing.assert_allclose(first.shap_values, explanation.shap_values, atol=1e-12)
    halves = exact_quadrant_values(image, weights, norm).reshape(2, 2).sum(axis=1)
    np.testing.assert_allclose(second.shap_values[0], halves, atol=1e-12)


def test_a_list_of_images_takes_one_segment_map_per_image(tmp_path):
    # review 19: a list (the README's other batch) with (N, H, W) segments was refused as the wrong shape
    image = textured_image()
    weights = pixel_weights()
    predict, norm = additive_classifier(weights)
    explainer = Explainer(predict, task="classification", baseline="black", labels=("0",), num_samples=16)
    Image.fromarray(image).save(tmp_path / "image.png")
    per_image = np.stack([QUADRANTS, (QUADRANTS >= 2).astype(np.int64)])
    first, second = explainer([image, tmp_path / "image.png"], segments=per_image)
    np.testing.assert_allclose(first.shap_values[0], exact_quadrant_values(image, weights, norm), atol=1e-12)
    halves = exact_quadrant_values(image, weights, norm).reshape(2, 2).sum(axis=1)
    np.testing.assert_allclose(second.shap_values[0], halves, atol=1e-12)
    with pytest.raises(ConfigError, match=r"segments holds 2 maps for a list of 3 images; give one \(H, W\) map"):
        explainer([image, image, image], segments=per_image)
    with pytest.raises(ConfigError, match=r"segments holds one \(H, W\) map per image, but '.*' is a folder"):
        explainer(tmp_path, segments=per_image)
    with pytest.raises(ConfigError, match=r"is a folder or prefix whose images are not known in number"):
        explainer([image, tmp_path], segments=per_image)


def test_a_list_of_images_of_different_sizes_takes_a_list_of_maps_one_each(tmp_path):
    # review 20: numpy cannot stack maps of different sizes, so the list was taken as one map for all
    # and refused with "got dtype object; convert it with segments.astype(int)"
    image = textured_image()
    small = image[: SIZE // 2 + 8, : SIZE // 2 + 4]
    Image.fromarray(small).save(tmp_path / "small.png")

    def brightness(batch):  # any size: the mean pixel, and its complement
        return [np.array([item.mean() / 255, 1 - item.mean() / 255]) for item in batch]

    explainer = Explainer(brightness, task="classification", baseline="black", labels=("0",), num_samples=16)
    small_map = QUADRANTS[: SIZE // 2 + 8, : SIZE // 2 + 4]
    first, second = explainer([image, tmp_path / "small.png"], segments=[QUADRANTS, small_map])
    np.testing.assert_array_equal(first.segments, QUADRANTS)
    np.testing.assert_array_equal(second.segments, small_map)
    assert second.shap_values[0].sum() == pytest.approx(small.mean() / 255)  # black baseline: 0
    with pytest.raises(ConfigError, match=r"segments holds 2 maps for a list of 1 images"):
        explainer([image], segments=[QUADRANTS, small_map])


@pytest.mark.parametrize("images, message", [  # review 19: "got an array of shape ()"
    (b"\x89PNG\r\n", "a path or a list, got bytes (file bytes: decode them with explain.images.decode_image"),
    (None, "a path or a list, got NoneType"),
    (7, "a path or a list, got int"),
])
def test_what_is_not_an_image_is_named_by_its_type(images, message):
    with pytest.raises(ExplainError) as raised:
        Explainer(red_square_detector, num_samples=16)(images)
    assert message in str(raised.value)


def test_image_paths_in_a_numpy_array_are_explained_as_a_list(tmp_path):
    # review 20: refused as "got an array of shape (1,)"
    Image.fromarray(red_square_scene()).save(tmp_path / "scene.png")
    explainer = Explainer(red_square_detector, num_samples=16, num_segments=6)
    explained = explainer(np.array([str(tmp_path / "scene.png")]))
    assert isinstance(explained, list) and len(explained) == 1
    np.testing.assert_array_equal(explained[0].image, red_square_scene())


def test_a_generator_of_images_is_explained_as_the_list_it_gives():
    # review 20: it was refused as "got an array of shape ()"
    explainer = Explainer(red_square_detector, num_samples=16, num_segments=6)
    explained = explainer(image for image in [red_square_scene(), red_square_scene()])
    assert isinstance(explained, list) and len(explained) == 2
    np.testing.assert_array_equal(explained[0].shap_values, explainer(red_square_scene()).shap_values)


@pytest.mark.parametrize("segments, message", [
    (np.zeros((SIZE, SIZE - 1), int), f"segments must have the image's shape (H, W) = ({SIZE}, {SIZE}), got "
                                      f"({SIZE}, {SIZE - 1})"),
    (QUADRANTS.astype(float), "segments must be an integer array of segment labels, got dtype float64"),
    (QUADRANTS > 1, "segments must be an integer array of segment labels, got dtype bool"),
    (QUADRANTS - 1, "segments must hold labels 0..S-1, got a label -1"),
    (QUADRANTS * 2, "segments must use every label 0..6 (the values are the features' indices), labels 1, 3, "
                    "5 are unused; relabel with explain.segmentation.relabel_contiguous(segments)"),
    (np.zeros((SIZE, SIZE), int), "segments must hold at least 2 segments (one segment explains nothing), got 1"),
])
def test_bad_segments_are_refused_naming_the_problem(segments, message):
    explainer = Explainer(red_square_detector, num_samples=16)
    with pytest.raises(ConfigError) as raised:
        explainer(red_square_scene(), segments=segments)
    assert str(raised.value).startswith(message)
    assert raised.value.field == "segments"


@pytest.mark.parametrize("settings, error, message", [
    ({"num_sample": 10}, UnknownSettingError, "Explainer got an unknown setting 'num_sample' (did you mean "
                                              "'num_samples'?); settings are the fields of ExplainConfig: task, "),
    # review 34: a transport setting was answered "did you mean 'context'?" (content_type)
    ({"concurrency": 2}, UnknownSettingError, "'concurrency' is how the model is asked, not an explain setting: "
                                              "give it as Explainer(..., transport=TransportConfig(concurrency=...))"),
    ({"content_type": "image/jpeg"}, UnknownSettingError, "'content_type' is how the model is asked, not an explain "
                                                          "setting: give it as Explainer(..., transport="
                                                          "TransportConfig(content_type=...))"),
    ({"probabilty": "a"}, UnknownSettingError, "Explainer got an unknown setting 'probabilty' (did you mean "
                                               "transport=TransportConfig(probability=...)?)"),
    ({"num_samples": 2}, ConfigError, "num_samples must be in [4, 1000000], got 2"),
    ({"segmentation": "felzenszwalb"}, ConfigError, "segmentation must be one of"),
    ({"config": {"num_samples": 10}}, ConfigError, "config must be an ExplainConfig, got dict"),
    ({"transport": {"concurrency": 2}}, ConfigError, "transport must be a TransportConfig, got dict"),
])
def test_settings_are_validated_once_naming_the_field(settings, error, message):
    with pytest.raises(error) as raised:
        Explainer(red_square_detector, **settings)
    assert str(raised.value).startswith(message)


def test_an_unknown_setting_is_a_type_error_too_and_names_the_field():
    with pytest.raises(TypeError) as raised:
        Explainer(red_square_detector, num_segment=10)
    assert raised.value.field == "num_segment" and "did you mean 'num_segments'?" in str(raised.value)


def test_settings_start_from_a_config_and_the_task_argument_wins():
    base = ExplainConfig(task="classification", num_samples=64, seed=3)
    explainer = Explainer(lambda batch: [np.ones(2) / 2] * len(batch), config=base, num_segments=6)
    assert explainer.config == ExplainConfig(task="classification", num_samples=64, seed=3, num_segments=6)
    assert Explainer(red_square_detector, "detection", config=base).config.task == "detection"


def test_the_sharpening_settings_are_explainer_settings_and_survive_save_and_load(tmp_path):
    """issue 15: focus, refine_fraction and max_segments by name, misspellings named, levels kept."""
    with pytest.raises(UnknownSettingError, match="did you mean 'refine_fraction'"):
        Explainer(red_square_detector, refine_fractoin=0.2)
    plain = Explainer(red_square_detector, num_samples=100, num_segments=8, focus="none", refine_fraction=0.0)
    coarse = plain(red_square_scene())
    assert coarse.num_segments_used == coarse.coarse_segments == 8 and coarse.levels.tolist() == [0] * 8
    sharp = Explainer(red_square_detector, num_samples=100, num_segments=8, max_segments=12)(red_square_scene())
    assert sharp.coarse_segments == 8 and sharp.num_segments_used == 12 and sharp.levels.max() >= 1
    loaded = Explanation.load(sharp.save(tmp_path / "sharp.npz"))
    assert loaded.coarse_segments == 8 and loaded.levels.tolist() == sharp.levels.tolist()
    np.testing.assert_array_equal(loaded.segments, sharp.segments)
    np.testing.assert_allclose(loaded.shap_values.sum(axis=1), loaded.predictions - loaded.base_values, atol=1e-9)


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 2), np.uint8), "images must be an (H, W, 3) or (N, H, W, 3) uint8 array, a path or a list, "
                                 "got an array of shape (2, 2) (grey: np.dstack([image] * 3))"),
    ("no/such/folder", "image file or folder not found: 'no/such/folder'"),
    # review 30: the common other forms get the conversion that makes them usable
    (np.zeros((8, 8, 3), np.float32), "image must be an (H, W, 3) uint8 array, got (8, 8, 3) float32 "
                                      "(floats in [0, 1]: (image * 255).round().astype(np.uint8))"),
    (np.full((8, 8, 3), 200.0), "image must be an (H, W, 3) uint8 array, got (8, 8, 3) float64 "
                                "(floats: np.clip(image, 0, 255).round().astype(np.uint8))"),
    (np.zeros((8, 8, 4), np.uint8), "image must be an (H, W, 3) uint8 array, got (8, 8, 4) uint8 "
                                    "(RGBA: drop the alpha channel with image[..., :3])"),
    (np.zeros((3, 8, 8), np.uint8), "image must be an (H, W, 3) uint8 array, got (3, 8, 8) uint8 "
                                    "(if its channels come first: image.transpose(1, 2, 0))"),
    (np.zeros((8, 8, 1), np.uint8), "image must be an (H, W, 3) uint8 array, got (8, 8, 1) uint8 "
                                    "(grey: np.dstack([image] * 3))"),
    (np.zeros((8, 8, 3), bool), "image must be an (H, W, 3) uint8 array, got (8, 8, 3) bool "
                                "(a mask: image.astype(np.uint8) * 255)"),
    (np.zeros((8, 8, 3), np.uint16), "image must be an (H, W, 3) uint8 array, got (8, 8, 3) uint16 (integers: "
                                     "image.astype(np.uint8) when they are 0..255, (image // 257).astype(np.uint8) "
                                     "for 16 bits)"),
    (np.zeros((8, 8, 5), np.uint8), "image must be an (H, W, 3) uint8 array, got (8, 8, 5) uint8"),
    # review 31: normalised floats were told to scale by 255 (negative values wrapped round), batches got the hint
    # of one image, PIL images hints for arrays, nested lists were read as lists of rows
    (np.full((8, 8, 3), -0.5), "image must be an (H, W, 3) uint8 array, got (8, 8, 3) float64 (floats from -0.5 "
                               "to -0.5, normalised: undo the normalisation back to 0..255 before .astype(np.uint8))"),
    (np.full((8, 8, 3), np.nan), "image must be an (H, W, 3) uint8 array, got (8, 8, 3) float64 (floats, none of "
                                 "them finite)"),
    (np.zeros((2, 3, 8, 8), np.uint8), "images must be an (N, H, W, 3) uint8 batch, got (2, 3, 8, 8) uint8 (if its "
                                       "channels come first: batch.transpose(0, 2, 3, 1))"),
    (np.zeros((2, 8, 8, 1), np.float32), "images must be an (N, H, W, 3) uint8 batch, got (2, 8, 8, 1) float32 "
                                         "(grey: np.concatenate([batch] * 3, axis=-1); floats in [0, 1]: (batch * 255)"
                                         ".round().astype(np.uint8))"),
    (Image.new("RGBA", (8, 8)), "image is a PIL image of mode 'RGBA', not RGB: pass image.convert('RGB')"),
    ([Image.new("L", (8, 8))], "image is a PIL image of mode 'L', not RGB: pass image.convert('RGB')"),
    (np.zeros((8, 8, 3)).tolist(), "image must be an (H, W, 3) uint8 array, got (8, 8, 3) float64 (floats in "
                                   "[0, 1]: (image * 255).round().astype(np.uint8))"),
])
def test_bad_images_are_refused_naming_the_problem(images, message):
    with pytest.raises(ExplainError) as raised:
        Explainer(red_square_detector, num_samples=16)(images)
    assert str(raised.value) == message


def test_a_closed_explainer_is_refused(tiny_classifier_dir):
    """review 30: a model folder's Explainer answered on after close()."""
    with Explainer(str(tiny_classifier_dir), task="classification", num_samples=16) as explainer:
        assert explainer(red_square_scene()).predictions.shape[0] >= 1
    assert repr(explainer).endswith(", closed)")
    for call in (lambda: explainer(red_square_scene()), lambda: explainer.run([], "out"), explainer.__enter__):
        with pytest.raises(ExplainError, match=r"this Explainer is closed \(close\(\) or the end of its with block\)"):
            call()


def test_images_as_nested_lists_of_different_sizes_stay_a_list():
    """review 33: the rule that reads nested lists of pixel values as one array broke a list of two images given
    as nested lists of different sizes (numpy 2: a raw 'inhomogeneous shape' ValueError)."""
    small, large = red_square_scene()[:48, :48], red_square_scene()
    explained = Explainer(red_square_detector, num_samples=16, num_segments=4)([list(small), list(large)])
    assert [item.image.shape for item in explained] == [(48, 48, 3), (64, 64, 3)]
    with pytest.raises(ExplainError) as raised:  # strings: no "grey" recipe
        Explainer(red_square_detector, num_samples=16)([["a.png", "b.png"]])
    assert "grey" not in str(raised.value)


def test_images_as_nested_lists_of_python_ints_are_read_as_uint8():
    """review 34: image.tolist() of a uint8 image gave an int64 array, which was then refused."""
    scene = red_square_scene()
    explainer = Explainer(red_square_detector, num_samples=16, num_segments=4)
    want = explainer(scene)
    for given in (scene.tolist(), scene[None].tolist()):
        got = explainer(given)
        got = got[0] if isinstance(got, list) else got
        assert got.image.dtype == np.uint8 and np.array_equal(got.shap_values, want.shap_values)
    # review 35: images of different sizes as nested lists (a list of images) were still refused as int64
    explained = explainer([scene.tolist(), scene[:32].tolist()])
    assert [(item.image.shape, item.image.dtype) for item in explained] == [((64, 64, 3), np.uint8),
                                                                           ((32, 64, 3), np.uint8)]
    wide = scene.astype(np.int64)
    wide[0, 0, 0] = 256  # not 8-bit: refused with its hint, as before
    with pytest.raises(ExplainError, match=r"got \(64, 64, 3\) int64 "):
        explainer(wide.tolist())


def test_an_explanation_keeps_its_own_copy_of_the_image():
    # review 36: Explanation.image was the caller's array: a reused frame buffer changed earlier explanations
    frame = red_square_scene()
    explainer = Explainer(red_square_detector, num_samples=16, num_segments=4)
    first = explainer(frame)
    kept = frame.copy()
    frame[:] = 0  # the next frame into the same buffer
    np.testing.assert_array_equal(first.image, kept)
    batch = np.stack([red_square_scene()] * 2)
    explained = explainer(batch)
    batch[:] = 7
    assert all(item.image.max() > 7 for item in explained)


def test_a_function_is_called_one_call_at_a_time_by_run_and_its_numpy_class_names_are_taken(tmp_path):
    # review 36: run()'s two image threads called a plain function at once; class_names as a numpy array
    # raised numpy's "truth value of an array is ambiguous"
    import threading
    import time

    from explain.runner import RunOptions

    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    def predict(batch):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.002)
        with lock:
            state["now"] -= 1
        return red_square_detector(batch)

    predict.class_names = np.array(["square", "corner"])
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for index in range(3):
        Image.fromarray(red_square_scene()).save(scenes / f"s{index}.png")
    explainer = Explainer(predict, num_samples=16, num_segments=4)
    summary = explainer.run(scenes, tmp_path / "out", options=RunOptions(images_in_flight=2, progress=False))
    assert summary["totals"]["images"] == 3 and state["most"] == 1
    assert summary["settings"]["label_headers"] == ["square", "corner"]


def test_a_function_that_explains_through_its_own_explainer_does_not_deadlock():
    # review 37: the lock that serialises calls was not re-entrant
    import threading

    explainer = Explainer(red_square_detector, num_samples=16, num_segments=4)
    inner = []

    def outer(batch):
        if not inner:
            inner.append("calling")
            inner.append(explainer(red_square_scene()))  # from within a call: the same thread takes the lock again
        return red_square_detector(batch)

    explainer.predictor.function = outer
    done = []
    thread = threading.Thread(target=lambda: done.append(explainer(red_square_scene())), daemon=True)
    thread.start()
    thread.join(60)
    assert done and len(inner) == 2


def test_run_explanations_and_explain_image_take_class_names_as_a_numpy_array(tmp_path):
    # review 37: review 36's fix covered Explainer only; these raised numpy's "truth value ... is ambiguous"
    from explain.explainer import explain_image
    from explain.runner import RunOptions, run_explanations

    def predict(batch):
        return red_square_detector(batch)

    predict.class_names = np.array(["square", "corner"])
    config = ExplainConfig(num_samples=16, num_segments=4, label_headers=("square", "corner"))
    assert explain_image(red_square_scene(), predict, config).labels.size
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    Image.fromarray(red_square_scene()).save(scenes / "s.png")
    summary = run_explanations([scenes], predict, ExplainConfig(num_samples=16, num_segments=4), tmp_path / "out",
                               RunOptions(progress=False))
    assert summary["settings"]["label_headers"] == ["square", "corner"]


@pytest.mark.parametrize("names", [{0: "square", 1: "corner"}, [0, 1], [None, "corner"], [b"square", b"corner"],
                                   np.array([["square", "corner"]])])
def test_class_names_that_are_not_strings_are_refused_not_turned_into_strings(names, tmp_path):
    # review 38: review 37's helper turned a dict's keys, ints, None and bytes into names ("0", "None", "b'..'")
    from explain.runner import RunOptions, run_explanations

    def predict(batch):
        return red_square_detector(batch)

    predict.class_names = names
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    Image.fromarray(red_square_scene()).save(scenes / "s.png")
    with pytest.raises(ConfigError, match="label_headers must be a non-empty tuple of non-empty strings"):
        run_explanations([scenes], predict, ExplainConfig(num_samples=16, num_segments=4), tmp_path / "out",
                         RunOptions(progress=False))


def test_label_headers_must_fit_the_class_names_a_model_knows():
    def predict(batch):
        return red_square_detector(batch)

    predict.class_names = ["square", "corner"]  # as a model folder's model.json would give
    assert Explainer(predict, num_samples=16).config.label_headers == ("square", "corner")
    with pytest.raises(ConfigError) as raised:
        Explainer(predict, num_samples=16, label_headers=("labels.txt",))
    assert str(raised.value) == ("label_headers has 1 name(s) (labels.txt) but the model names 2 classes (square, "
                                 "corner); give one name per class, in class-id order")
    assert raised.value.field == "label_headers"


def test_an_unusable_model_is_refused():
    with pytest.raises(ConfigError) as raised:
        Explainer(42)
    assert str(raised.value) == ("model must be a function predict(batch), a sagemaker.predictor.Predictor, an "
                                 "endpoint URL, sagemaker:ENDPOINT_NAME or a model path, got int")


# --------------------------------------------------------------------------------------
# what the model is sent
# --------------------------------------------------------------------------------------

def test_a_function_is_never_sent_more_than_one_request_holds():
    sizes = []

    def predict(batch):
        sizes.append(len(batch))
        return red_square_detector(batch)

    budget = npy_body_size((5, SIZE, SIZE, 3))  # 5 images of 64 x 64 per request
    explainer = Explainer(predict, num_samples=100, num_segments=8,
                          transport=TransportConfig(max_payload_bytes=budget))
    explanation = explainer(red_square_scene())
    assert max(sizes) == 5 and sum(sizes) == explanation.model_calls <= 101  # a repeated masked image is sent once
    capped = Explainer(predict, num_samples=100, num_segments=8,
                       transport=TransportConfig(max_images_per_request=3))
    sizes.clear()
    same = capped(red_square_scene())
    assert max(sizes) == 3
    np.testing.assert_array_equal(same.shap_values, explanation.shap_values)
    reference = explain_image(red_square_scene(), red_square_detector, ExplainConfig(num_samples=100, num_segments=8))
    np.testing.assert_array_equal(reference.shap_values, explanation.shap_values)


def channel_detector(batch, score_threshold=0.5):
    """The fake endpoint's model: one box per colour channel scored by the channel's mean / 255, rows
    below ``score_threshold`` dropped (an endpoint's default threshold) unless asked for every score."""
    return [fake_detections(image, score_threshold) for image in batch]


def test_a_detection_function_with_a_score_threshold_is_asked_for_every_score():
    # the same segments whatever the targets found (focus="none"), so the values compare
    config = ExplainConfig(num_samples=60, num_segments=10, probability_threshold=0.3, focus="none",
                           refine_fraction=0.0)
    image = red_square_scene()
    every_score = explain_image(image, lambda batch: channel_detector(batch, 0.0), config)
    cut = explain_image(image, channel_detector, config)
    assert not np.allclose(cut.shap_values, every_score.shap_values)  # masked scores below 0.5 count
    explanation = Explainer(channel_detector, config=config)(image)
    np.testing.assert_array_equal(explanation.shap_values, every_score.shap_values)


def test_an_endpoint_url_is_asked_for_every_detection_score():
    with FakeEndpoint("detection") as endpoint, Explainer(endpoint.url, num_samples=16, num_segments=4) as explainer:
        explainer(red_square_scene())
        assert isinstance(explainer.predictor, HttpPredictor)
    assert endpoint.requests and {request["custom_attributes"] for request in endpoint.requests} == {
        "score_threshold=0"}


class FakeSageMakerRuntime:
    """Answers a boto3 sagemaker-runtime client's InvokeEndpoint with the fake model, in botocore's send hook.

    The client serialises and signs each request and parses each answer as it would with AWS;
    ``throttle_first`` requests are answered with ThrottlingException first.
    """

    def __init__(self, client, task: str, throttle_first: int = 0) -> None:
        self.task = task
        self.throttle_first = throttle_first
        self.requests: list[dict] = []
        client.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", self.answer)

    def answer(self, request, **_):
        from botocore.awsrequest import AWSResponse

        headers = {key: value.decode() if isinstance(value, bytes) else value for key, value in request.headers.items()}
        self.requests.append({"url": request.url, "headers": headers, "bytes": len(request.body)})
        if len(self.requests) <= self.throttle_first:
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1",
                                                  "x-amzn-ErrorType": "ThrottlingException"}, _Raw(body))
        batch = np.load(io.BytesIO(request.body), allow_pickle=False)
        body = json.dumps([rows.tolist() for rows in fake_model(batch, self.task)]).encode()
        return AWSResponse(request.url, 200, {"Content-Type": "application/json"}, _Raw(body))


class _Raw:
    """The raw body botocore reads an AWSResponse from."""

    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def stream(self, **_):
        yield self._body.read()

    def read(self, *args):
        return self._body.read(*args)


def sagemaker_predictor(task: str, throttle_first: int = 0):
    """A sagemaker.predictor.Predictor whose session's runtime client the FakeSageMakerRuntime answers."""
    import boto3
    from botocore.config import Config
    from sagemaker.predictor import Predictor
    from sagemaker.session import Session

    boto_session = boto3.Session(region_name="us-east-1", aws_access_key_id="testing",
                                 aws_secret_access_key="testing")
    runtime = boto_session.client("sagemaker-runtime", config=Config(retries={"total_max_attempts": 1}))
    fake = FakeSageMakerRuntime(runtime, task, throttle_first)
    session = Session(boto_session=boto_session, sagemaker_runtime_client=runtime)
    return Predictor("shapes-detector", sagemaker_session=session), fake


def test_a_sagemaker_predictor_gets_packed_requests_every_score_and_retries():
    predictor, runtime = sagemaker_predictor("detection", throttle_first=1)
    budget = npy_body_size((7, SIZE, SIZE, 3))
    transport = TransportConfig(max_payload_bytes=budget, backoff_base=0.01, concurrency=2)
    image = red_square_scene()
    with Explainer(predictor, num_samples=60, num_segments=8, transport=transport) as explainer:
        explanation = explainer(image)
        stats = explainer.predictor.stats
    reference = explain_image(image, lambda batch: fake_model(batch, "detection"),
                              ExplainConfig(num_samples=60, num_segments=8))
    np.testing.assert_allclose(explanation.shap_values, reference.shap_values, atol=1e-6)
    answered = runtime.requests[1:]
    assert stats["retries"] == 1 and stats["images"] == explanation.model_calls <= 61
    assert max(request["bytes"] for request in answered) == budget  # 7 masked images per request at most
    assert len(answered) <= 61 // 5
    for request in runtime.requests:
        assert request["url"].endswith("/endpoints/shapes-detector/invocations")
        assert request["headers"]["Content-Type"] == "application/x-npy"
        assert request["headers"]["X-Amzn-SageMaker-Custom-Attributes"] == "score_threshold=0"


def test_a_classification_sagemaker_predictor_sends_no_score_threshold():
    predictor, runtime = sagemaker_predictor("classification")
    explanation = Explainer(predictor, task="classification", num_samples=16, num_segments=4)(textured_image())
    assert explanation.shap_values.shape[0] == 1
    assert all("X-Amzn-SageMaker-Custom-Attributes" not in request["headers"] for request in runtime.requests)


def test_run_writes_the_files_and_the_report(tmp_path):
    Image.fromarray(red_square_scene()).save(tmp_path / "scene.png")
    explainer = Explainer(red_square_detector, num_samples=16, num_segments=6, label_headers=("square", "corner"))
    summary = explainer.run(tmp_path / "scene.png", tmp_path / "out")
    assert summary["images"][0]["targets"][0]["label"] == "square"
    assert {"scene.png_shap.npz", "shap_scene.png_box1_object.jpeg", "report.html", "analysis.json"} <= {
        path.name for path in (tmp_path / "out").iterdir()}



@pytest.mark.parametrize("images, message", [  # review 19: OSError "File name too long: '[[[120 159 ..."
    ([red_square_scene()], "a run's images are files, folders or s3:// prefixes (or ImageSources alone), got an "
                           "array of shape (64, 64, 3): to explain images in memory, call the Explainer on them"),
    (red_square_scene(), "got an array of shape (64, 64, 3)"),
    ([None], "got None"),
    (None, "got None"),  # review 20: None, a number were a TypeError 'not iterable'; bytes were read as
    (3, "got a value of type int"),  # numbers ("got a int")
    (b"scene.png", "got a value of type bytes"),
])
def test_run_refuses_images_in_memory_saying_what_to_do(tmp_path, images, message):
    explainer = Explainer(red_square_detector, num_samples=16, num_segments=6)
    with pytest.raises(ExplainError) as raised:
        explainer.run(images, tmp_path / "out")
    assert message in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_run_takes_image_paths_in_a_numpy_array(tmp_path):
    # review 20: review 19's refusal of images in memory took any array for pixels: "got an array of shape (1,)"
    Image.fromarray(red_square_scene()).save(tmp_path / "scene.png")
    explainer = Explainer(red_square_detector, num_samples=16, num_segments=6)
    from explain.runner import RunOptions

    summary = explainer.run(np.array([str(tmp_path / "scene.png")]), tmp_path / "out", RunOptions(progress=False))
    assert [item["stem"] for item in summary["images"]] == ["scene.png"]
    in_memory = np.empty(1, dtype=object)  # what a pandas column of images gives: each image still refused
    in_memory[0] = red_square_scene()
    with pytest.raises(ExplainError, match=r"got an array of shape \(64, 64, 3\)"):
        explainer.run(in_memory, tmp_path / "other")


def test_run_refuses_options_that_are_not_run_options(tmp_path):
    Image.fromarray(red_square_scene()).save(tmp_path / "scene.png")
    explainer = Explainer(red_square_detector, num_samples=16, num_segments=6)
    with pytest.raises(ConfigError, match="options must be a RunOptions, got dict"):  # was an AttributeError
        explainer.run(tmp_path / "scene.png", tmp_path / "out", {"restart": True})


def test_lower_level_functions_refuse_wrong_types_before_writing(tmp_path):
    # review 44: an AttributeError after out_dir and its marker were made; a string endpoint read per character
    from explain import build_predictor, make_predictor, run_explanations

    Image.fromarray(red_square_scene()).save(tmp_path / "scene.png")
    with pytest.raises(ConfigError, match="config must be an ExplainConfig, got NoneType"):
        run_explanations([tmp_path / "scene.png"], red_square_detector, None, tmp_path / "out")
    with pytest.raises(ConfigError, match="out_dir must be a folder path, got NoneType"):
        run_explanations([tmp_path / "scene.png"], red_square_detector, ExplainConfig(), None)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match=re.escape("endpoints must be a list of endpoints, got the str "
                                                    "'http://127.0.0.1:9': give ['http://127.0.0.1:9']")):
        build_predictor("http://127.0.0.1:9", "detection")
    for build in (lambda: make_predictor("http://127.0.0.1:9", "detection", {"timeout": 3}),
                  lambda: build_predictor(["http://127.0.0.1:9"], "detection", {"timeout": 3})):
        with pytest.raises(ConfigError, match="transport must be a TransportConfig, got dict"):
            build()


# --------------------------------------------------------------------------------------
# Explanation: save / load, plot, to_shap
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def explained():
    config = ExplainConfig(num_samples=60, num_segments=10, metrics=True, label_headers=("square", "corner"))
    return explain_image(red_square_scene(), red_square_detector, config)


def assert_same_explanation(loaded: Explanation, original: Explanation) -> None:
    for name in ("image", "segments", "shap_values", "standard_errors", "base_values", "predictions", "labels",
                 "boxes", "target_scores", "converged"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name), err_msg=name)
    for name in ("model_calls", "num_segments_used", "task", "exact", "label_headers", "metrics",
                 "coarse_segments", "refinement", "best_detection"):
        assert getattr(loaded, name) == getattr(original, name), name
    np.testing.assert_array_equal(loaded.levels, original.levels)
    assert loaded.timings == pytest.approx(original.timings)


def test_save_and_load_keep_everything_the_image_included(tmp_path, explained):
    path = explained.save(tmp_path / "scene")
    assert path == tmp_path / "scene.npz"
    assert explained.best_detection is not None and explained.refinement  # kept too (review 19)
    assert_same_explanation(Explanation.load(path), explained)


def test_load_finds_the_file_save_wrote_without_the_suffix(tmp_path, explained):
    # review 36: save("x") wrote x.npz, then load("x") said x did not exist
    explained.save(tmp_path / "scene")
    assert_same_explanation(Explanation.load(tmp_path / "scene"), explained)
    assert_same_explanation(Explanation.load(str(tmp_path / "scene")), explained)


def test_save_into_a_folder_path_is_refused_not_written_beside_it(tmp_path, explained):
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(ExplainError, match=r"'.*out': it names a folder; give a file path, e.g. folder/name.npz"):
        explained.save(folder)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # no out.npz beside it
    # review 20: a folder named with a trailing separator but not made yet was written as new.npz
    with pytest.raises(ExplainError, match=r"'.*new/': it names a folder; give a file path"):
        explained.save(f"{tmp_path}/new/")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_a_file_written_before_images_were_stored_still_loads(tmp_path, explained):
    old = tmp_path / "old_shap.npz"  # what save_npz wrote before: no image, task, metrics or names
    np.savez_compressed(old, segments=explained.segments, shap_values=explained.shap_values,
                        standard_errors=explained.standard_errors, base_values=explained.base_values,
                        predictions=explained.predictions, labels=explained.labels,
                        target_scores=explained.target_scores, model_calls=np.int64(explained.model_calls),
                        boxes=explained.boxes)
    loaded = Explanation.load(old)
    assert loaded.image is None and loaded.task == "detection" and loaded.metrics is None
    np.testing.assert_array_equal(loaded.shap_values, explained.shap_values)
    with pytest.raises(ExplainError, match=r"this explanation has no image \(read from an older .npz file\): "
                                           r"load it with Explanation.load\(path, image=load_image"):
        loaded.plot()
    with_image = Explanation.load(old, image=explained.image)
    assert len(with_image.plot().axes) >= 4
    with pytest.raises(ExplainError, match=r"image must be an \(64, 64, 3\) uint8 array"):
        Explanation.load(old, image=explained.image[:10])


def test_load_names_a_file_that_is_not_an_explanation(tmp_path):
    np.savez(tmp_path / "other.npz", values=np.zeros(3))
    with pytest.raises(ExplainError, match="is not an explanation file: no base_values, labels, predictions"):
        Explanation.load(tmp_path / "other.npz")
    with pytest.raises(ExplainError, match="cannot read explanation file"):
        Explanation.load(tmp_path / "missing.npz")
    # review 30: numpy's "Cannot load file containing pickled data when allow_pickle=False" for these
    np.save(tmp_path / "values.npy", np.zeros(3))
    (tmp_path / "report.html").write_text("<html></html>")
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "other.npz").read_bytes()[:100])  # review 31: BadZipFile escaped
    with pytest.raises(ExplainError, match="cannot read explanation file .*cut.npz': BadZipFile: File is not a zip file"):
        Explanation.load(tmp_path / "cut.npz")
    np.savez_compressed(tmp_path / "packed.npz", values=np.arange(20000.0))
    damaged = bytearray((tmp_path / "packed.npz").read_bytes())
    damaged[200:240] = bytes(40)  # inside the compressed member: zlib.error escaped (review 33)
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    with pytest.raises(ExplainError, match="cannot read explanation file .*damaged.npz'"):
        Explanation.load(tmp_path / "damaged.npz")
    (tmp_path / "notes.txt").write_text("PK is how this text starts")
    for name in ("values.npy", "report.html", "empty.npz", "notes.txt"):
        with pytest.raises(ExplainError, match=f"{name}' is not an explanation file: not an .npz archive "
                                               r"\(an explanation file is the .npz that explain or Explanation.save"):
            Explanation.load(tmp_path / name)


@pytest.mark.parametrize("field, value", [  # review 20: a raw JSONDecodeError / IndexError
    ("refinement", np.array("not json")),
    ("refinement", np.array('[{"split": [1]}]')),
    ("timings", np.array("{")),
    ("best_detection", np.zeros(0)),
])
def test_load_names_a_damaged_file(tmp_path, explained, field, value):
    path = explained.save(tmp_path / "e.npz")
    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays[field] = value
    np.savez(path, **arrays)
    with pytest.raises(ExplainError, match=re.escape(f"{str(path)!r} is a damaged explanation file: its timings, "
                                                     "refinement or best_detection cannot be read")):
        Explanation.load(path)


def test_plot_draws_the_image_the_box_and_numbers_the_named_segments_on_or_beside_them(explained):
    from matplotlib.figure import Figure

    from explain.render import _target_sets, named_segments

    figure = explained.plot(targets=[0])
    assert isinstance(figure, Figure)
    image_axis, heatmap_axis, keep_axis, remove_axis = [axis for axis in figure.axes if axis.get_images()][:4]
    np.testing.assert_array_equal(image_axis.get_images()[0].get_array(), explained.image)
    assert image_axis.get_title() == "box 1: square 1.00"
    box = image_axis.patches[0]
    height, width = explained.image.shape[:2]
    assert box.get_xy() == pytest.approx((explained.boxes[0][0] * width, explained.boxes[0][1] * height))
    numbers = {int(text.get_text()): text.get_position() for text in heatmap_axis.texts}
    assert sorted(numbers) == sorted(named_segments(explained.shap_values[0], _target_sets(explained, 0)))
    lines = {line.get_gid(): line for line in heatmap_axis.lines}
    for number, (x, y) in numbers.items():  # on its segment, or beside it with a line to it
        line = lines.get(f"segment-{number}-line")
        x, y = (x, y) if line is None else (line.get_xdata()[-1], line.get_ydata()[-1])
        assert explained.segments[int(y), int(x)] == number
    assert keep_axis.get_title().startswith("keeps the score: ")
    assert remove_axis.get_title().startswith("removes it: ")
    # target 2 (the constant corner object) has no set that keeps or removes its score: 2 panels
    assert len([axis for axis in explained.plot().axes if axis.get_images()]) == 4 + 2
    with pytest.raises(ExplainError, match=r"target index 2 out of range: this explanation has 2 target\(s\), 0..1"):
        explained.plot(targets=[2])


def test_plot_takes_one_target_index_and_refuses_what_is_not_an_index(explained):
    # review 19: plot(targets=0) was a TypeError inside, plot(targets=[0.7]) drew target 0
    assert len([axis for axis in explained.plot(targets=0).axes if axis.get_images()]) == 4
    assert len([axis for axis in explained.plot(targets=np.int64(1)).axes if axis.get_images()]) == 2
    for targets, shown in [([0.7], "0.7"), ("0", "'0'"), ([True], "True"), (0.0, "0.0")]:
        with pytest.raises(ExplainError, match=r"targets must be target indices \(an int or a list of ints\), got "
                                               + re.escape(shown)):
            explained.plot(targets=targets)


def test_plot_refuses_an_empty_selection_and_to_shap_a_pixels_that_is_not_a_bool(explained):
    # review 44: plot(targets=[]) drew every target; to_shap(pixels="yes") was taken as True
    for empty in ([], iter([]), set()):  # review 45: an empty generator or set still drew every target
        with pytest.raises(ExplainError, match=r"targets is empty: give target indices, or leave targets out"):
            explained.plot(targets=empty)
    with pytest.raises(ExplainError, match=r"pixels must be True or False, got 'yes'"):
        explained.to_shap(pixels="yes")
    assert explained.to_shap(pixels=1).values.shape == explained.to_shap(pixels=True).values.shape  # as before


def test_save_into_a_folder_that_does_not_exist_is_an_explain_error(explained, tmp_path):
    # review 44: a bare FileNotFoundError from numpy, while ExplainError is the base of explain's errors
    with pytest.raises(ExplainError, match=re.escape(f"there is no folder {str(tmp_path / 'missing')!r}; make it")):
        explained.save(tmp_path / "missing" / "x.npz")


def test_plot_draws_the_targets_a_generator_gives(explained):
    # review 20: the index check read the generator, so nothing was left to draw: the figure said
    # "no target at or above the probability threshold"
    figure = explained.plot(targets=(index for index in [1]))
    assert [axis.get_title() for axis in figure.axes if axis.get_images()][0].startswith("box 2: ")
    assert len([axis for axis in explained.plot(targets=iter(range(2))).axes if axis.get_images()]) == 4 + 2


def test_to_shap_gives_a_shap_explanation_that_shap_plots(explained):
    import matplotlib

    matplotlib.use("Agg")
    import shap

    converted = explained.to_shap()
    assert isinstance(converted, shap.Explanation)
    np.testing.assert_array_equal(converted.values, explained.shap_values.T)
    np.testing.assert_array_equal(converted.base_values, explained.base_values)
    np.testing.assert_array_equal(converted.error_std, explained.standard_errors.T)
    assert converted.output_names == ["box 1: square 1.00", "box 2: corner 0.60"]
    first = converted[:, 0]
    assert first.values.sum() + first.base_values == pytest.approx(explained.predictions[0])
    shap.plots.waterfall(first, show=False)
    shap.plots.bar(first, show=False)

    pixels = explained.to_shap(pixels=True)
    assert pixels.values.shape == (1, *explained.image.shape, 2)
    np.testing.assert_allclose(pixels.values.sum(axis=(0, 1, 2, 3)), explained.shap_values.sum(axis=1), atol=1e-12)
    shap.plots.image(pixels, show=False)


def test_to_shap_without_shap_says_how_to_install_it(explained, monkeypatch):
    monkeypatch.setitem(sys.modules, "shap", None)  # what an install without shap looks like to import
    with pytest.raises(ImportError, match=r"to_shap needs the shap package: pip install shap "
                                          r"\(or pip install '\.\[dev\]' in the clearsight checkout\)"):
        explained.to_shap()


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """README's 'From Python' block, against a fake endpoint instead of 127.0.0.1:8080."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("### From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    samples = Path(__file__).resolve().parents[2] / "examples" / "shapes" / "samples"
    monkeypatch.chdir(tmp_path)
    with FakeEndpoint("detection") as endpoint:
        code = (block.replace('"http://127.0.0.1:8080"', repr(endpoint.url))
                .replace('"examples/shapes/samples/', f'"{samples}/').replace("num_samples=500", "num_samples=40"))
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented example itself
    assert isinstance(namespace["shap_explanation"], type(namespace["explanation"].to_shap()))
    assert (tmp_path / "shapes_0_explained.png").stat().st_size > 0
    np.testing.assert_array_equal(namespace["same"].image, namespace["explanation"].image)


def test_the_request_settings_recorded_are_those_the_model_is_asked_with():
    # review 18: a ready-made predictor's own transport, not the Explainer's default, is recorded;
    # a config that sets them otherwise is refused instead of being overwritten
    jpeg = TransportConfig(content_type="image/jpeg", custom_attributes="score_threshold=0")
    with FakeEndpoint("detection") as endpoint:
        with Explainer(HttpPredictor(endpoint.url, "detection", jpeg), num_samples=16, num_segments=4) as explainer:
            assert explainer.config.content_type == "image/jpeg"
            assert explainer.config.custom_attributes == "score_threshold=0"
        with Explainer(endpoint.url, transport=jpeg, num_samples=16, num_segments=4) as explainer:
            assert explainer.config.content_type == "image/jpeg"
        with pytest.raises(ConfigError, match="config sets content_type, which come from how the model is asked"):
            Explainer(endpoint.url, config=ExplainConfig(content_type="image/jpeg"))
