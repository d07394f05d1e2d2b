"""Contract tests over real HTTP against ``python -m deploy serve`` (multi-model-server + the SageMaker toolkit)."""
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import requests
from PIL import Image

from serving.handler import model_fn, transform_fn
from tests.conftest import (
    REPO,
    ServeProcess,
    default_hangup,
    network_namespaces_available,
    npy_bytes,
    random_images,
    wait_for,
)

pytestmark = pytest.mark.integration

GOOD = npy_bytes(random_images(2, 48, 64, seed=11))


def test_npy_batch_matches_the_in_process_handler(detector_endpoint, tiny_detector_dir):
    images = random_images(4, 72, 96, seed=1)
    response = detector_endpoint.post(npy_bytes(images))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    over_http = json.loads(response.text)
    expected, _ = transform_fn(model_fn(str(tiny_detector_dir)), npy_bytes(images), "application/x-npy",
                               "application/json")
    np.testing.assert_allclose(np.array(over_http), np.array(json.loads(expected)), atol=1e-6)


def test_npy_response_and_custom_attributes(detector_endpoint):
    headers = {"X-Amzn-SageMaker-Custom-Attributes": "score_threshold=0.5,top_k=1"}
    response = detector_endpoint.post(GOOD, accept="application/x-npy", headers=headers)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/x-npy"
    rows = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert rows.dtype == np.float32 and rows.shape == (2, 1, 6)
    assert np.all(rows[:, 0, 1] >= 0.5)


@pytest.mark.parametrize("image_format, content_type", [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                                        ("PNG", "application/x-image")])
def test_single_image_files(detector_endpoint, image_format, content_type):
    encoded = io.BytesIO()
    Image.fromarray(random_images(1, 50, 70)[0]).save(encoded, format=image_format)
    response = detector_endpoint.post(encoded.getvalue(), content_type=content_type)
    assert response.status_code == 200
    assert len(json.loads(response.text)) == 1


@pytest.mark.parametrize("body, content_type, accept, status, message", [
    (b"", "application/x-npy", "application/json", 400, "the request body is empty"),
    (b"garbage", "application/x-npy", "application/json", 400, "not a valid .npy array"),
    (GOOD[:-7], "application/x-npy", "application/json", 400, "truncated or padded"),
    (npy_bytes(np.array([[1, "x"]], dtype=object)), "application/x-npy", "application/json", 400,
     "object arrays are refused"),
    (npy_bytes(np.zeros((3, 8, 8), np.uint8)), "application/x-npy", "application/json", 400, "3 channels"),
    (npy_bytes(np.zeros((0, 8, 8, 3), np.uint8)), "application/x-npy", "application/json", 400, "batch is empty"),
    (npy_bytes(np.full((1, 4, 4, 3), np.inf, np.float64)), "application/x-npy", "application/json", 400,
     "NaN or infinite"),
    (b"<xml/>", "application/xml", "application/json", 415, "is not supported"),
    (b"{}", "application/json", "application/json", 415, "is not supported"),
    (GOOD, None, "application/json", 415,  # curl -H "Content-Type:" (no header at all)
     "the request has no Content-Type header; send one of: application/x-npy, image/jpeg"),
    (GOOD, "; charset=utf-8", "application/json", 415,  # it said "no Content-Type header"
     "Content-Type '; charset=utf-8' names no media type; send one of: application/x-npy, image/jpeg"),
    (npy_bytes(np.array([np.zeros((4, 6, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)], dtype=object)),
     "application/x-npy", "application/json", 400, "(images of different sizes in one list?)"),
    (npy_bytes(np.full((1, 4, 4, 3), 0.25, np.float32)), "application/x-npy", "application/json", 400,
     "pixels look normalised to 0..1 in image 0 (max 0.25); send 0..255 values"),
    (GOOD, "application/x-npy", "text/csv", 406, "names no format"),
    (npy_bytes(np.zeros((1, 7000, 7000, 3), np.uint8))[:200], "application/x-npy", "application/json", 413,
     "exceed the limit"),
])
def test_bad_requests_get_a_4xx_with_a_message_and_no_trace(detector_endpoint, body, content_type, accept,
                                                           status, message):
    response = detector_endpoint.post(body, content_type=content_type, accept=accept)
    assert response.status_code == status
    payload = response.json()
    assert message in payload["error"]
    assert "Traceback" not in response.text
    # the worker stays up: the next good request is answered correctly
    assert detector_endpoint.post(GOOD).status_code == 200


def _jpeg(seed=0):
    encoded = io.BytesIO()
    Image.fromarray(random_images(1, 40, 56, seed=seed)[0]).save(encoded, format="JPEG")
    return encoded.getvalue()


@pytest.mark.parametrize("content_type", [
    "application/json",  # the toolkit decoded these as UTF-8 before the handler: 500 with a traceback
    "text/csv",
    "application/x-www-form-urlencoded",  # curl --data-binary without -H: MMS's own 500 echoing the body
])
def test_an_image_sent_with_a_text_or_form_content_type_gets_415_not_500(detector_endpoint, content_type):
    response = detector_endpoint.post(_jpeg(), content_type=content_type)
    assert response.status_code == 415
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "error": "Content-Type %r is not supported; send one of: application/x-npy, image/jpeg, image/png, "
                 "application/x-image" % content_type, "status": 415}
    assert detector_endpoint.post(_jpeg(), content_type="image/jpeg").status_code == 200


