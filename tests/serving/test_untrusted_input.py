"""Untrusted request bodies: bounded work per request, no 500 for odd shapes, only JPEG/PNG decoded.

In-process through ``transform_fn`` (the tiny detector: short side 64, long side at most 256)
and over HTTP against ``deploy serve``. Every refusal is a 4xx whose message names what was
wrong and, for a limit, the environment variable that raises it.
"""
import io
import json
import warnings

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from serving.errors import ServingError
from serving.handler import model_fn, transform_fn
from serving.settings import DEFAULT_MAX_IMAGES_PER_REQUEST, DEFAULT_MAX_REQUEST_PIXELS
from tests.conftest import npy_bytes, random_images
from tests.untrusted_bodies import (
    BAD_BODIES,
    HEAP_ADDRESS,
    PAST_PILLOWS_LIMIT,
    SIXTEEN_BIT_RAMP,
    encoded,
    jpeg_claiming,
    npy_with_header,
    other_formats,
    png_claiming,
    sixteen_bit_png,
)


@pytest.fixture(scope="module")
def detector(tiny_detector_dir):
    return model_fn(str(tiny_detector_dir))


def refusal(model, body, content_type):
    with pytest.raises(ServingError) as caught:
        transform_fn(model, body, content_type, "application/json")
    return caught.value


@pytest.mark.parametrize("body, content_type, status, message", BAD_BODIES)
def test_untrusted_bodies_are_refused_with_a_4xx_and_a_message(detector, body, content_type, status, message):
    error = refusal(detector, body, content_type)
    assert (error.status, message in error.message) == (status, True), error.message


def test_no_message_holds_a_heap_address(detector):
    truncated_png = encoded(random_images(1, 32, 32)[0], "PNG")[:60]
    truncated_jpeg = encoded(random_images(1, 32, 32)[0], "JPEG")[:300]
    bodies = [(body, content_type) for body, content_type, _, _ in BAD_BODIES] + [
        (truncated_png, "image/png"), (truncated_jpeg, "image/jpeg"), (b"\xff\xd8\xff" + bytes(20), "image/jpeg"),
        (b"\x93NUMPY garbage", "application/x-npy"), (b"GIF89a", "application/x-image"),
    ]
    for body, content_type in bodies:
        message = refusal(detector, body, content_type).message
        assert not HEAP_ADDRESS.search(message), message


def test_the_request_pixel_limit_counts_network_input_pixels(tiny_detector_dir, monkeypatch):
    # 40x80 images are resized to 64x128 = 8192 network-input pixels each; 3 fit in 25,000
    monkeypatch.setenv("SERVING_MAX_REQUEST_PIXELS", "25000")
    model = model_fn(str(tiny_detector_dir))
    assert model.images_per_request(40, 80) == 3
    body, _ = transform_fn(model, npy_bytes(random_images(3, 40, 80)), "application/x-npy", "application/json")
    assert len(json.loads(body)) == 3
    error = refusal(model, npy_bytes(random_images(4, 40, 80)), "application/x-npy")
    assert error.status == 413
    assert error.message == (
        "the request's 4 image(s) of 80x40 are resized for the network to 128x64, 32768 network-input pixels "
        "in all, more than the limit of 25000 pixels per request; send at most 3 such images per request, "
        "or raise the limit with the environment variable SERVING_MAX_REQUEST_PIXELS")
    png = encoded(random_images(1, 400, 800)[0], "PNG")  # one image alone: 64x128 after the resize
    monkeypatch.setenv("SERVING_MAX_REQUEST_PIXELS", "8000")
    error = refusal(model_fn(str(tiny_detector_dir)), png, "image/png")
    assert error.status == 413 and "SERVING_MAX_REQUEST_PIXELS" in error.message


