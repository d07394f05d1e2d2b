"""serving/ on the SageMaker MXNet 1.9 container's Python: 3.8, numpy 1.19.5, mxnet 1.9.0, Pillow 9.4.0,
sagemaker-inference 1.6.1, multi-model-server 1.1.8 (``requirements/serving-py38.txt``).

The packed ``code/`` of real ``model.tar.gz`` archives (the tiny detector and the shipped shapes
detector) runs in-process under that interpreter (``tests/py38_handler_runner.py``) and behind
a real local endpoint whose MMS worker runs on it; both must answer what this Python answers.
The environment is built once under ``build/venvs/py38-serving`` (``tests/serving_py38.py``); these
tests skip only when no Python 3.8 interpreter exists.
"""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from deploy.package import extract_archive, package_model_dir
from serving.errors import ServingError
from serving.handler import model_fn, transform_fn
from tests.conftest import REPO, npy_bytes, random_images
from tests.serving_py38 import INTERPRETER_VARIABLE, serving_python
from tests.tiny_models import export_tiny_model
from tests.untrusted_bodies import (
    BAD_BODIES,
    HEAP_ADDRESS,
    PAST_PILLOWS_LIMIT,
    SIXTEEN_BIT_RAMP,
    encoded,
    npy_with_header,
    other_formats,
    png_claiming,
    sixteen_bit_png,
)

SHAPES_DETECTOR = REPO / "models" / "shapes-detector"
CONTAINER_VERSIONS = {"numpy": "1.19.5", "mxnet": "1.9.0", "pillow": "9.4.0"}
RUNNER = REPO / "tests" / "py38_handler_runner.py"


@pytest.fixture(scope="module")
def py38():
    python = serving_python()
    if python is None:
        pytest.skip("no Python 3.8 interpreter on this machine (looked at $%s, python3.8 on PATH and "
                    "$PYENV_ROOT/versions/3.8.*, ~/.pyenv by default): the SageMaker container's Python cannot be tested here"
                    % INTERPRETER_VARIABLE)
    return str(python)


@pytest.fixture(scope="module")
def shapes_archive(tmp_path_factory):
    return package_model_dir(SHAPES_DETECTOR, tmp_path_factory.mktemp("shapes") / "model.tar.gz").archive


def shapes_samples(count=4):
    """``(count, 320, 320, 3)`` uint8: the shipped sample scenes."""
    paths = sorted((REPO / "examples" / "shapes" / "samples").glob("shapes_[0-9].png"))[:count]
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])


def good_requests(images):
    """name -> (body, content_type): a batch, each image alone, and encoded files of the first."""
    requests_ = {"batch": (npy_bytes(images), "application/x-npy"),
                 "batch as float": (npy_bytes(images.astype(np.float32)), "application/x-npy"),
                 "png": (encoded(images[0], "PNG"), "image/png"),
                 "jpeg": (encoded(images[0], "JPEG", quality=95), "image/jpeg"),
                 "16-bit png": (sixteen_bit_png(1), "image/png"),
                 # what that PNG must decode to: its high byte (Pillow 9.4 opens it in mode "I")
                 "16-bit png as npy": (npy_bytes(np.repeat((SIXTEEN_BIT_RAMP >> 8).astype(np.uint8)[:, :, None], 3, 2)),
                                       "application/x-npy")}
    for index in range(len(images)):
        requests_["single %d" % index] = (npy_bytes(images[index]), "application/x-npy")
    return requests_


