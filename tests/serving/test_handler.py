"""The handler in-process: wire format, batch invariance, filters, preprocessing, bad input."""
import ast
import io
import json

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from serving import codecs
from serving.errors import ServingError
from serving.handler import model_fn, transform_fn
from serving.model_spec import ModelSpec, Preprocess
from serving.postprocess import detection_rows
from serving.preprocess import preprocess_batch
from tests.conftest import REPO, npy_bytes, random_images
from tests.tiny_models import BOX_FRACTIONS, export_tiny_model


@pytest.fixture(scope="module")
def detector(tiny_detector_dir):
    return model_fn(str(tiny_detector_dir))


@pytest.fixture(scope="module")
def classifier(tiny_classifier_dir):
    return model_fn(str(tiny_classifier_dir))


def detect(model, images, accept="application/json"):
    body, content_type = transform_fn(model, npy_bytes(images), "application/x-npy", accept)
    if content_type == "application/json":
        return [np.array(rows, dtype=np.float32).reshape(-1, 6) for rows in json.loads(body)]
    return np.load(io.BytesIO(body), allow_pickle=False)


def test_detection_rows_follow_the_wire_contract(detector):
    images = random_images(3, 90, 150)
    results = detect(detector, images)
    assert len(results) == 3
    for rows in results:
        # the two padding rows (class -1) are gone; three real rows remain
        assert rows.shape == (3, 6)
        assert set(rows[:, 0].tolist()) == {0.0, 1.0, 2.0}
        assert np.all(np.diff(rows[:, 1]) <= 0), "sorted by score, highest first"
        assert rows[:, 2:].min() >= 0.0 and rows[:, 2:].max() <= 1.0
        # boxes are the network's fixed fractions of the resized input, clipped to [0, 1]
        expected = np.clip(BOX_FRACTIONS[[0, 1, 3]], 0, 1)
        np.testing.assert_allclose(rows[np.argsort(rows[:, 0]), 2:], expected, atol=1e-6)


def test_an_image_gets_the_same_result_alone_or_inside_a_batch(detector):
    images = random_images(7, 64, 96, seed=3)
    batch = detect(detector, images)
    for index in range(len(images)):
        alone = detect(detector, images[index:index + 1])[0]
        np.testing.assert_allclose(alone, batch[index], atol=1e-4)


def test_chunked_forward_passes_give_the_same_answer(tiny_detector_dir, monkeypatch):
    images = random_images(5, 64, 64, seed=4)
    monkeypatch.setenv("SERVING_MAX_BATCH_SIZE", "2")
    chunked = detect(model_fn(str(tiny_detector_dir)), images)
    monkeypatch.setenv("SERVING_MAX_BATCH_SIZE", "32")
    whole = detect(model_fn(str(tiny_detector_dir)), images)
    for a, b in zip(chunked, whole):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_pixel_budget_chunks_give_the_same_answer(tiny_detector_dir, monkeypatch):
    images = random_images(5, 64, 96, seed=6)
    whole = detect(model_fn(str(tiny_detector_dir)), images)
    monkeypatch.setenv("SERVING_MAX_BATCH_PIXELS", str(64 * 96 * 2))  # two images per pass
    model = model_fn(str(tiny_detector_dir))
    assert model.limits.images_per_pass(64, 96) == 2
    for a, b in zip(detect(model, images), whole):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_on_a_cpu_large_inputs_go_one_per_pass_small_ones_together(detector):
    assert detector.limits.max_batch_pixels == 500000
    assert detector.limits.images_per_pass(416, 624) == 1
    assert detector.limits.images_per_pass(160, 160) == 19


def test_npy_response_is_padded_with_minus_one_rows(detector):
    images = random_images(2, 64, 64)
    padded = detect(detector, images, accept="application/x-npy")
    assert padded.dtype == np.float32 and padded.shape == (2, 3, 6)
    ragged = detect(detector, images)
    for index in range(2):
        np.testing.assert_allclose(padded[index], ragged[index], atol=1e-6)


