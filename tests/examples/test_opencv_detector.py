"""OpenCV's cascades behind the wire contract, over real HTTP, and explained on a real photo."""

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image
from skimage import data

from examples.opencv_detector import CascadeDetector, DetectorServer
from examples.opencv_detector.cascades import HALF_SCORE_NEIGHBOURS
from tests.conftest import npy_bytes

pytestmark = pytest.mark.integration

ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


def portrait(long_side=192):
    """scikit-image's astronaut portrait, resized: (long_side, long_side, 3) uint8."""
    return np.asarray(Image.fromarray(data.astronaut()).resize((long_side, long_side), Image.BILINEAR))


def grown_box_mask(shape, box, growth=0.1):
    """(H, W) bool: pixel centres inside the normalised box scaled by 1 + growth about its centre."""
    height, width = shape
    x0, y0, x1, y1 = box
    cols = (np.arange(width) + 0.5) / width
    rows = (np.arange(height) + 0.5) / height
    inside_cols = np.abs(cols - (x0 + x1) / 2) <= (x1 - x0) * (1 + growth) / 2
    inside_rows = np.abs(rows - (y0 + y1) / 2) <= (y1 - y0) * (1 + growth) / 2
    return inside_rows[:, None] & inside_cols[None, :]


@pytest.fixture(scope="module")
def server():
    with DetectorServer(("face", "eye")) as running:
        yield running


def post(server, body, content_type="application/x-npy", accept=None, headers=None):
    sent = {"Content-Type": content_type, **(headers or {})}
    if accept:
        sent["Accept"] = accept
    return requests.post(server.url + "/invocations", data=body, headers=sent, timeout=60)


def test_the_face_of_the_portrait_is_found_in_process():
    rows = CascadeDetector(("face",))(portrait()[None])[0]
    assert rows.dtype == np.float32 and rows.shape[1] == 6
    face = rows[0]
    assert face[0] == 0 and 0.5 < face[1] < 1.0
    # the astronaut's face: about x 0.34-0.54, y 0.12-0.32 of the image
    np.testing.assert_allclose(face[2:], [0.34, 0.12, 0.54, 0.32], atol=0.04)
    neighbours = face[1] * HALF_SCORE_NEIGHBOURS / (1 - face[1])
    assert abs(neighbours - round(neighbours)) < 1e-3  # score = n / (n + 8) for a whole n


def test_ping(server):
    response = requests.get(server.url + "/ping", timeout=10)
    assert response.status_code == 200 and response.json() == {"status": "healthy"}


def test_npy_batch_gets_one_sorted_list_per_image(server):
    images = np.stack([portrait(256), np.zeros((256, 256, 3), np.uint8)])
    response = post(server, npy_bytes(images))
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    answer = json.loads(response.text)
    assert len(answer) == 2 and answer[1] == []
    rows = np.array(answer[0])
    assert {0, 1} <= set(rows[:, 0].astype(int))  # a face and at least one eye
    assert np.all(np.diff(rows[:, 1]) <= 0) and np.all((rows[:, 2:] >= 0) & (rows[:, 2:] <= 1))
    expected = CascadeDetector(("face", "eye"))(images)
    np.testing.assert_allclose(rows, expected[0], atol=1e-6)


def test_npy_answer_is_padded_float32(server):
    images = np.stack([portrait(), np.zeros((192, 192, 3), np.uint8)])
    response = post(server, npy_bytes(images), accept="application/x-npy")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/x-npy"
    rows = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert rows.dtype == np.float32 and rows.shape[0] == 2
    assert np.all(rows[1] == -1)


@pytest.mark.parametrize("image_format, content_type", [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                                        ("PNG", "application/x-image")])
def test_image_files(server, image_format, content_type):
    encoded = io.BytesIO()
    Image.fromarray(portrait()).save(encoded, format=image_format, quality=95)
    response = post(server, encoded.getvalue(), content_type=content_type)
    assert response.status_code == 200
    rows = json.loads(response.text)
    assert len(rows) == 1 and any(row[0] == 0 for row in rows[0])


