"""What ``python -m deploy serve`` exposes: GET /ping and POST /invocations on its port, and nothing else.

Against the real stack (multi-model-server + the SageMaker toolkit): MMS's management API
(register a model from a directory, scale, delete) must not be reachable through the port,
on any other TCP port, or by its socket once the endpoint is ready, and its model store is
the endpoint's own 0700 temporary directory.
"""
import http.client
import json
import socket
import stat
import tempfile
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import ServeProcess, npy_bytes, random_images

pytestmark = pytest.mark.integration

GOOD = npy_bytes(random_images(2, 40, 56, seed=3))


@pytest.fixture(scope="module")
def endpoint(tiny_detector_archive):
    """An endpoint of its own: on code that exposes the management API, these tests change its models."""
    server = ServeProcess(tiny_detector_archive, None)
    server.reference = server.post(GOOD).json()
    yield server
    server.stop()


def _process_tree(server):
    root = psutil.Process(server.process.pid)
    return [root] + root.children(recursive=True)


def _model_workers(server):
    return sorted(process.pid for process in _process_tree(server)
                  if any("model_service_worker" in part for part in process.cmdline()))


def _tcp_listeners(server):
    """``[(process, (ip, port))]`` for every TCP socket the serve process tree listens on."""
    return [(process, (connection.laddr.ip, connection.laddr.port))
            for process in _process_tree(server) for connection in process.net_connections(kind="inet")
            if connection.status == psutil.CONN_LISTEN]


def _model_store(server):
    """The ``-s`` (model store) argument of MMS's Java frontend."""
    (java,) = [process for process in _process_tree(server) if process.name() == "java"]
    arguments = java.cmdline()
    return Path(arguments[arguments.index("-s") + 1])


def _assert_still_serving(server):
    assert server.post(GOOD).json() == server.reference
    ping = requests.get(server.url + "/ping", timeout=30)
    assert ping.status_code == 200 and ping.json() == {"status": "Healthy"}


@pytest.mark.parametrize("method, path, status, message", [
    ("GET", "/models", 404, "/models is not served here: this endpoint answers only GET /ping and POST /invocations"),
    ("PUT", "/models/model?min_worker=3", 404, "/models/model is not served here"),
    ("DELETE", "/models/model", 404, "/models/model is not served here"),
    ("OPTIONS", "/", 404, "/ is not served here"),
    ("GET", "/api-description", 404, "/api-description is not served here"),
    ("POST", "/predictions/model", 404, "/predictions/model is not served here"),
    ("GET", "/invocations", 405, "GET /invocations is not allowed: use POST /invocations"),
])
def test_management_and_other_paths_are_refused_and_change_nothing(endpoint, method, path, status, message):
    workers = _model_workers(endpoint)
    response = requests.request(method, endpoint.url + path, timeout=60,
                                data=GOOD if method == "POST" else None,
                                headers={"Content-Type": "application/x-npy"} if method == "POST" else {})
    assert response.status_code == status
    assert response.json()["status"] == status and response.json()["error"].startswith(message)
    _assert_still_serving(endpoint)
    assert _model_workers(endpoint) == workers


def test_registering_a_model_from_a_local_directory_runs_none_of_its_code(endpoint, tmp_path):
    marker = tmp_path / "handler-ran"
    model = tmp_path / "other-model"
    (model / "MAR-INF").mkdir(parents=True)
    (model / "MAR-INF" / "MANIFEST.json").write_text(json.dumps({
        "specificationVersion": "1.0", "implementationVersion": "1.0", "runtime": "python",
        "model": {"modelName": "other", "modelVersion": "1.0", "handler": "other_handler:handle"}}))
    (model / "other_handler.py").write_text(
        "open(%r, 'w').write('imported')\n\ndef handle(data, context):\n    return data\n" % str(marker))
    response = requests.post(endpoint.url + "/models", timeout=120,
                             params={"url": str(model), "initial_workers": "1", "synchronous": "true"})
    assert response.status_code == 404
    assert not marker.exists()  # with synchronous=true MMS imports the handler before it answers
    _assert_still_serving(endpoint)


@pytest.mark.parametrize("header, value", [
    ("Content-Type", b"application/x-npy\xe9"),  # ISO-8859-1
    ("Accept", "application/json\u00e9".encode("utf-8")),
    ("X-Amzn-SageMaker-Custom-Attributes", b"top_k=\xe9"),
])
def test_a_non_ascii_header_is_refused_and_takes_no_worker_down(endpoint, header, value):
    """MMS's Python worker died decoding these ("Worker died.", then seconds without a worker)."""
    workers = _model_workers(endpoint)
    headers = {"Content-Type": b"application/x-npy", header: value}
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=60) as client:
        client.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       + b"".join(name.encode() + b": " + text + b"\r\n" for name, text in headers.items())
                       + b"Content-Length: %d\r\n\r\n" % len(GOOD) + GOOD)
        response = http.client.HTTPResponse(client)
        response.begin()
        answer = json.loads(response.read())
    assert (response.status, answer["status"]) == (400, 400), answer
    assert answer["error"].startswith("the %s header holds characters other than printable ASCII" % header)
    _assert_still_serving(endpoint)
    assert _model_workers(endpoint) == workers


def test_only_the_gate_listens_on_tcp_and_mms_only_inside_its_temp_dir(endpoint):
    listeners = _tcp_listeners(endpoint)
    assert [address for _, address in listeners] == [("127.0.0.1", endpoint.port)]
    assert listeners[0][0].name() != "java"  # the gate, not multi-model-server

    scratch = _model_store(endpoint)
    assert scratch.parent == Path(tempfile.gettempdir()) and scratch.name.startswith("clearsight-serve-")
    assert stat.S_IMODE(scratch.stat().st_mode) == 0o700
    bound = {connection.laddr for process in _process_tree(endpoint)
             for connection in process.net_connections(kind="unix") if connection.laddr}
    assert bound and all(Path(path).is_relative_to(scratch) for path in bound), bound

    # Management is unreachable once ready: no socket file left in the temp dir answers it
    # (MMS's own channels to its workers, .mms.sock.N, speak no HTTP and are not probed).
    probed = 0
    for path in scratch.rglob("*"):
        if path.is_socket() and not path.name.startswith(".mms.sock."):
            assert _unix_get(path, "/models") == 404, path
            probed += 1
    assert probed == 1  # MMS's inference API, the gate's upstream
    _assert_still_serving(endpoint)


def _unix_get(path, target):
    """Status of ``GET target`` sent to the HTTP server on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(30)
        client.connect(str(path))
        client.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % target.encode())
        response = http.client.HTTPResponse(client)
        response.begin()
        return response.status


def test_mms_environment_variables_cannot_move_its_apis_or_model_store(tiny_detector_archive):
    from deploy.local_endpoint import free_port

    management_port = free_port()
    server = ServeProcess(tiny_detector_archive, None, env={
        "MMS_MANAGEMENT_ADDRESS": "http://127.0.0.1:%d" % management_port, "MMS_MODEL_STORE": "/"})
    try:
        assert server.post(GOOD).status_code == 200
        with pytest.raises(requests.ConnectionError):
            requests.get("http://127.0.0.1:%d/models" % management_port, timeout=10)
        assert [address for _, address in _tcp_listeners(server)] == [("127.0.0.1", server.port)]
        assert _model_store(server).name.startswith("clearsight-serve-")
    finally:
        assert server.stop() == 0