def test_the_image_limit_is_read_from_the_environment(tiny_detector_dir, monkeypatch):
    monkeypatch.setenv("SERVING_MAX_IMAGES_PER_REQUEST", "3")
    model = model_fn(str(tiny_detector_dir))
    body, _ = transform_fn(model, npy_bytes(random_images(3, 8, 8)), "application/x-npy", "application/json")
    assert len(json.loads(body)) == 3
    error = refusal(model, npy_bytes(random_images(4, 8, 8)), "application/x-npy")
    assert error.status == 413 and "more than the limit of 3 images per request" in error.message
    monkeypatch.setenv("SERVING_MAX_IMAGES_PER_REQUEST", "0")
    with pytest.raises(ServingError, match="SERVING_MAX_IMAGES_PER_REQUEST must be a positive integer"):
        model_fn(str(tiny_detector_dir))


def test_the_defaults_let_64_images_of_every_known_preset_through(detector):
    """The explain client sends up to 64 images; resized, each is at most short side x long-side cap."""
    from deploy.package import CLASSIFIER_PRESET, FAMILY_PRESETS

    for short_side, max_size in list(FAMILY_PRESETS.values()) + [CLASSIFIER_PRESET]:
        assert DEFAULT_MAX_IMAGES_PER_REQUEST * short_side * max_size <= DEFAULT_MAX_REQUEST_PIXELS
    assert detector.limits.max_images_per_request == DEFAULT_MAX_IMAGES_PER_REQUEST
    body, _ = transform_fn(detector, npy_bytes(random_images(64, 1, 1)), "application/x-npy", "application/json")
    assert len(json.loads(body)) == 64


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_the_handlers_pixel_limit_applies_not_pillows(image_format, monkeypatch):
    """Image.open refused images above 2 x Image.MAX_IMAGE_PIXELS (179 MP) with Pillow's message before
    SERVING_MAX_IMAGE_PIXELS was checked, and a higher SERVING_MAX_IMAGE_PIXELS could not lift it. Here
    Pillow's process-wide limit is lowered to 1,000 pixels: a 120x50 image is far past it (and past its
    warning), yet only the handler's limit counts, and Pillow's setting is left as it was."""
    from serving.codecs import decode_images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    image = random_images(1, 50, 120, seed=4)[0]
    body = encoded(image, image_format, **({"quality": 95} if image_format == "JPEG" else {}))
    content_type = "image/" + image_format.lower()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        decoded = decode_images(body, content_type, 10 ** 7, 6000)
    assert decoded.shape == (1, 50, 120, 3)
    if image_format == "PNG":
        np.testing.assert_array_equal(decoded[0], image)
    with pytest.raises(ServingError) as caught:
        decode_images(body, content_type, 10 ** 7, 5999)
    assert (caught.value.status, caught.value.message) == (413, (
        "the image is 120x50 = 6000 pixels, more than the limit of 5999 pixels per image; send a smaller "
        "image, or raise the limit with the environment variable SERVING_MAX_IMAGE_PIXELS"))
    assert Image.MAX_IMAGE_PIXELS == 1000


@pytest.mark.parametrize("claiming", [png_claiming, jpeg_claiming])
def test_a_limit_above_pillows_is_honoured_and_a_bomb_is_refused_before_decoding(claiming, tiny_detector_dir,
                                                                                  monkeypatch):
    """The 14000x14000 header (196 MP, past Pillow's 179 MP) passes SERVING_MAX_IMAGE_PIXELS=300000000 and
    the handler goes on to its next check (here the request-pixel limit, still before any pixel is decoded);
    under the default limit it is the handler's 413."""
    body = claiming(PAST_PILLOWS_LIMIT, PAST_PILLOWS_LIMIT)
    content_type = "image/png" if claiming is png_claiming else "image/jpeg"
    message = refusal(model_fn(str(tiny_detector_dir)), body, content_type).message
    assert message.startswith("the image is 14000x14000 = 196000000 pixels, more than the limit of 40000000")
    monkeypatch.setenv("SERVING_MAX_IMAGE_PIXELS", "300000000")
    monkeypatch.setenv("SERVING_MAX_REQUEST_PIXELS", "100")
    error = refusal(model_fn(str(tiny_detector_dir)), body, content_type)
    assert error.status == 413 and "more than the limit of 100 pixels per request" in error.message