def test_single_image_npy_and_image_files_are_accepted(detector):
    image = random_images(1, 64, 80)[0]
    from_npy = detect(detector, image)[0]
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    for content_type in ("image/png", "application/x-image"):
        body, _ = transform_fn(detector, png.getvalue(), content_type, "application/json")
        np.testing.assert_allclose(np.array(json.loads(body)[0]), from_npy, atol=1e-5)
    jpeg = io.BytesIO()
    Image.fromarray(image).save(jpeg, format="JPEG")
    body, _ = transform_fn(detector, jpeg.getvalue(), "image/jpeg", "application/json")
    assert len(json.loads(body)) == 1


def test_float_pixels_in_0_255_equal_uint8(detector):
    images = random_images(2, 64, 64, seed=5)
    as_float = detect(detector, images.astype(np.float32))
    as_uint8 = detect(detector, images)
    for a, b in zip(as_float, as_uint8):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_classifier_returns_probabilities(classifier):
    images = np.zeros((3, 40, 40, 3), dtype=np.uint8)
    for index in range(3):
        images[index, :, :, index] = 255  # red, green, blue
    body, content_type = transform_fn(classifier, npy_bytes(images), "application/x-npy", "application/json")
    probabilities = np.array(json.loads(body))
    assert content_type == "application/json" and probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert probabilities.argmax(axis=1).tolist() == [0, 1, 2]
    body, content_type = transform_fn(classifier, npy_bytes(images), "application/x-npy", "application/x-npy")
    as_npy = np.load(io.BytesIO(body), allow_pickle=False)
    assert as_npy.dtype == np.float32 and as_npy.shape == (3, 3)
    np.testing.assert_allclose(as_npy, probabilities, atol=1e-6)


def test_centernets_ids_and_scores_without_a_last_axis_give_the_same_rows(detector, tmp_path):
    """CenterNet returns ids and scores as (N, K), not GluonCV's usual (N, K, 1): taking [..., 0]
    kept one value per image, and every request failed in a numpy broadcast (a 500)."""
    flat = model_fn(str(export_tiny_model(tmp_path / "flat", "detection", flat_scores=True)))
    images = random_images(3, 40, 56, seed=9)
    answers, expected = detect(flat, images), detect(detector, images)
    assert [len(rows) for rows in answers] == [3, 3, 3]
    for got, want in zip(answers, expected):
        np.testing.assert_array_equal(got, want)


def test_model_json_images_per_pass_is_validated_and_kept_out_when_unset():
    assert "images_per_pass" not in ModelSpec("detection", ["a"]).to_dict()
    assert ModelSpec.from_dict(ModelSpec("detection", ["a"], images_per_pass=1).to_dict()).images_per_pass == 1
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ServingError, match="images_per_pass must be a positive integer or null, got"):
            ModelSpec("detection", ["a"], images_per_pass=bad)


def test_detection_rows_known_answer():
    class_ids = np.array([1, -1, 0, 2, 0], dtype=np.float32)
    scores = np.array([0.5, -1, 0.9, 0.2, 0.7], dtype=np.float32)
    boxes = np.array([[10, 10, 50, 50], [0, 0, 0, 0], [-20, 5, 100, 120], [0, 0, 1, 1], [5, 5, 10, 10]],
                     dtype=np.float32)
    rows = detection_rows(class_ids, scores, boxes, (100, 200), score_threshold=0.3, top_k=2)
    expected = np.array([[0, 0.9, 0.0, 0.05, 0.5, 1.0], [0, 0.7, 0.025, 0.05, 0.05, 0.1]], dtype=np.float32)
    np.testing.assert_allclose(rows, expected, atol=1e-6)


def test_preprocessing_equals_gluoncv_transform_test():
    from gluoncv.data.transforms.presets.yolo import transform_test

    for height, width in ((300, 500), (480, 640), (200, 1800), (416, 416)):
        image = random_images(1, height, width, seed=height)[0]
        expected, _ = transform_test(mx.nd.array(image, dtype=np.uint8), short=416, max_size=1024)
        ours = preprocess_batch(image[None], Preprocess(416, 1024))
        assert ours.shape == expected.shape
        assert float(mx.nd.abs(ours - expected).max().asscalar()) == 0.0


