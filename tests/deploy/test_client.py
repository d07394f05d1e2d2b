"""deploy.client: request encoding, response decoding, and EndpointClient against the in-test endpoint."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from deploy.client import (
    EndpointClient,
    decode_predictions,
    encode_images,
    format_custom_attributes,
)
from deploy.errors import DeployError, EndpointError
from tests.fake_endpoint import FakeEndpoint, fake_model, random_batch

NPY = "application/x-npy"
JSON = "application/json"


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------
# encode_images
# --------------------------------------------------------------------------------------

def test_npy_encoding_round_trips_one_image_a_batch_and_a_list():
    batch = random_batch(3, height=8, width=10)
    for images, expected in ((batch[0], batch[:1]), (batch, batch), (list(batch), batch)):
        decoded = np.load(io.BytesIO(encode_images(images, NPY)), allow_pickle=False)
        assert decoded.dtype == np.uint8
        np.testing.assert_array_equal(decoded, expected)


def test_png_is_lossless_and_jpeg_is_close():
    from PIL import Image

    image = random_batch(1, height=16, width=16)[0]
    png = np.asarray(Image.open(io.BytesIO(encode_images(image, "image/png"))))
    np.testing.assert_array_equal(png, image)
    smooth = np.full((16, 16, 3), 100, dtype=np.uint8)
    jpeg = np.asarray(Image.open(io.BytesIO(encode_images(smooth, "image/jpeg"))))
    assert jpeg.shape == (16, 16, 3) and np.abs(jpeg.astype(int) - 100).max() <= 2


@pytest.mark.parametrize("images, content_type, message", [
    (np.zeros((2, 8, 8, 3), np.uint8), "image/jpeg",
     "image/jpeg carries one image per request, got 2; use application/x-npy to send a batch"),
    (np.zeros((8, 8, 3), np.uint8), "image/gif",
     "unsupported request content type 'image/gif'; use one of application/x-npy, image/jpeg, image/png"),
    (np.zeros((8, 8, 3), np.float32), NPY, "images must be uint8 (0..255), got dtype float32"),
    (np.zeros((8, 8), np.uint8), NPY, "images must have shape (H, W, 3) or (N, H, W, 3) with RGB channels last, got shape (8, 8)"),
    (np.zeros((1, 8, 8, 4), np.uint8), NPY, "got shape (1, 8, 8, 4)"),
    (np.zeros((4, 16, 16), np.uint8), NPY, "got shape (4, 16, 16)"),  # as passed: no batch axis added
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)], NPY,
     "images in one request must share one size, got shapes [(8, 8, 3), (9, 8, 3)]"),
    ([], NPY, "images is an empty list"),
])
def test_encode_errors_name_the_problem(images, content_type, message):
    with pytest.raises(ValueError) as error:
        encode_images(images, content_type)
    assert message in str(error.value)


# --------------------------------------------------------------------------------------
# decode_predictions
# --------------------------------------------------------------------------------------

def test_json_ragged_detections_and_empty_images():
    body = json.dumps([[[1, 0.9, 0.1, 0.1, 0.5, 0.5], [0, 0.4, 0.2, 0.2, 0.3, 0.3]], []]).encode()
    first, second = decode_predictions(body, "application/json; charset=utf-8")
    assert first.dtype == np.float32 and first.shape == (2, 6)
    assert second.shape == (0, 6)


def test_json_classification_forms():
    expected = np.array([0.1, 0.6, 0.3], dtype=np.float32)
    for body in ("[[0.1, 0.6, 0.3]]", "[0.1, 0.6, 0.3]", '{"prediction": [[0.1, 0.6, 0.3]]}'):
        (probabilities,) = decode_predictions(body.encode(), JSON)
        np.testing.assert_array_equal(probabilities, expected)


def test_npy_detections_lose_their_padding_rows():
    padded = np.full((2, 3, 6), -1, dtype=np.float32)
    padded[0, :2] = [[1, 0.9, 0.1, 0.1, 0.5, 0.5], [0, 0.4, 0.2, 0.2, 0.3, 0.3]]
    first, second = decode_predictions(npy_bytes(padded), NPY)
    np.testing.assert_array_equal(first, padded[0, :2])
    assert second.shape == (0, 6)


def test_npy_classification_rows():
    probabilities = np.array([[0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    decoded = decode_predictions(npy_bytes(probabilities), NPY)
    np.testing.assert_array_equal(np.stack(decoded), probabilities)


def test_pickled_npy_is_refused_without_unpickling():
    hostile = np.array([{"payload": "would run on unpickle"}], dtype=object)
    with pytest.raises(ValueError, match="npy response has dtype object; expected numbers"):
        decode_predictions(npy_bytes(hostile, allow_pickle=True), NPY)


def npy_header(shape, descr="<f4") -> bytes:
    """An npy version 1.0 header announcing ``shape`` (what np.save writes before the data)."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1")


@pytest.mark.parametrize("shape, data_bytes, message", [
    ((100_000, 100_000, 6), 24, "npy response announces shape (100000, 100000, 6) of float32 (240000000000 bytes "
                                "of data) but carries 24 bytes; the response is truncated or corrupt"),
    ((2, 3, 6), 100, "npy response announces shape (2, 3, 6) of float32 (144 bytes of data) but carries 100 bytes"),
    ((2, 3, 6), 200, "npy response announces shape (2, 3, 6) of float32 (144 bytes of data) but carries 200 bytes"),
])
def test_an_npy_header_is_checked_against_the_body_before_allocating(shape, data_bytes, message):
    import tracemalloc

    body = npy_header(shape) + b"\0" * data_bytes
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as refused:
            decode_predictions(body, NPY)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message in str(refused.value)
    assert peak < 1_000_000  # nothing of the announced size was allocated