def palette_with_transparency():
    palette_image = Image.fromarray(random_images(1, 24, 24, seed=2)[0]).quantize(16)
    buffer = io.BytesIO()
    palette_image.save(buffer, format="PNG", transparency=3)
    return buffer.getvalue()


def image_bodies_in_every_mode():
    """name -> (body, largest allowed difference to GluonCV's decoder)."""
    image = random_images(1, 24, 32, seed=7)[0]
    grey = Image.fromarray(image[:, :, 0])
    return {
        "16-bit grey PNG": (sixteen_bit_png(1), 0),
        "16-bit RGB PNG": (sixteen_bit_png(3), 0),
        "16-bit RGBA PNG": (sixteen_bit_png(4), 0),
        "grey PNG": (encoded(image[:, :, 0], "PNG"), 0),
        "grey+alpha PNG": (_save(Image.merge("LA", [grey, grey.point(lambda v: 255 - v)]), "PNG"), 0),
        "RGBA PNG": (encoded(np.dstack([image, image[:, :, :1]]), "PNG"), 0),
        "palette PNG with transparency": (palette_with_transparency(), 0),
        "1-bit PNG": (encoded(image[:, :, 0] > 128, "PNG"), 0),
        "RGB JPEG": (encoded(image, "JPEG", quality=95), 0),
        "grey JPEG": (encoded(image[:, :, 0], "JPEG", quality=95), 0),
        "CMYK JPEG": (_save(Image.fromarray(image).convert("CMYK"), "JPEG", quality=100), 1),
    }