def test_two_content_type_headers_get_400_not_500(detector_endpoint):
    body = _jpeg()
    with socket.create_connection(("127.0.0.1", detector_endpoint.port), timeout=60) as client:
        client.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                       b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        response = http.client.HTTPResponse(client)
        response.begin()
        assert response.status == 400
        assert json.loads(response.read()) == {"error": "the request has 2 Content-Type headers: send one",
                                               "status": 400}


def test_custom_attribute_with_a_bad_value_is_a_400(detector_endpoint):
    response = detector_endpoint.post(GOOD, headers={"X-Amzn-SageMaker-Custom-Attributes": "top_k=none"})
    assert response.status_code == 400
    assert "top_k must be a positive integer" in response.json()["error"]


def test_bodies_over_the_mms_limit_get_413(detector_endpoint):
    response = detector_endpoint.post(b"\0" * 6_600_000)
    assert response.status_code == 413


@pytest.fixture
def private_tmp():
    """A short private TMPDIR under /tmp (MMS's Unix socket paths must stay under 108 bytes)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="cs-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_sigterm_stops_every_process_and_removes_its_files(tiny_detector_archive, private_tmp):
    tmp = private_tmp  # only this endpoint's files, whatever else runs on the machine
    server = ServeProcess(tiny_detector_archive, None, env={"TMPDIR": tmp})
    children = psutil.Process(server.process.pid).children(recursive=True)
    assert any(child.name() == "java" for child in children), "multi-model-server runs as child processes"
    assert any("gate.py" in " ".join(child.cmdline()) for child in children), "so does the request gate"
    assert any(name.startswith("clearsight-serve-") for name in os.listdir(tmp))
    assert server.post(GOOD).status_code == 200
    assert server.stop() == 0
    assert wait_for(lambda: not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE
                                    for child in children))
    assert not [name for name in os.listdir(tmp) if name.startswith("clearsight-serve-")]
    with socket.socket() as probe:  # the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))


def test_sigterm_stops_every_process_even_when_stdout_and_stderr_are_gone(tiny_detector_archive, private_tmp):
    tmp = private_tmp
    server = ServeProcess(tiny_detector_archive, None, env={"TMPDIR": tmp})
    children = psutil.Process(server.process.pid).children(recursive=True)
    server.process.stdout.close()  # e.g. the terminal or the pipe reader went away
    server.process.stderr.close()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    assert wait_for(lambda: not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE
                                    for child in children))
    assert not [name for name in os.listdir(tmp) if name.startswith("clearsight-serve-")]


def test_sigkill_of_serve_still_stops_every_process_frees_the_port_and_removes_its_files(
        tiny_detector_archive, private_tmp):
    """kill -9 / the OOM killer: the gate and MMS, each in a session of its own, kept answering on the port."""
    tmp = private_tmp
    server = ServeProcess(tiny_detector_archive, None, env={"TMPDIR": tmp})
    children = psutil.Process(server.process.pid).children(recursive=True)
    assert server.post(GOOD).status_code == 200
    server.process.kill()
    server.process.wait(timeout=30)

    def port_free():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", server.port))
            except OSError:
                return False
            return True

    assert wait_for(port_free, timeout=5)
    assert wait_for(lambda: not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE
                                    for child in children), timeout=15)
    assert wait_for(lambda: not [name for name in os.listdir(tmp) if name.startswith("clearsight-serve-")],
                    timeout=15)


@pytest.fixture(scope="module")
def slow_loading_model(tiny_detector_dir, tmp_path_factory):
    """A model directory whose model_fn never returns: ``deploy serve`` stays in its startup for good."""
    from deploy.package import stage_model_dir
    from serving.model_spec import load_model_spec

    model_dir = tmp_path_factory.mktemp("slow-model")
    spec = load_model_spec(str(tiny_detector_dir))
    stage_model_dir(model_dir, tiny_detector_dir / spec.symbol_file, tiny_detector_dir / spec.params_file, spec)
    (model_dir / "code" / "inference.py").write_text(
        "import time\n\nfrom serving.handler import transform_fn  # noqa: F401\n\n\n"
        "def model_fn(model_dir):\n    time.sleep(3600)\n")
    return model_dir


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_while_it_starts_stops_everything_at_once_and_never_says_ready(
        slow_loading_model, private_tmp, signal_number):
    """Review 26, finding 3: SIGTERM was noted, then ignored until the model answered (or --startup-timeout
    passed), and `ready:` came after it; SIGHUP ended serve with no cleanup but the watchdog's."""
    from deploy.local_endpoint import free_port

    tmp = private_tmp
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy", "serve", "--model", str(slow_loading_model), "--port", str(port),
         "--startup-timeout", "300"],
        cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_hangup,
        env=dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=tmp))
    try:
        def started():  # the Java frontend and its worker run: serve waits for the model's first answer
            children = psutil.Process(process.pid).children(recursive=True)
            return children if any("model_service_worker" in " ".join(child.cmdline()) for child in children) \
                else None
        assert wait_for(started, timeout=120), "the worker never started"
        children = started()
        process.send_signal(signal_number)
        stopped = time.monotonic()
        stdout, stderr = process.communicate(timeout=60)
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert took < 15, "stopping took %.0f s" % took  # at most the 10 s grace before SIGKILL
    assert process.returncode == 0, stderr
    assert stdout == ""  # no "ready: ..."
    assert stderr.endswith("stopping ...\n") and "Traceback" not in stderr, stderr
    assert wait_for(lambda: not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE
                                    for child in children))
    assert not [name for name in os.listdir(tmp) if name.startswith("clearsight-serve-")]
    with socket.socket() as probe:  # the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_requests_do_not_grow_the_server_log_they_go_to_its_rolling_files(tiny_detector_archive):
    """server.log (MMS's stdout, in the temp dir) took three INFO lines per request, with no bound."""
    from deploy.local_endpoint import LocalEndpoint

    with LocalEndpoint(tiny_detector_archive) as endpoint:
        server_log, access_log = endpoint.log_path, endpoint.scratch / "logs" / "access_log.log"
        before = server_log.stat().st_size, access_log.stat().st_size
        for _ in range(20):
            assert requests.post(endpoint.url + "/invocations", data=GOOD, timeout=60,
                                 headers={"Content-Type": "application/x-npy"}).status_code == 200
        assert wait_for(lambda: access_log.stat().st_size > before[1] + 20 * 30)  # the lines are still kept there
        assert server_log.stat().st_size == before[0]