@pytest.mark.parametrize("body, content_type, status, message", [
    (b"", "application/x-npy", 400, "the request body is empty"),
    (b"\x93NUMPY garbage", "application/x-npy", 400, "not a valid .npy array"),
    (npy_bytes(np.zeros((2, 8, 8, 3), np.uint8))[:-10], "application/x-npy", 400, "truncated or padded"),
    (npy_bytes(np.array([{"a": 1}], dtype=object)), "application/x-npy", 400, "object arrays are refused"),
    (npy_bytes(np.zeros((8, 8), np.uint8)), "application/x-npy", 400, "must have shape (H, W, 3) or (N, H, W, 3)"),
    (npy_bytes(np.zeros((1, 2, 8, 8, 3), np.uint8)), "application/x-npy", 400, "got rank 5"),
    (npy_bytes(np.zeros((1, 8, 8, 4), np.uint8)), "application/x-npy", 400, "3 channels"),
    # review 29: the shape named is the one sent, not the batch (1, 2, 8, 8) made of it
    (npy_bytes(np.zeros((2, 8, 8), np.uint8)), "application/x-npy", 400,
     "images must have 3 channels (RGB) in the last axis; got shape (2, 8, 8)"),
    (npy_bytes(np.zeros((0, 8, 8, 3), np.uint8)), "application/x-npy", 400, "the batch is empty"),
    (npy_bytes(np.zeros((0, 8, 3), np.uint8)), "application/x-npy", 400, "the batch is empty: shape (0, 8, 3)"),
    (npy_bytes(np.full((1, 8, 8, 3), np.nan, np.float32)), "application/x-npy", 400, "NaN or infinite"),
    (npy_bytes(np.full((1, 8, 8, 3), 300.0, np.float32)), "application/x-npy", 400, "must lie in 0..255"),
    (npy_bytes(np.full((1, 8, 8, 3), -1, np.int16)), "application/x-npy", 400, "must lie in 0..255"),
    (npy_bytes(np.array(["a"] * 3).reshape(1, 1, 1, 3)), "application/x-npy", 400, "dtype <U1 is not supported"),
    (b"not an image", "image/jpeg", 400, "not a readable image/jpeg image"),
    (b"{}", "application/json", 415, "Content-Type 'application/json' is not supported"),
    (b"1,2,3", "text/csv", 415, "is not supported"),
    (b"abc", None, 415, "the request has no Content-Type header; send one of: application/x-npy, image/jpeg, "
                        "image/png, application/x-image"),
    # present with no value (the toolkit passes None for an absent header): it said "no Content-Type header"
    (b"abc", "", 415, "the Content-Type header is empty; send one of: application/x-npy, image/jpeg, image/png, "
                      "application/x-image"),
    (b"abc", " \t", 415, "the Content-Type header is empty; send one of: application/x-npy"),
    # present but naming no media type: it was answered "no Content-Type header"
    (b"abc", "; charset=utf-8", 415, "Content-Type '; charset=utf-8' names no media type; send one of: "
                                     "application/x-npy, image/jpeg, image/png, application/x-image"),
    # a list of two sizes, as numpy and the SDK's NumpySerializer send it: an object array (a pickle)
    (npy_bytes(np.array([np.zeros((4, 6, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)], dtype=object)),
     "application/x-npy", 400, "(images of different sizes in one list?): send images of one size per request, "
                               "or one request per image"),
    (npy_bytes(np.full((2, 8, 8, 3), 0.98, np.float32)), "application/x-npy", 400,
     "pixels look normalised to 0..1 in image 0 (max 0.98); send 0..255 values"),
    (npy_bytes(np.full((1, 8, 8, 3), 1.0, np.float64)), "application/x-npy", 400,
     "pixels look normalised to 0..1 in image 0 (max 1); send 0..255 values"),
    # the rule is per image: a 0..255 image in the same batch hid a 0..1 one, which became black
    (npy_bytes(np.stack([np.full((8, 8, 3), 200.0), np.full((8, 8, 3), 0.5)]).astype(np.float32)),
     "application/x-npy", 400, "pixels look normalised to 0..1 in image 1 (max 0.5); send 0..255 values"),
    (npy_bytes(np.asfortranarray(np.stack([np.full((8, 8, 3), 0.75), np.full((8, 8, 3), 255.0)]))),
     "application/x-npy", 400, "pixels look normalised to 0..1 in image 0 (max 0.75); send 0..255 values"),
])
def test_bad_input_is_refused_with_a_message(detector, body, content_type, status, message):
    with pytest.raises(ServingError) as caught:
        transform_fn(detector, body, content_type, "application/json")
    assert caught.value.status == status
    assert message in caught.value.message
    assert "None" not in caught.value.message


@pytest.mark.parametrize("pixels", [np.zeros((1, 8, 8, 3), np.float32), np.full((1, 8, 8, 3), 1.5, np.float32),
                                    np.full((1, 8, 8, 3), 255.0, np.float16),
                                    np.stack([np.zeros((8, 8, 3)), np.full((8, 8, 3), 180.0)]).astype(np.float32)])
def test_float_pixels_outside_the_normalised_range_are_accepted(detector, pixels):
    """The 0..1 rule refuses only an image whose largest value is in (0, 1]: an all-black float image is a real one."""
    expected = json.loads(transform_fn(detector, npy_bytes(np.round(pixels).astype(np.uint8)), "application/x-npy",
                                       "application/json")[0])
    answer = json.loads(transform_fn(detector, npy_bytes(pixels), "application/x-npy", "application/json")[0])
    assert answer == expected


@pytest.fixture
def toolkit_service(tiny_detector_dir, tmp_path, monkeypatch):
    """The packed entry point under SageMaker's inference toolkit, as an MMS worker runs it (in-process).

    Yields ``invoke(body, content_type) -> (status, response content type, body)``: one request
    through ``DefaultHandlerService.handle`` with a real ``mms.context.Context``, which is what
    sagemaker-mxnet-inference's handler service runs for a module with ``transform_fn``.
    """
    from mms.context import Context, RequestProcessor
    from sagemaker_inference import content_types
    from sagemaker_inference.default_handler_service import DefaultHandlerService

    from deploy.package import ENTRY_POINT

    (tmp_path / "clearsight_toolkit_entry.py").write_text(ENTRY_POINT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SAGEMAKER_PROGRAM", "clearsight_toolkit_entry.py")
    monkeypatch.setenv("PYTHONPATH", "")  # initialize() prepends model_dir/code to it
    monkeypatch.setattr(content_types, "UTF8_TYPES", list(content_types.UTF8_TYPES))  # restored afterwards
    context = Context("model", str(tiny_detector_dir), None, 1, None, "1.1.11")
    service = DefaultHandlerService()
    service.initialize(context)

    def invoke(body, content_type):
        context.request_processor = [RequestProcessor({"Content-Type": content_type, "Accept": "application/json"})]
        (answer,) = service.handle([{"body": body}], context)
        return context.get_response_status(0)[0], context.get_response_content_type(0), answer

    return invoke


@pytest.mark.parametrize("content_type", ["application/json", "text/csv"])
def test_the_toolkit_hands_over_text_types_undecoded_so_an_image_gets_415_not_500(toolkit_service, content_type):
    """sagemaker_inference decoded these as UTF-8 before transform_fn: a JPEG was a 500 whose body
    was the toolkit's traceback. On a real SageMaker endpoint no gate stands before it."""
    jpeg = io.BytesIO()
    Image.fromarray(random_images(1, 40, 56)[0]).save(jpeg, format="JPEG")
    status, response_type, answer = toolkit_service(jpeg.getvalue(), content_type)
    assert (status, response_type) == (415, "application/json")
    assert json.loads(answer) == {
        "error": "Content-Type %r is not supported; send one of: application/x-npy, image/jpeg, image/png, "
                 "application/x-image" % content_type, "status": 415}
    status, _, answer = toolkit_service(b'{"instances": [1]}', content_type)  # valid UTF-8 text: as before
    assert status == 415 and json.loads(answer)["status"] == 415
    status, _, answer = toolkit_service(jpeg.getvalue(), "image/jpeg")
    assert status == 200 and len(json.loads(answer)) == 1


def test_a_truncated_jpeg_is_a_400(detector):
    jpeg = io.BytesIO()
    Image.fromarray(random_images(1, 64, 64)[0]).save(jpeg, format="JPEG")
    with pytest.raises(ServingError) as caught:
        transform_fn(detector, jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "image/jpeg", "application/json")
    assert caught.value.status == 400 and "truncated" in caught.value.message


def test_limits_give_413(tiny_detector_dir, monkeypatch):
    monkeypatch.setenv("SERVING_MAX_IMAGE_PIXELS", "1000")
    monkeypatch.setenv("SERVING_MAX_BODY_BYTES", "100000")
    model = model_fn(str(tiny_detector_dir))
    png = io.BytesIO()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(png, format="PNG")
    cases = [
        (npy_bytes(np.zeros((1, 40, 40, 3), np.uint8)), "application/x-npy", "exceed the limit of 1000 pixels"),
        (png.getvalue(), "image/png", "more than the limit of 1000 pixels"),
        (b"\0" * 100001, "application/x-npy", "more than the limit of 100000"),
    ]
    for body, content_type, message in cases:
        with pytest.raises(ServingError) as caught:
            transform_fn(model, body, content_type, "application/json")
        assert caught.value.status == 413 and message in caught.value.message


def test_an_accept_the_handler_cannot_produce_is_a_406(detector):
    with pytest.raises(ServingError) as caught:
        transform_fn(detector, npy_bytes(random_images(1, 8, 8)), "application/x-npy", "text/csv")
    assert caught.value.status == 406 and "text/csv" in caught.value.message


@pytest.mark.parametrize("height, width", [(480, 640), (640, 480), (231, 517), (300, 300), (256, 256)])
def test_the_centre_crop_preset_equals_gluoncvs_classification_preset(height, width):
    transforms = pytest.importorskip("gluoncv.data.transforms.presets.imagenet")
    image = np.random.default_rng(height + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = transforms.transform_eval(mx.nd.array(image, dtype=np.uint8)).asnumpy()
    ours = preprocess_batch(image[None], Preprocess(256, 1024, center_crop=224)).asnumpy()
    assert ours.shape == (1, 3, 224, 224) and np.abs(ours - expected).max() < 1e-6


def test_a_centre_cropped_classifier_answers_any_shape_and_refuses_an_elongated_image(tiny_classifier_dir, tmp_path):
    import shutil

    model_dir = tmp_path / "cropped"
    shutil.copytree(tiny_classifier_dir, model_dir)
    spec = json.loads((model_dir / "model.json").read_text())
    spec["preprocess"].update(short_side=40, max_size=160, center_crop=32)
    (model_dir / "model.json").write_text(json.dumps(spec))
    model = model_fn(str(model_dir))
    for height, width in ((90, 150), (150, 90), (32, 32)):
        body, _ = transform_fn(model, npy_bytes(random_images(2, height, width)), "application/x-npy",
                               "application/json")
        assert np.array(json.loads(body)).shape == (2, 3)
    with pytest.raises(ServingError) as caught:
        transform_fn(model, npy_bytes(random_images(1, 10, 50)), "application/x-npy", "application/json")
    assert caught.value.status == 400 and caught.value.message == (
        "a 50x10 (width x height) image is too elongated for this model: its short side resized to 40 makes it "
        "200x40 pixels before the centre crop, over 160; crop or pad it so that its long side is at most 4.00 "
        "times its short side")


@pytest.mark.parametrize("accept, chosen", [
    ("application/json;q=0, application/x-npy", "application/x-npy"),  # q=0 was ignored: JSON came back
    ("application/json;q=0.5, application/x-npy", "application/x-npy"),
    ("application/x-npy;q=0.2, application/json;q=0.9", "application/json"),
    ("application/json, application/x-npy", "application/json"),  # equal q: the first written
    ("application/x-npy, application/json", "application/x-npy"),
    ("*/*", "application/json"),
    ("application/json;q=0, */*", "application/x-npy"),  # the specific entry beats the wildcard
    ("*/*;q=0.1, application/x-npy", "application/x-npy"),
    ("text/csv, application/*;q=0.3", "application/json"),
    ("Application/X-NPY ; Q=1", "application/x-npy"),
])
def test_accept_q_values_choose_the_response_type(accept, chosen):
    assert codecs.choose_response_type(accept) == chosen


@pytest.mark.parametrize("accept", ["application/json;q=0", "application/json;q=0, application/x-npy;q=0",
                                    "*/*;q=0", "text/csv"])
def test_an_accept_that_excludes_every_produced_type_is_a_406(accept):
    with pytest.raises(ServingError) as caught:
        codecs.choose_response_type(accept)
    assert caught.value.status == 406 and caught.value.message == (
        "Accept %r names no format this endpoint produces; use one of: application/json, application/x-npy" % accept)


def test_json_numbers_keep_the_significant_digits_of_unlikely_classes():
    """Rounded to 7 decimals, 1.23456e-6 was 1e-06 and the Kernel SHAP game of such a class a step function."""
    probabilities = np.array([[0.999998765, 1.23456e-6, 3.3e-12], [0.5, 0.25, 0.25]], dtype=np.float32)
    decoded = np.array(json.loads(codecs.encode_probabilities(probabilities, "application/json")), dtype=np.float32)
    assert np.array_equal(decoded, probabilities)  # every float32 comes back exactly
    rows = [np.array([[2, 1.5e-6, 0.1, 0.2, 0.30000001, 0.4]], dtype=np.float32)]
    decoded_rows = json.loads(codecs.encode_detections(rows, "application/json"))
    assert np.array_equal(np.array(decoded_rows[0], dtype=np.float32), rows[0]) and decoded_rows[0][0][0] == 2


@pytest.mark.parametrize("data, message", [
    ({"task": "segmentation", "classes": ["a"]}, "task must be one of detection, classification"),
    ({"task": "detection", "classes": []}, "classes must be a non-empty list"),
    ({"task": "detection", "classes": ["a"], "score_threshold": 2}, "score_threshold must be a number in [0, 1]"),
    ({"task": "detection", "classes": ["a"], "top_k": 0}, "top_k must be a positive integer"),
    ({"task": "detection", "classes": ["a"], "preprocess": {"short_side": 4}}, "short_side must be an integer >= 8"),
    ({"task": "detection", "classes": ["a"], "colour": 1}, "unknown keys: colour"),
    ({"classes": ["a"]}, "missing 'task'"),
    ({"task": "detection", "classes": ["a"], "preprocess": {"short_side": 256, "center_crop": 224}},
     "preprocess.center_crop is for classifiers"),
    ({"task": "classification", "classes": ["a"], "preprocess": {"short_side": 200, "center_crop": 224}},
     "preprocess.center_crop must be an integer from 8 to short_side (200), got 224"),
])
def test_model_json_validation(data, message):
    with pytest.raises(ServingError) as caught:
        ModelSpec.from_dict(data)
    assert message in caught.value.message


def test_serving_parses_as_python_38():
    """serving/ runs on Python 3.8 in the SageMaker MXNet 1.9 container (ruff's py38 lint: make lint)."""
    for path in sorted((REPO / "serving").glob("*.py")):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))


@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea"])
def test_real_photographs_as_png_jpeg_and_npy(detector, photo):
    from skimage import data

    image = getattr(data, photo)()  # real photos that ship with scikit-image, non-square ones too
    from_npy = detect(detector, image)[0]
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    body, _ = transform_fn(detector, png.getvalue(), "image/png", "application/json")
    np.testing.assert_allclose(np.array(json.loads(body)[0]), from_npy, atol=1e-5)
    jpeg = io.BytesIO()
    Image.fromarray(image).save(jpeg, format="JPEG", quality=95)
    body, _ = transform_fn(detector, jpeg.getvalue(), "image/jpeg", "application/json")
    from_jpeg = np.array(json.loads(body)[0])
    assert from_jpeg.shape == from_npy.shape
    np.testing.assert_allclose(from_jpeg[:, 2:], from_npy[:, 2:], atol=1e-6)  # same boxes
    np.testing.assert_allclose(from_jpeg[:, 1], from_npy[:, 1], atol=0.02)  # lossy pixels, close scores