def _save(image, image_format, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("name", sorted(image_bodies_in_every_mode()))
def test_every_jpeg_and_png_mode_decodes_as_gluoncv_decodes_it(name):
    """mxnet.image.imdecode (OpenCV; GluonCV's decoder) is the reference: 16-bit keeps its high byte."""
    from serving.codecs import decode_images

    body, tolerance = image_bodies_in_every_mode()[name]
    ours = decode_images(body, "image/png", 10 ** 7, 10 ** 8)[0]
    reference = mx.image.imdecode(body).asnumpy()
    assert ours.dtype == np.uint8 and ours.shape == reference.shape
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= tolerance


def test_a_16_bit_greyscale_png_is_not_white(detector):
    body = sixteen_bit_png(1)
    from serving.codecs import decode_images

    grey = decode_images(body, "image/png", 10 ** 7, 10 ** 8)[0, :, :, 0]
    expected = (SIXTEEN_BIT_RAMP >> 8).astype(np.uint8)
    np.testing.assert_array_equal(grey, expected)


# --------------------------------------------------------------------------------------
# Over HTTP, against the real serving stack
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def limited_endpoint(tiny_detector_archive):
    """``deploy serve``'s stack with low limits: 8 images, 4 images of 64x64 network input."""
    from deploy.local_endpoint import LocalEndpoint

    env = {"SERVING_MAX_IMAGES_PER_REQUEST": "8", "SERVING_MAX_REQUEST_PIXELS": str(4 * 64 * 64)}
    with LocalEndpoint(tiny_detector_archive, env=env) as endpoint:
        yield endpoint


def post(url, body, content_type="application/x-npy"):
    import requests

    return requests.post(url + "/invocations", data=body, timeout=60,
                         headers={"Content-Type": content_type, "Accept": "application/json"})


HTTP_CASES = [
    (npy_bytes(random_images(9, 8, 8)), "application/x-npy", 413,
     "the request holds 9 images, more than the limit of 8 images per request; send at most 8 per request, "
     "or raise the limit with the environment variable SERVING_MAX_IMAGES_PER_REQUEST"),
    (npy_bytes(random_images(5, 64, 64)), "application/x-npy", 413,
     "20480 network-input pixels in all, more than the limit of 16384 pixels per request; send at most 4 "
     "such images per request, or raise the limit with the environment variable SERVING_MAX_REQUEST_PIXELS"),
    (npy_bytes(np.zeros((1, 1, 3000, 3), np.uint8)), "application/x-npy", 400, "too elongated for this model"),
    (npy_with_header("(-1, -1, 8, 3)", bytes(24)), "application/x-npy", 400, "every dimension must lie in 0.."),
    (other_formats()["GIF"], "image/png", 400, "it is neither JPEG nor PNG"),
    (npy_with_header("(True, 64, 64, 3)", bytes(64 * 64 * 3)), "application/x-npy", 400,
     "the .npy header announces shape (True, 64, 64, 3), whose dimension 0 is True, not an integer"),
    (png_claiming(PAST_PILLOWS_LIMIT, PAST_PILLOWS_LIMIT), "image/png", 413,
     "the image is 14000x14000 = 196000000 pixels, more than the limit of 40000000 pixels per image; send a "
     "smaller image, or raise the limit with the environment variable SERVING_MAX_IMAGE_PIXELS"),
    (b"not an image", "image/jpeg", 400, "it is neither JPEG nor PNG"),
]


@pytest.mark.integration
@pytest.mark.parametrize("body, content_type, status, message", HTTP_CASES)
def test_limits_and_odd_shapes_over_http(limited_endpoint, body, content_type, status, message):
    response = post(limited_endpoint.url, body, content_type)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert "Traceback" not in response.text and not HEAP_ADDRESS.search(response.text)
    good = post(limited_endpoint.url, npy_bytes(random_images(4, 64, 64)))  # at both limits: answered
    assert good.status_code == 200 and len(good.json()) == 4


@pytest.mark.integration
def test_the_default_endpoint_refuses_a_65th_image(detector_endpoint):
    response = detector_endpoint.post(npy_bytes(np.zeros((65, 1, 1, 3), np.uint8)))
    assert response.status_code == 413
    assert "more than the limit of 64 images per request" in response.json()["error"]
    response = detector_endpoint.post(npy_bytes(np.zeros((64, 1, 1, 3), np.uint8)))
    assert response.status_code == 200 and len(response.json()) == 64


@pytest.mark.integration
def test_explain_with_default_settings_never_draws_a_413_on_small_images(detector_endpoint):
    """Small masked images pack thousands to a 6 MB request by bytes alone; the client caps them at 64."""
    from explain.config import ExplainConfig
    from explain.explainer import explain_image
    from explain.predictors import make_predictor

    image = np.full((40, 40, 3), 200, np.uint8)
    image[8:24, 8:24] = (250, 40, 40)
    with make_predictor(detector_endpoint.url, "detection") as predictor:
        assert predictor.request_plan(image.shape)[0] == DEFAULT_MAX_IMAGES_PER_REQUEST
        explanation = explain_image(image, predictor, ExplainConfig(task="detection", num_samples=300))
        stats = predictor.stats
    assert stats["failed_requests"] == 0
    assert stats["requests"] >= -(-stats["images"] // DEFAULT_MAX_IMAGES_PER_REQUEST)
    # several full requests (a masked image asked for twice is sent once, so a few under 301)
    assert stats["images"] >= 4 * DEFAULT_MAX_IMAGES_PER_REQUEST and explanation is not None


def test_the_in_process_predictor_stays_within_the_handlers_limits(tiny_detector_dir, monkeypatch):
    """It knows the model's resize, so it also splits by network-input pixels (3 images of 64x128 here)."""
    from explain.predictors import InProcessPredictor

    monkeypatch.setenv("SERVING_MAX_REQUEST_PIXELS", str(3 * 64 * 128))
    images = random_images(10, 40, 80, seed=12)
    with InProcessPredictor(tiny_detector_dir, "detection") as predictor:
        results = predictor(images)
        assert predictor.stats["requests"] == 4 and predictor.stats["failed_requests"] == 0
    assert len(results) == 10 and all(rows.shape == (3, 6) for rows in results)