def test_serve_fails_with_a_clear_message_when_the_model_cannot_load(tiny_detector_dir, tmp_path):
    import shutil

    from deploy.package import stage_model_dir
    from serving.model_spec import load_model_spec

    broken = tmp_path / "broken"
    broken.mkdir()
    spec = load_model_spec(str(tiny_detector_dir))
    stage_model_dir(broken, tiny_detector_dir / spec.symbol_file, tiny_detector_dir / spec.params_file, spec)
    shutil.copyfile(tiny_detector_dir / spec.symbol_file, broken / spec.params_file)  # not a params file
    completed = subprocess.run(
        [sys.executable, "-m", "deploy", "serve", "--model", str(broken), "--port", "0", "--startup-timeout", "60"],
        cwd=str(REPO), capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 2  # port 0 is a usage error
    from deploy.local_endpoint import free_port

    completed = subprocess.run(
        [sys.executable, "-m", "deploy", "serve", "--model", str(broken), "--port", str(free_port()),
         "--startup-timeout", "60"],
        cwd=str(REPO), capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 1
    assert "error:" in completed.stderr
    assert "the model failed to load" in completed.stderr
    assert "Invalid NDArray file format" in completed.stderr


def test_two_endpoints_run_side_by_side(tiny_detector_archive, detector_endpoint):
    second = ServeProcess(tiny_detector_archive, None)
    try:
        assert second.post(GOOD).json() == detector_endpoint.post(GOOD).json()
    finally:
        assert second.stop() == 0
    assert detector_endpoint.post(GOOD).status_code == 200


def test_ctrl_c_stops_the_server(tiny_detector_archive):
    server = ServeProcess(tiny_detector_archive, None)
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=30) == 0


def test_a_server_started_with_nohup_outlives_its_terminal(tiny_detector_archive):
    """Review 27: serve's stop handler, installed over nohup's ignored SIGHUP, stopped it when the terminal
    closed (SIGHUP to its whole process group); SIGTERM still stops it."""
    from deploy.local_endpoint import free_port

    port = free_port()
    process = subprocess.Popen(
        ["nohup", sys.executable, "-m", "deploy", "serve", "--model", str(tiny_detector_archive), "--port", str(port)],
        cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert process.stdout.readline().startswith("ready"), process.stderr.read()
        os.killpg(process.pid, signal.SIGHUP)  # the terminal closes
        time.sleep(2)
        assert process.poll() is None, process.stderr.read()
        response = requests.post("http://127.0.0.1:%d/invocations" % port, data=GOOD, timeout=60,
                                 headers={"Content-Type": "application/x-npy", "Accept": "application/json"})
        assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_an_exported_model_directory_is_served_with_this_handler(tiny_detector_dir):
    server = ServeProcess(tiny_detector_dir, None)  # model.json + weights, no code/
    try:
        response = server.post(GOOD)
        assert response.status_code == 200 and len(response.json()) == 2
    finally:
        assert server.stop() == 0
    assert not (tiny_detector_dir / "code").exists()


def test_a_port_in_use_is_refused_with_a_clear_message(tiny_detector_archive):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        completed = subprocess.run(
            [sys.executable, "-m", "deploy", "serve", "--model", str(tiny_detector_archive), "--port", str(port)],
            cwd=str(REPO), capture_output=True, text=True, timeout=60,
        )
    assert completed.returncode == 1
    # one line, before anything starts (it said "starting multi-model-server ..." and "stopping ..." first)
    assert completed.stderr == (
        "error: cannot listen on 127.0.0.1:%d (Address already in use); pick another port with --port\n" % port)


@pytest.mark.skipif(not network_namespaces_available(), reason="needs unshare -rn (user and network namespaces)")
def test_with_the_loopback_interface_down_serve_says_so_at_once(tiny_detector_archive):
    """Review 26, findings 3 and 7: in a new network namespace (the README's offline check) loopback is down;
    serve waited --startup-timeout (180 s) and then advised raising it. Brought up, it serves."""
    import shutil

    serve = [sys.executable, "-m", "deploy", "serve", "--model", str(tiny_detector_archive), "--port", "18080"]
    completed = subprocess.run(["unshare", "-rn", *serve], cwd=str(REPO), capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1
    assert completed.stderr == (  # one line, before anything starts
        "error: cannot connect to 127.0.0.1 ([Errno 101] Network is unreachable): the loopback interface is down, "
        "as in a new network namespace (unshare -n); bring it up first (ip link set lo up, or ifconfig lo up)\n")
    if shutil.which("ip") is None:
        return
    # what the README says instead: unshare -rn sh -c 'ip link set lo up; ...'
    process = subprocess.Popen(["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *serve],
                               cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("ready: POST images to http://127.0.0.1:18080/invocations")
        assert process.stderr.readline().startswith("starting multi-model-server for ")
        logs = re.fullmatch(r"logs: (/\S+/clearsight-serve-\w+/server\.log) \(multi-model-server's warnings and "
                            r"errors; per-request lines in logs/\), gate\.log beside it \(the request gate\); "
                            r"removed when it stops\n", process.stderr.readline())  # review 29, finding 3
        assert logs and os.path.isfile(logs[1]) and os.path.isfile(os.path.join(os.path.dirname(logs[1]), "gate.log"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_an_unpacked_model_directory_is_served_in_place_and_left_intact(tiny_detector_archive, tmp_path):
    from deploy.package import extract_archive

    def files(directory):  # the worker's Python may add __pycache__ under code/
        return sorted(str(path.relative_to(directory)) for path in directory.rglob("*")
                      if "__pycache__" not in path.parts)

    model_dir = extract_archive(tiny_detector_archive, tmp_path / "unpacked")
    files_before = files(model_dir)
    server = ServeProcess(model_dir, None)  # a directory with code/inference.py: linked into the model store
    try:
        assert server.post(GOOD).status_code == 200
    finally:
        assert server.stop() == 0
    assert files(model_dir) == files_before and "code/inference.py" in files_before