def test_a_well_formed_npy_header_decodes_as_np_save_writes_it():
    rows = np.arange(36, dtype=np.float32).reshape(2, 3, 6)
    assert npy_header(rows.shape) + rows.tobytes() == npy_bytes(rows)
    first, second = decode_predictions(npy_header(rows.shape) + rows.tobytes(), NPY)
    np.testing.assert_array_equal(np.stack([first, second]), rows)


@pytest.mark.parametrize("body, content_type, message", [
    (b"{not json", JSON, "response is not valid JSON"),
    (b'{"boxes": []}', JSON, "JSON response must be a list (one entry per image), got dict"),
    (b"[[[1, 0.9, 0.1, 0.1, 0.5]]]", JSON, "response entry 0 has rows of 5 numbers; detection rows have 6"),
    (b'[["a"]]', JSON, "response entry 0 is not a list of numbers or of rows"),
    (b"[3]", JSON, None),
    (b"garbage", NPY, "response is not a valid .npy array"),
    (None, NPY, "npy response has shape (2, 3, 5)"),
    (b"[]", "text/csv", "unsupported response content type 'text/csv'; expected one of application/json, application/x-npy"),
])
def test_decode_errors_name_the_problem(body, content_type, message):
    if body is None:
        body = npy_bytes(np.zeros((2, 3, 5), np.float32))
    if message is None:  # a bare list of numbers is one image's probabilities, not an error
        assert decode_predictions(body, content_type)[0].shape == (1,)
        return
    with pytest.raises(ValueError) as error:
        decode_predictions(body, content_type)
    assert message in str(error.value)


def test_format_custom_attributes():
    assert format_custom_attributes() is None
    assert format_custom_attributes(0.5, 10) == "score_threshold=0.5,top_k=10"
    assert format_custom_attributes(top_k=3) == "top_k=3"


@pytest.mark.parametrize("status, retryable", [(None, True), (429, True), (500, True), (503, True),
                                               (400, False), (404, False), (413, False), (415, False)])
def test_endpoint_error_retryable(status, retryable):
    error = EndpointError(status, "message")
    assert isinstance(error, DeployError)
    assert error.retryable is retryable
    assert error.message == "message"


# --------------------------------------------------------------------------------------
# EndpointClient over HTTP
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("accept", [JSON, NPY])
def test_predict_a_batch(accept):
    batch = random_batch(5)
    with FakeEndpoint("detection") as endpoint, EndpointClient(endpoint.url) as client:
        predictions = client.predict(batch, accept=accept)
        assert len(endpoint.requests) == 1 and endpoint.requests[0]["images"] == 5
    for got, want in zip(predictions, fake_model(batch, "detection"), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_predict_sends_custom_attributes_and_accepts_the_full_url():
    with FakeEndpoint("classification") as endpoint:
        client = EndpointClient(endpoint.url + "/invocations/")
        (probabilities,) = client.predict(random_batch(1)[0], score_threshold=0.25, top_k=2)
        assert endpoint.requests[0]["custom_attributes"] == "score_threshold=0.25,top_k=2"
    assert probabilities.shape == (4,)


def test_predict_with_jpeg_sends_one_request_per_image():
    batch = random_batch(3)
    with FakeEndpoint("detection") as endpoint:
        predictions = EndpointClient(endpoint.url).predict(list(batch), content_type="image/png")
        assert [request["images"] for request in endpoint.requests] == [1, 1, 1]
    assert len(predictions) == 3


def test_invoke_returns_body_and_content_type():
    with FakeEndpoint("classification") as endpoint:
        body, content_type = EndpointClient(endpoint.url).invoke(
            encode_images(random_batch(2), NPY), NPY, NPY)
    assert content_type == NPY
    assert np.load(io.BytesIO(body), allow_pickle=False).shape == (2, 4)


def test_http_errors_carry_status_and_server_message():
    with FakeEndpoint() as endpoint:
        endpoint.fail_status = 415
        endpoint.fail_message = "unsupported content type 'image/gif'"
        with pytest.raises(EndpointError) as error:
            EndpointClient(endpoint.url).predict(random_batch(1))
    assert error.value.status == 415
    assert error.value.message == "unsupported content type 'image/gif'"
    assert str(error.value) == "endpoint error (HTTP 415): unsupported content type 'image/gif'"


def test_no_response_is_an_endpoint_error_without_status():
    with FakeEndpoint() as endpoint:
        url = endpoint.url
    with pytest.raises(EndpointError, match="no response.*cannot connect to") as error:
        EndpointClient(url).predict(random_batch(1))
    assert error.value.status is None and error.value.retryable
    with FakeEndpoint() as endpoint:
        endpoint.hang_seconds = 1.0
        with pytest.raises(EndpointError, match=r"no response from .* within 0.2 s"):
            EndpointClient(endpoint.url, timeout=0.2).predict(random_batch(1))


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://host", "http://"])
def test_client_refuses_urls_it_cannot_post_to(url):
    with pytest.raises(ValueError, match=f"endpoint URL must look like http://HOST:PORT, got '{url}'"):
        EndpointClient(url)


def test_multi_model_server_error_bodies_give_their_message():
    from serving.contract import error_message as _error_message

    body = b'{\n  "code": 503,\n  "type": "ServiceUnavailableException",\n  "message": "No worker is available"\n}\n'
    assert _error_message(body, "Service Unavailable") == "No worker is available"