CLASSIC_BAD_BODIES = [
    (b"", "application/x-npy", 400, "the request body is empty"),
    (npy_bytes(np.array([{"a": 1}], dtype=object)), "application/x-npy", 400, "object arrays are refused"),
    (npy_bytes(np.zeros((1, 8, 8, 4), np.uint8)), "application/x-npy", 400, "3 channels"),
    (npy_bytes(np.full((1, 8, 8, 3), np.nan, np.float32)), "application/x-npy", 400, "NaN or infinite"),
    (b"{}", "application/json", 415, "Content-Type 'application/json' is not supported"),
    (b"{}", None, 415, "the request has no Content-Type header; send one of: application/x-npy"),
    (b"{}", "; charset=utf-8", 415, "Content-Type '; charset=utf-8' names no media type; send one of:"),
    (npy_bytes(np.array([np.zeros((4, 6, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)], dtype=object)),
     "application/x-npy", 400, "(images of different sizes in one list?): send images of one size per request"),
    (npy_bytes(np.full((1, 8, 8, 3), 0.5, np.float32)), "application/x-npy", 400,
     "pixels look normalised to 0..1 in image 0 (max 0.5); send 0..255 values"),
]


def run_packed_handler(python, archive, requests_, tmp_path):
    """Extract ``archive`` and run ``requests_`` (name -> (body, content_type)) through its code/ under ``python``."""
    model_dir = extract_archive(archive, tmp_path / "model")
    request_dir = tmp_path / "requests"
    request_dir.mkdir()
    manifest = []
    for index, (name, (body, content_type)) in enumerate(requests_.items()):
        (request_dir / ("%d.bin" % index)).write_bytes(body)
        manifest.append({"name": name, "body": "%d.bin" % index, "content_type": content_type,
                         "accept": "application/json"})
    (request_dir / "requests.json").write_text(json.dumps(manifest))
    out = tmp_path / "out.json"
    completed = subprocess.run([python, str(RUNNER), str(model_dir), str(request_dir), str(out)],
                               capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["python"].startswith("3.8.")
    assert {name: report[name] for name in CONTAINER_VERSIONS} == CONTAINER_VERSIONS
    assert Path(report["handler_file"]).resolve().is_relative_to((model_dir / "code").resolve())  # the packed copy ran
    return model_dir, {result["name"]: result for result in report["results"]}


def in_process_here(model_dir, requests_):
    """The same requests through this Python's serving/ (the reference)."""
    model = model_fn(str(model_dir))
    answers = {}
    for name, (body, content_type) in requests_.items():
        try:
            answers[name] = json.loads(transform_fn(model, body, content_type, "application/json")[0])
        except ServingError as error:
            answers[name] = (error.status, error.message)
    return answers


def assert_same_rows(actual, expected, atol=1e-4):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(np.array(got, dtype=np.float64).reshape(-1, 6),
                                   np.array(want, dtype=np.float64).reshape(-1, 6), atol=atol)


@pytest.mark.parametrize("which", ["tiny detector", "shapes detector"])
def test_the_packed_handler_on_python_38_answers_as_here(py38, which, tiny_detector_archive, shapes_archive,
                                                        tmp_path):
    images = random_images(5, 48, 64, seed=21) if which == "tiny detector" else shapes_samples()
    archive = tiny_detector_archive if which == "tiny detector" else shapes_archive
    requests_ = good_requests(images)
    model_dir, results = run_packed_handler(py38, archive, requests_, tmp_path)
    expected = in_process_here(model_dir, requests_)
    for name in requests_:
        assert results[name]["status"] == 200, (name, results[name])
        answer = json.loads(results[name]["body"])
        # Pillow 9.4 and this Pillow bundle different libjpeg builds: a pixel may differ by a level
        assert_same_rows(answer, expected[name], atol=0.02 if name == "jpeg" else 1e-4)
    batch = json.loads(results["batch"]["body"])
    singles = [json.loads(results["single %d" % index]["body"])[0] for index in range(len(images))]
    assert_same_rows(batch, singles)  # an image gets the same rows alone or inside a batch
    assert_same_rows(json.loads(results["png"]["body"]), [singles[0]])
    assert_same_rows(json.loads(results["16-bit png"]["body"]), json.loads(results["16-bit png as npy"]["body"]))
    assert any(len(rows) for rows in batch), "the detector found something"


def test_a_one_image_per_pass_graph_answers_a_batch_on_python_38(py38, tmp_path, monkeypatch):
    """GluonCV's exported Faster R-CNN runs one image per forward pass: on a GPU (no pixel cap per
    pass) every request of two or more images got a 500. ``deploy package`` records
    ``"images_per_pass": 1`` and the container's handler honours it: one answer per image."""
    model_dir = export_tiny_model(tmp_path / "one", "detection", batch_of_one=True)
    archive = package_model_dir(model_dir, tmp_path / "one.tar.gz").archive
    monkeypatch.setenv("SERVING_MAX_BATCH_PIXELS", "100000000")  # as on a GPU: the whole request in one pass
    images = random_images(3, 48, 64, seed=5)
    requests_ = {"batch": (npy_bytes(images), "application/x-npy")}
    requests_.update({"single %d" % index: (npy_bytes(images[index]), "application/x-npy") for index in range(3)})
    _, results = run_packed_handler(py38, archive, requests_, tmp_path / "run")
    assert {name: result["status"] for name, result in results.items()} == dict.fromkeys(requests_, 200), results
    batch = json.loads(results["batch"]["body"])
    assert len(batch) == 3
    assert_same_rows(batch, [json.loads(results["single %d" % index]["body"])[0] for index in range(3)])


def test_bad_bodies_get_the_same_status_and_message_on_python_38(py38, tiny_detector_archive, tmp_path):
    table = BAD_BODIES + CLASSIC_BAD_BODIES
    requests_ = {"bad %d" % index: (body, content_type) for index, (body, content_type, _, _) in enumerate(table)}
    _, results = run_packed_handler(py38, tiny_detector_archive, requests_, tmp_path)
    for index, (_, _, status, message) in enumerate(table):
        result = results["bad %d" % index]
        assert (result["status"], message in result["message"]) == (status, True), result
        assert not HEAP_ADDRESS.search(result["message"])


def post(url, body, content_type, headers=None):
    all_headers = {"Content-Type": content_type, "Accept": "application/json"}
    all_headers.update(headers or {})
    return requests.post(url + "/invocations", data=body, headers=all_headers, timeout=60)


ENDPOINT_CASES = {
    "batch": lambda images: (npy_bytes(images), "application/x-npy", None),
    "batch, score_threshold=0.9,top_k=1": lambda images: (
        npy_bytes(images), "application/x-npy", {"X-Amzn-SageMaker-Custom-Attributes": "score_threshold=0.9,top_k=1"}),
    "png": lambda images: (encoded(images[0], "PNG"), "image/png", None),
    "65 images": lambda images: (npy_bytes(np.zeros((65, 1, 1, 3), np.uint8)), "application/x-npy", None),
    "gif": lambda images: (other_formats()["GIF"], "image/png", None),
    "1x3000": lambda images: (npy_bytes(np.zeros((1, 1, 3000, 3), np.uint8)), "application/x-npy", None),
    "bad top_k": lambda images: (npy_bytes(images[:1]), "application/x-npy", {"X-Amzn-SageMaker-Custom-Attributes": "top_k=none"}),
    # a bool dimension (a 500 before, on both stacks) and an image past Pillow's own pixel limit (its message)
    "shape (True, 64, 64, 3)": lambda images: (npy_with_header("(True, 64, 64, 3)", bytes(64 * 64 * 3)),
                                               "application/x-npy", None),
    "14000x14000 png": lambda images: (png_claiming(PAST_PILLOWS_LIMIT, PAST_PILLOWS_LIMIT), "image/png", None),
}


def endpoint_answers(archive, python=None):
    from deploy.local_endpoint import LocalEndpoint

    images = shapes_samples()
    answers = {}
    with LocalEndpoint(archive, python=python) as endpoint:
        for name, build in ENDPOINT_CASES.items():
            body, content_type, headers = build(images)
            response = post(endpoint.url, body, content_type, headers)
            answers[name] = (response.status_code, response.headers.get("Content-Type", ""), response.text)
    return answers


@pytest.mark.integration
def test_an_endpoint_whose_worker_runs_python_38_answers_as_here(py38, shapes_archive):
    """The container's toolkit (sagemaker-inference 1.6.1) passes no context to transform_fn:
    statuses, JSON errors and custom attributes must work all the same."""
    here = endpoint_answers(shapes_archive)
    there = endpoint_answers(shapes_archive, python=py38)
    for name in ENDPOINT_CASES:
        status, content_type, text = there[name]
        assert status == here[name][0], (name, text[:500])
        assert content_type.startswith("application/json"), (name, content_type)
        assert "Traceback" not in text and not HEAP_ADDRESS.search(text)
        if status == 200:
            assert_same_rows(json.loads(text), json.loads(here[name][2]))
        else:
            assert json.loads(text) == json.loads(here[name][2])
    assert [status for status, _, _ in there.values()] == [200, 200, 200, 413, 400, 400, 400, 400, 413]
    assert "SERVING_MAX_IMAGE_PIXELS" in json.loads(there["14000x14000 png"][2])["error"]
    filtered = json.loads(there["batch, score_threshold=0.9,top_k=1"][2])
    assert all(len(rows) <= 1 and all(row[1] >= 0.9 for row in rows) for rows in filtered)
    assert filtered != json.loads(there["batch"][2])


def answers_without_the_gate(archive, requests_, python=None):
    """name -> (status, JSON body) for ``requests_`` (name -> (body, content_type)) sent straight to MMS's
    inference socket, as on a SageMaker endpoint, where no gate stands before multi-model-server."""
    from deploy.gate import _UnixHTTPConnection
    from deploy.local_endpoint import INFERENCE_SOCKET, LocalEndpoint

    answers = {}
    with LocalEndpoint(archive, python=python) as endpoint:
        connection = _UnixHTTPConnection(str(endpoint.scratch / INFERENCE_SOCKET), timeout=60)
        for name, (body, content_type) in requests_.items():
            connection.request("POST", "/invocations", body=body,
                               headers={"Content-Type": content_type, "Accept": "application/json"})
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
            assert "Traceback" not in text, (name, text)
            answers[name] = (response.status, json.loads(text))
        connection.close()
    return answers


@pytest.mark.integration
def test_without_the_gate_an_image_under_a_text_type_gets_415_on_both_toolkits(py38, tiny_detector_archive):
    """sagemaker-inference (1.6.1 in the container, 1.10.1 here) decoded application/json and text/csv
    bodies as UTF-8 before transform_fn: an image was a 500 with the toolkit's traceback."""
    image = encoded(random_images(1, 40, 56, seed=2)[0], "JPEG")
    requests_ = {"json": (image, "application/json"), "csv": (image, "text/csv"), "jpeg": (image, "image/jpeg")}
    for python in (None, py38):
        answers = answers_without_the_gate(tiny_detector_archive, requests_, python=python)
        for name, content_type in (("json", "application/json"), ("csv", "text/csv")):
            assert answers[name] == (415, {
                "error": "Content-Type %r is not supported; send one of: application/x-npy, image/jpeg, "
                         "image/png, application/x-image" % content_type, "status": 415}), python
        assert answers["jpeg"][0] == 200 and len(answers["jpeg"][1]) == 1


class FakeMmsContext:
    """The parts of an MMS request context the handler uses."""

    def __init__(self, headers):
        self.system_properties = {"gpu_id": 0, "model_dir": "/opt/ml/model"}
        self.headers = headers
        self.status = None

    def get_all_request_header(self, index):
        return self.headers

    def set_response_status(self, code, phrase):
        self.status = (code, phrase)


TOOLKIT_1_6_TRANSFORM = '''
def transform(transform_fn, model, body, content_type, accept, context):
    # what sagemaker-inference 1.6.1's Transformer.transform does: context stays its own
    return transform_fn(model, body, content_type, accept)
'''


def test_without_a_context_argument_the_toolkits_context_is_used(tiny_detector_dir):
    """sagemaker-inference < 1.7 calls transform_fn(model, body, content_type, accept): the
    handler finds the MMS context in the toolkit's frame (here a stand-in module of that package)."""
    import types

    toolkit = types.ModuleType("sagemaker_inference.fake_transformer")
    exec(compile(TOOLKIT_1_6_TRANSFORM, "fake_transformer.py", "exec"), toolkit.__dict__)
    model = model_fn(str(tiny_detector_dir))
    images = npy_bytes(random_images(2, 32, 48, seed=5))
    context = FakeMmsContext({"X-Amzn-SageMaker-Custom-Attributes": "top_k=1"})
    body, content_type = toolkit.transform(transform_fn, model, images, "application/x-npy", "application/json",
                                           context)
    assert [len(rows) for rows in json.loads(body)] == [1, 1]  # the custom attribute was read
    context = FakeMmsContext({})
    body, content_type = toolkit.transform(transform_fn, model, b"GIF89a", "image/png", "application/json", context)
    assert context.status[0] == 400 and content_type == "application/json"
    assert "neither JPEG nor PNG" in json.loads(body)["error"]
    with pytest.raises(ServingError):  # called from anywhere else, errors are still raised
        transform_fn(model, b"GIF89a", "image/png", "application/json")


def test_an_archive_entry_leaving_the_folder_is_refused_on_python_38(py38, tmp_path):
    """Python 3.8 before 3.8.17 has no tar data filter: the member check is all that stands between an
    archive and the folder beside it. '../out2/escape.txt' of folder 'out' passed a check that compared path
    strings (the 3.8 here has the filter, which refused it as 'not a readable model.tar.gz')."""
    import tarfile

    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../out2/escape.txt")
    fifo = tmp_path / "fifo.tar.gz"
    with tarfile.open(fifo, "w:gz") as tar:  # a model.json that would hang the model's loading
        member = tarfile.TarInfo("model.json")
        member.type = tarfile.FIFOTYPE
        tar.addfile(member)
    code = ("import sys; from serving.archive import ArchiveError, extract_tar_gz\n"
            "try:\n    extract_tar_gz(sys.argv[1], sys.argv[2])\nexcept ArchiveError as error:\n    print(error)\n"
            "print(sys.version_info[:2])")
    completed = subprocess.run([py38, "-c", code, str(evil), str(tmp_path / "out")], capture_output=True,
                               text=True, timeout=120, cwd=str(REPO))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == ["%s holds an unsafe entry '../out2/escape.txt'" % evil, "(3, 8)"]
    assert not (tmp_path / "out2").exists()
    completed = subprocess.run([py38, "-c", code, str(fifo), str(tmp_path / "fifo")], capture_output=True,
                               text=True, timeout=120, cwd=str(REPO))
    assert completed.stdout.splitlines() == ["%s holds an unsafe entry 'model.json'" % fifo, "(3, 8)"]