def test_score_threshold_custom_attribute_filters_rows(server):
    body = npy_bytes(portrait(256)[None])
    every = np.array(json.loads(post(server, body, headers={ATTRIBUTES: "score_threshold=0"}).text)[0])
    scores = np.unique(every[:, 1])
    assert len(scores) >= 2
    threshold = float(scores[-2:].mean())  # between the two best scores
    kept = np.array(json.loads(post(server, body, headers={ATTRIBUTES: f"score_threshold={threshold}"}).text)[0])
    np.testing.assert_allclose(kept, every[every[:, 1] >= threshold], atol=1e-6)
    top = json.loads(post(server, body, headers={ATTRIBUTES: "score_threshold=0,top_k=1"}).text)[0]
    assert len(top) == 1 and top[0] == pytest.approx(every[0].tolist(), abs=1e-6)


def test_concurrent_requests_get_the_answers_of_sequential_ones(server):
    rng = np.random.default_rng(0)
    bodies = [npy_bytes(np.clip(portrait().astype(int) + rng.integers(-20, 21, (192, 192, 3)), 0, 255)
                        .astype(np.uint8)[None]) for _ in range(6)]
    sequential = [post(server, body).text for body in bodies]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(lambda body: post(server, body).text, bodies))
    assert concurrent == sequential


@pytest.mark.parametrize("body, content_type, headers, status, message", [
    (b"", "application/x-npy", {}, 400, "the request body is empty"),
    (b"garbage", "application/x-npy", {}, 400, "not a valid .npy array"),
    (npy_bytes(np.array([[1, "x"]], dtype=object)), "application/x-npy", {}, 400, "object arrays are refused"),
    (npy_bytes(np.zeros((3, 8, 8), np.uint8)), "application/x-npy", {}, 400, "3 channels"),
    (b"hello", "text/plain", {}, 415, "Content-Type 'text/plain' is not supported"),
    (npy_bytes(np.zeros((8, 8, 3), np.uint8)), "application/x-npy", {ATTRIBUTES: "score_threshold=2"}, 400,
     "custom attribute score_threshold must be a number in [0, 1], got '2'"),
    (npy_bytes(np.zeros((8, 8, 3), np.uint8)), "application/x-npy", {"Accept": "text/csv"}, 406,
     "Accept 'text/csv' names no format this endpoint produces"),
])
def test_bad_requests_get_json_errors(server, body, content_type, headers, status, message):
    response = post(server, body, content_type=content_type, headers=headers)
    assert response.status_code == status
    assert response.json()["status"] == status and message in response.json()["error"]


def test_unknown_path_is_404(server):
    response = requests.post(server.url + "/predict", data=b"x", timeout=10)
    assert response.status_code == 404 and "POST images to /invocations" in response.json()["error"]


def test_unknown_cascade_is_refused():
    with pytest.raises(ValueError, match="unknown cascade.s. dog; choose from face, face_alt2"):
        CascadeDetector(("dog",))


def test_explaining_the_face_puts_the_attribution_on_the_face():
    """Known answer on a real detector: a Haar cascade decides from its window alone.

    The default settings except num_samples (200 instead of 500, to keep the suite fast):
    most of the positive attribution lies inside the face box grown by 10%, and the pixels
    holding 80% of it cover no more than the box.
    """
    from explain import Explainer

    image = portrait()
    with DetectorServer(("face",)) as face_server, Explainer(face_server.url, task="detection",
                                                            num_samples=200) as explainer:
        explanation = explainer(image)
    # the unmasked image and at most num_samples masked ones (one asked for twice is sent once)
    assert explanation.num_targets == 1 and explanation.model_calls <= 201
    values, segments, box = explanation.shap_values[0], explanation.segments, explanation.boxes[0]
    np.testing.assert_allclose(values.sum(), explanation.predictions[0] - explanation.base_values[0],
                               atol=1e-9)
    sizes = np.bincount(segments.ravel(), minlength=len(values))
    density = np.clip(values, 0, None)[segments] / sizes[segments]
    share = density[grown_box_mask(density.shape, box)].sum() / density.sum()
    assert share >= 0.8, share
    ordered = np.sort(density.ravel())[::-1]
    area = (np.searchsorted(np.cumsum(ordered), 0.8 * density.sum()) + 1) / grown_box_mask(
        density.shape, box, 0.0).sum()
    assert area <= 1.0, area
