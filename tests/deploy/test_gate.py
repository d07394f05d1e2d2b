"""The request gate (deploy/gate.py) as its own process, in front of a fake model server on a Unix socket.

The fake records every request that reaches it and answers with the SHA-256 of the body it
got, so the tests see exactly what the gate forwards, refuses and returns.
"""
import hashlib
import http.client
import http.server
import io
import json
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from deploy.gate import DEFAULT_MAX_CONNECTIONS, launch_gate

pytestmark = pytest.mark.integration  # every test starts the gate as a process of its own

MAX_BODY_BYTES = 1_000_000


class _FakeModelServerHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.record(self, body)
        if self.headers.get("Accept") == "text/csv":  # stands in for the handler's own 4xx
            self._answer(406, b'{"error": "text/csv is not produced", "status": 406}', "application/json")
            return
        answer = json.dumps({"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}).encode()
        self._answer(200, answer, "application/json")

    def do_GET(self):
        self.server.record(self, b"")
        self._answer(200, b'{\n  "status": "Healthy"\n}\n', "application/json")

    def _answer(self, status, body, content_type):
        self.send_response_only(status)
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", "fake-%d" % len(self.server.requests))
        self.send_header("Cache-Control", "no-cache; no-store, must-revalidate, private")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class FakeModelServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """An HTTP server on a Unix socket that keeps ``requests``: (connection id, method, path, headers, body)."""

    daemon_threads = True

    def __init__(self, path):
        super().__init__(str(path), _FakeModelServerHandler)
        self.requests = []
        self.lock = threading.Lock()

    def handle_error(self, request, client_address):
        pass  # the gate closed a connection in the middle of a request (a slow sender's, cut at its deadline)

    def record(self, handler, body):
        with self.lock:
            self.requests.append((id(handler), handler.command, handler.path, dict(handler.headers), body))


@pytest.fixture(scope="module")
def short_dir():
    """A directory with a short path (Unix socket names hold at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="gate-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start_gate(directory, upstream, timeout=30.0, **limits):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    with open(directory / ("gate-%d.log" % listener.getsockname()[1]), "wb") as log:
        process = launch_gate(listener, upstream, MAX_BODY_BYTES, timeout, log, **limits)
    port = listener.getsockname()[1]
    listener.close()
    return process, port


def _stop(process):
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def upstream(short_dir):
    server = FakeModelServer(short_dir / "inference.sock")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def gate(short_dir, upstream):
    process, port = _start_gate(short_dir, short_dir / "inference.sock")
    yield port
    _stop(process)
    assert process.returncode is not None


@pytest.fixture
def fresh(upstream):
    """Forget what earlier tests sent; yields the fake server."""
    with upstream.lock:
        upstream.requests.clear()
    return upstream


def _request(port, method, path, body=None, headers=None, connection=None):
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response, response.read()


def test_invocations_reach_the_model_server_unchanged_and_its_answer_comes_back_unchanged(gate, fresh):
    body = os.urandom(MAX_BODY_BYTES)
    headers = {"Content-Type": "application/x-npy", "Accept": "application/x-npy",
               "X-Amzn-SageMaker-Custom-Attributes": "score_threshold=0.5,top_k=3",
               "X-Amzn-SageMaker-Inference-Id": "abc-123"}
    response, answer = _request(gate, "POST", "/invocations", body, headers)
    assert response.status == 200
    assert json.loads(answer) == {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    assert response.getheader("x-request-id") == "fake-1"
    assert response.getheader("Cache-Control") == "no-cache; no-store, must-revalidate, private"
    assert response.getheader("Content-Type") == "application/json"
    ((_, method, path, seen_headers, seen_body),) = fresh.requests
    assert (method, path, seen_body) == ("POST", "/invocations", body)
    for name, value in headers.items():
        assert seen_headers[name] == value


def test_the_model_servers_own_errors_pass_through_unchanged(gate, fresh):
    response, answer = _request(gate, "POST", "/invocations", b"ok",
                                {"Content-Type": "application/x-npy", "Accept": "text/csv"})
    assert response.status == 406
    assert json.loads(answer) == {"error": "text/csv is not produced", "status": 406}


def test_ping_is_forwarded(gate, fresh):
    response, answer = _request(gate, "GET", "/ping")
    assert response.status == 200 and json.loads(answer) == {"status": "Healthy"}
    assert [request[1:3] for request in fresh.requests] == [("GET", "/ping")]


@pytest.mark.parametrize("closed", [1, 2])
def test_a_caller_started_without_stdout_or_stderr_still_hands_the_gate_its_socket(short_dir, fresh, closed):
    """Review 40, D3: `deploy serve >&-` (or 2>&-) died at start with "Socket operation on non-socket": its
    listening socket took the free descriptor 1 (2), which the gate's stdout (stderr) then replaced."""
    import subprocess
    import sys

    script = (
        "import os, socket, sys, time\n"
        f"os.close({closed})\n"
        "listener = socket.socket()\n"
        f"assert listener.fileno() == {closed}, listener.fileno()\n"
        "listener.bind(('127.0.0.1', 0)); listener.listen(8)\n"
        "from deploy.gate import launch_gate\n"
        "log = open(sys.argv[2], 'wb')\n"
        "process = launch_gate(listener, sys.argv[1], 1 << 20, 30.0, log)\n"
        f"os.write({3 - closed}, b'%d %d\\n' % (listener.getsockname()[1], process.pid))\n"
        "time.sleep(60)\n")
    caller = subprocess.Popen([sys.executable, "-c", script, str(short_dir / "inference.sock"),
                               str(short_dir / f"closed-{closed}.log")],
                              stdout=subprocess.PIPE if closed == 2 else None,
                              stderr=subprocess.PIPE if closed == 1 else None,
                              env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    try:
        port, pid = map(int, (caller.stdout or caller.stderr).readline().split())
        response, _ = _request(port, "GET", "/ping")
        assert response.status == 200
        assert [request[1:3] for request in fresh.requests] == [("GET", "/ping")]
    finally:
        caller.kill()
        caller.wait(timeout=10)
        if psutil.pid_exists(pid):
            psutil.Process(pid).terminate()


def test_one_client_connection_keeps_one_upstream_connection(gate, fresh):
    client = http.client.HTTPConnection("127.0.0.1", gate, timeout=30)
    for size in (10, 20_000, 30):
        response, answer = _request(gate, "POST", "/invocations", b"x" * size,
                                    {"Content-Type": "application/x-npy"}, connection=client)
        assert response.status == 200 and json.loads(answer)["bytes"] == size
    client_socket = client.sock
    _request(gate, "GET", "/ping", connection=client)
    assert client.sock is client_socket  # kept alive by the gate
    assert len({request[0] for request in fresh.requests}) == 1  # and one upstream connection
    assert len(fresh.requests) == 4


@pytest.mark.parametrize("method, path, status, message", [
    ("GET", "/models", 404, "/models is not served here: this endpoint answers only GET /ping and POST /invocations"),
    ("PUT", "/models/model?min_worker=3", 404, "/models/model is not served here"),
    ("POST", "/models?url=/tmp/x&initial_workers=1&synchronous=true", 404, "/models is not served here"),
    ("DELETE", "/models/model", 404, "/models/model is not served here"),
    ("OPTIONS", "/", 404, "/ is not served here"),
    ("GET", "/api-description", 404, "/api-description is not served here"),
    ("POST", "/predictions/model", 404, "/predictions/model is not served here"),
    ("GET", "/execution-parameters", 404, "/execution-parameters is not served here"),
    ("GET", "/invocations", 405, "GET /invocations is not allowed: use POST /invocations"),
    ("PUT", "/invocations", 405, "PUT /invocations is not allowed: use POST /invocations"),
    ("POST", "/ping", 405, "POST /ping is not allowed: use GET /ping"),
    ("HEAD", "/ping", 405, None),  # no body: see test_a_head_answer_has_no_body
    ("BREW", "/invocations", 405, "BREW /invocations is not allowed: use POST /invocations"),
    ("POST", "/invocations/../models", 404, "/invocations/../models is not served here"),
])
def test_everything_else_is_answered_by_the_gate_alone(gate, fresh, method, path, status, message):
    response, answer = _request(gate, method, path, body=b"{}" if method in ("POST", "PUT") else None)
    assert response.status == status
    if status == 405:
        assert response.getheader("Allow") == ("GET" if path == "/ping" else "POST")
    if message is not None:  # a HEAD answer has no body
        assert response.getheader("Content-Type") == "application/json"
        payload = json.loads(answer)
        assert payload["status"] == status and payload["error"].startswith(message)
    assert fresh.requests == []


def test_a_body_over_the_limit_gets_413_and_never_reaches_the_model_server(gate, fresh):
    client = http.client.HTTPConnection("127.0.0.1", gate, timeout=30)
    response, answer = _request(gate, "POST", "/invocations", b"\0" * (MAX_BODY_BYTES + 1),
                                {"Content-Type": "application/x-npy"}, connection=client)
    assert response.status == 413
    assert json.loads(answer)["error"] == (
        "the request body is 1000001 bytes, over this endpoint's limit of 1000000 bytes: send fewer or "
        "smaller images per request")
    assert fresh.requests == []
    # the refused body was read and dropped: the same connection carries the next request
    response, answer = _request(gate, "POST", "/invocations", b"ok", {"Content-Type": "application/x-npy"},
                                connection=client)
    assert response.status == 200 and json.loads(answer)["bytes"] == 2


def test_expect_100_continue_is_refused_before_the_body_is_sent(gate, fresh):
    with socket.create_connection(("127.0.0.1", gate), timeout=30) as client:
        client.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-npy\r\n"
                       b"Content-Length: 99000000\r\nExpect: 100-continue\r\n\r\n")
        response = http.client.HTTPResponse(client)
        response.begin()
        assert response.status == 413 and "99000000 bytes" in json.loads(response.read())["error"]
    assert fresh.requests == []


def test_a_chunked_body_is_forwarded_whole(gate, fresh):
    parts = [os.urandom(1000), os.urandom(70_000), os.urandom(5)]
    response, answer = _request(gate, "POST", "/invocations", iter(parts), {"Content-Type": "application/x-npy"})
    assert response.status == 200
    assert json.loads(answer)["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


def test_a_chunked_body_over_the_limit_gets_413(gate, fresh):
    parts = [b"\0" * 600_000, b"\0" * 600_000]
    response, answer = _request(gate, "POST", "/invocations", iter(parts), {"Content-Type": "application/x-npy"})
    assert response.status == 413 and "is 1200000 bytes, over" in json.loads(answer)["error"]
    assert fresh.requests == []


@pytest.mark.parametrize("size_line", [b"-1", b"+10", b"0x10", b"1_0"])
def test_a_chunk_size_that_is_not_plain_hex_gets_400_at_once(gate, fresh, size_line):
    """int(line, 16) took these; "-1" made the gate read (and keep) everything until the client closed."""
    with socket.create_connection(("127.0.0.1", gate), timeout=10) as client:
        client.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-npy\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\n" + b"\0" * 100_000)
        response = http.client.HTTPResponse(client)
        response.begin()  # the connection stays open: an answer must come without the client closing
        assert response.status == 400
        assert json.loads(response.read())["error"] == (
            "malformed chunked body: bad chunk size line %r" % (size_line + b"\r\n"))
    assert fresh.requests == []


def test_a_foreign_host_name_is_refused(gate, fresh):
    response, answer = _request(gate, "POST", "/invocations", b"x", {"Host": "attacker.example:%d" % gate})
    assert response.status == 403
    assert json.loads(answer)["error"] == (
        "Host 'attacker.example:%d' is not this endpoint: send requests to http://127.0.0.1:%d (other host "
        "names are refused against DNS rebinding)" % (gate, gate))
    for host in ("localhost:%d" % gate, "LOCALHOST", "127.0.0.1"):
        assert _request(gate, "GET", "/ping", headers={"Host": host})[0].status == 200
    assert len(fresh.requests) == 3


def _raw_post(port, header_lines):
    """POST /invocations with ``header_lines`` (bytes, sent as they are) and a 2-byte body; (status, JSON)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header_lines
                       + b"Content-Length: 2\r\n\r\nok")
        response = http.client.HTTPResponse(client)
        response.begin()
        return response.status, json.loads(response.read())


@pytest.mark.parametrize("header_lines, message", [
    # MMS's Python worker dies decoding a Content-Type, Accept or custom attributes that is not
    # ASCII ("Worker died.", then seconds without a worker): ISO-8859-1 and UTF-8 bytes alike
    (b"Content-Type: application/x-npy\xe9\r\n",
     "the Content-Type header holds characters other than printable ASCII (application/x-npy\\xe9): "
     "send header values in ASCII, as SageMaker's InvokeEndpoint requires"),
    (b"Content-Type: application/x-npy\r\nAccept: application/json\xc3\xa9\r\n",
     "the Accept header holds characters other than printable ASCII (application/json\\xc3\\xa9): "),
    (b"Content-Type: application/x-npy\r\nX-Amzn-SageMaker-Custom-Attributes: top_k=\xe9\r\n",
     "the X-Amzn-SageMaker-Custom-Attributes header holds characters other than printable ASCII"),
    (b"Content-Type: application/x-npy\x01\r\n", "the Content-Type header holds characters other than"),
    (b"Content-Type: application/x-npy\r\nX-Amzn-SageMaker-Custom-Attributes: " + b"a" * 1025 + b"\r\n",
     "the X-Amzn-SageMaker-Custom-Attributes header is 1025 characters long, over the 1024 that "
     "SageMaker's InvokeEndpoint accepts: shorten it"),
])
def test_a_header_value_sagemaker_would_refuse_gets_400_and_never_reaches_the_model_server(
        gate, fresh, header_lines, message):
    status, answer = _raw_post(gate, header_lines)
    assert (status, answer["status"]) == (400, 400)
    assert answer["error"].startswith(message)
    assert fresh.requests == []
    # the limits are SageMaker's: 1,024 ASCII characters still pass
    status, answer = _raw_post(gate, b"Content-Type: application/x-npy\r\n"
                                     b"X-Amzn-SageMaker-Custom-Attributes: " + b"a" * 1024 + b"\r\n")
    assert status == 200 and answer["bytes"] == 2


ACCEPTED = "send one of: application/x-npy, image/jpeg, image/png, application/x-image"
JPEG_START = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"  # not UTF-8: the toolkit's decoding of text types failed on it


@pytest.mark.parametrize("header_line, message", [
    # SageMaker's inference toolkit decodes these as UTF-8 before the handler: a 500 with a traceback
    (b"Content-Type: application/json\r\n", "Content-Type 'application/json' is not supported; " + ACCEPTED),
    (b"Content-Type: text/csv\r\n", "Content-Type 'text/csv' is not supported; " + ACCEPTED),
    # curl's default without -H: MMS parses the form itself and answers 500, echoing the body
    (b"Content-Type: application/x-www-form-urlencoded\r\n",
     "Content-Type 'application/x-www-form-urlencoded' is not supported; " + ACCEPTED),
    (b"Content-Type: multipart/form-data; boundary=x\r\n", "Content-Type 'multipart/form-data; boundary=x' is not"),
    (b"Content-Type: application/json; charset=utf-8\r\n", "Content-Type 'application/json; charset=utf-8' is not"),
    (b"Content-Type: image/jpeg, application/json\r\n", "Content-Type 'image/jpeg, application/json' is not"),
    (b"Content-Type: image/gif\r\n", "Content-Type 'image/gif' is not supported; " + ACCEPTED),
    # present with no value: it was answered "no Content-Type header"
    (b"Content-Type: \r\n", "the Content-Type header is empty; " + ACCEPTED),
    (b"Content-Type: \t \r\n", "the Content-Type header is empty; " + ACCEPTED),
    # present but naming no media type: it was answered "no Content-Type header"
    (b"Content-Type: ; charset=utf-8\r\n", "Content-Type '; charset=utf-8' names no media type; " + ACCEPTED),
    (b"", "the request has no Content-Type header; " + ACCEPTED),  # it said "Content-Type None"
])
def test_a_content_type_the_handler_does_not_decode_gets_415_and_never_reaches_the_model_server(
        gate, fresh, header_line, message):
    with socket.create_connection(("127.0.0.1", gate), timeout=30) as client:
        client.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header_line
                       + b"Content-Length: %d\r\n\r\n" % len(JPEG_START) + JPEG_START)
        answers = client.makefile("rb")
        status, headers, body = _next_answer(answers)
        assert (status, headers["Content-Type"]) == (415, "application/json")
        payload = json.loads(body)
        assert sorted(payload) == ["error", "status"] and payload["status"] == 415
        assert payload["error"].startswith(message)
        # the refused body was read and dropped: the connection carries the next request
        client.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                       b"Content-Length: 2\r\n\r\nok")
        status, _, body = _next_answer(answers)
        assert status == 200 and json.loads(body)["bytes"] == 2
    assert [request[3]["Content-Type"] for request in fresh.requests] == ["image/jpeg"]


@pytest.mark.parametrize("content_type", [
    "application/x-npy", "image/jpeg", "image/png", "application/x-image", "IMAGE/JPEG",
    "image/jpeg; charset=utf-8", "application/x-npy ; q=1", "Application/X-Image;x=y",
])
def test_a_content_type_the_handler_decodes_is_forwarded_as_it_is(gate, fresh, content_type):
    response, answer = _request(gate, "POST", "/invocations", JPEG_START, {"Content-Type": content_type})
    assert response.status == 200 and json.loads(answer)["bytes"] == len(JPEG_START)
    ((_, _, _, headers, body),) = fresh.requests
    assert (headers["Content-Type"], body) == (content_type, JPEG_START)


CONTENT_TYPES = [None, "", "application/x-npy", "application/X-NPY", " image/png ", "image/png;", "image/jpeg;q=1",
                 "application/x-image; charset=utf-8", "application/json", "text/csv", "text/plain",
                 "application/octet-stream", "image/*", "*/*", "image/jpg", "image/pjpeg", "application/npy",
                 "application/x-npy+json", "image/jpeg application/json", "image/png,image/jpeg", ";image/png",
                 "multipart/form-data; boundary=image/png", "application/x-www-form-urlencoded"]


def test_the_gate_refuses_exactly_the_content_types_the_handler_refuses_with_its_message(gate, fresh):
    """The gate's list is the handler's (serving.contract.REQUEST_TYPES), read as the handler reads it."""
    from serving.codecs import decode_images
    from serving.errors import ServingError, UnsupportedMediaTypeError

    forwarded = []
    for content_type in CONTENT_TYPES:
        try:
            decode_images(b"x", content_type, 100, 100)
        except UnsupportedMediaTypeError as error:
            handler = (415, error.message)
        except ServingError:  # decoded as its type (and refused as a body): the gate forwards it
            handler = (200, None)
            forwarded.append(content_type)
        header = b"" if content_type is None else b"Content-Type: %s\r\n" % content_type.encode()
        status, answer = _raw_post(gate, header)
        assert (status, answer.get("error")) == handler, content_type
    assert 0 < len(forwarded) < len(CONTENT_TYPES)
    assert len(fresh.requests) == len(forwarded)




def test_a_content_type_is_refused_before_the_body_is_sent(gate, fresh):
    with socket.create_connection(("127.0.0.1", gate), timeout=30) as client:
        client.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        response = http.client.HTTPResponse(client)
        response.begin()
        assert response.status == 415 and json.loads(response.read())["error"].startswith(
            "Content-Type 'application/json' is not supported")
    assert fresh.requests == []


@pytest.mark.parametrize("headers, error", [
    # Host: only the first was checked, a second, foreign one rode along (RFC 9112 section 3.2 says 400)
    (b"Host: attacker.example\r\nContent-Type: application/x-npy\r\n", "the request has 2 Host headers: send one"),
    # Content-Type: the toolkit read the second, image/jpeg then application/json was a 500 with a traceback
    (b"Content-Type: image/jpeg\r\nContent-Type: application/json\r\n",
     "the request has 2 Content-Type headers: send one"),
    # the custom attributes: MMS handed the last to the handler
    (b"Content-Type: application/x-npy\r\nX-Amzn-SageMaker-Custom-Attributes: top_k=1\r\n"
     b"X-Amzn-SageMaker-Custom-Attributes: top_k=100\r\n",
     "the request has 2 X-Amzn-SageMaker-Custom-Attributes headers: send one"),
])
def test_a_repeated_single_header_gets_400(gate, fresh, headers, error):
    status, answer = _raw_post(gate, headers)
    assert (status, answer) == (400, {"error": error, "status": 400})
    assert fresh.requests == []


PNG_BODY = b"\x89PNG\r\n\x1a\n" + b"\0" * 2000


class _Unclosed(io.BytesIO):
    def close(self):
        pass  # HTTPResponse closes its file after each answer; the next answer follows in it

    def makefile(self, *args, **kwargs):  # HTTPResponse reads "its socket" through makefile()
        return self


def _raw_exchange(port, request):
    """Send ``request`` (bytes); ``(answers, closed)``: every (status, JSON) answer, in order, until the gate
    closed the connection (``closed``) or stayed silent for 1 s."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(request)
        closed = False
        while True:
            try:
                data = client.recv(1 << 16)
            except TimeoutError:
                break
            if not data:
                closed = True
                break
            received += data
            client.settimeout(1.0)
    answers, stream = [], _Unclosed(received)
    while stream.tell() < len(received):
        response = http.client.HTTPResponse(stream)
        response.begin()
        answers.append((response.status, json.loads(response.read())))
    return answers, closed


FIELD_LINE_HINT = ": send each header on one line as NAME: VALUE, the name without spaces or control characters"
MALFORMED_HEAD = b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"


@pytest.mark.parametrize("request_bytes, error", [
    # Python's header parser stopped at the bad line: the headers after it (Content-Length) were
    # dropped, an empty body went to the handler, and the PNG was then read as a second request
    (MALFORMED_HEAD + b"X Y: 1\r\nContent-Length: %d\r\n\r\n" % len(PNG_BODY) + PNG_BODY,
     "malformed header line 'X Y: 1'" + FIELD_LINE_HINT),
    (MALFORMED_HEAD + b"X\x01Y: 1\r\nContent-Length: %d\r\n\r\n" % len(PNG_BODY) + PNG_BODY,
     "malformed header line 'X\\x01Y: 1'" + FIELD_LINE_HINT),
    (MALFORMED_HEAD + b"Content-Length : %d\r\n\r\n" % len(PNG_BODY) + PNG_BODY,
     "malformed header line 'Content-Length : %d'" % len(PNG_BODY) + FIELD_LINE_HINT),
    (MALFORMED_HEAD + b"NoColon\r\nContent-Length: 2\r\n\r\nok", "malformed header line 'NoColon'" + FIELD_LINE_HINT),
    (b"POST /invocations HTTP/1.1\r\n folded\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nok",
     "malformed header line ' folded'" + FIELD_LINE_HINT),
    # RFC 9112 section 3.2: 400 for an HTTP/1.1 request without Host
    (b"POST /invocations HTTP/1.1\r\nContent-Type: application/x-npy\r\nContent-Length: 2\r\n\r\nok",
     "an HTTP/1.1 request must have a Host header (RFC 9112 section 3.2): send Host: 127.0.0.1:{port}"),
    (b"GET /ping HTTP/1.1\r\n\r\n",
     "an HTTP/1.1 request must have a Host header (RFC 9112 section 3.2): send Host: 127.0.0.1:{port}"),
    # int() took the sign
    (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-npy\r\n"
     b"Content-Length: +2\r\n\r\nok",
     "Content-Length '+2' is not a byte count: send the body's length in decimal digits"),
    (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-npy\r\n"
     b"Content-Length: 0x2\r\n\r\nok",
     "Content-Length '0x2' is not a byte count: send the body's length in decimal digits"),
    (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-npy\r\n"
     b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nok", "the request has 2 Content-Length headers: send one"),
])
def test_a_malformed_head_gets_one_400_that_names_what_is_wrong(gate, fresh, request_bytes, error):
    answers, closed = _raw_exchange(gate, request_bytes)
    assert answers == [(400, {"error": error.format(port=gate), "status": 400})]
    # after a malformed line or length, where the body ends is unknown: the gate closes; else it keeps the connection
    assert closed == error.startswith(("malformed header line", "Content-Length"))
    assert fresh.requests == []


def test_http_1_0_needs_no_host(gate, fresh):
    answers, closed = _raw_exchange(gate, b"GET /ping HTTP/1.0\r\n\r\n")
    assert answers == [(200, {"status": "Healthy"})] and closed and len(fresh.requests) == 1


def test_a_malformed_request_gets_a_json_400(gate, fresh):
    with socket.create_connection(("127.0.0.1", gate), timeout=30) as client:
        client.sendall(b"GARBAGE\r\n\r\n")
        response = http.client.HTTPResponse(client)
        response.begin()
        assert response.status == 400
        assert json.loads(response.read())["error"].startswith("malformed HTTP request: Bad request syntax")
    assert fresh.requests == []


def test_no_model_server_is_a_502_until_it_listens(short_dir):
    socket_path = short_dir / "later.sock"
    process, port = _start_gate(short_dir, socket_path)
    try:
        response, answer = _request(port, "POST", "/invocations", b"abc", {"Content-Type": "application/x-npy"})
        assert response.status == 502
        assert json.loads(answer)["error"].startswith("the model server is not answering")
        server = FakeModelServer(socket_path)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            response, answer = _request(port, "POST", "/invocations", b"abc", {"Content-Type": "application/x-npy"})
            assert response.status == 200 and json.loads(answer)["bytes"] == 3
        finally:
            server.shutdown()
            server.server_close()
    finally:
        _stop(process)


def test_a_model_server_that_answers_too_late_is_a_504(short_dir):
    socket_path = short_dir / "silent.sock"
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(socket_path))
    silent.listen(4)  # accepts connections, never answers
    process, port = _start_gate(short_dir, socket_path, timeout=1.0)
    try:
        started = time.monotonic()
        response, answer = _request(port, "POST", "/invocations", b"abc", {"Content-Type": "application/x-npy"})
        assert response.status == 504
        assert json.loads(answer)["error"] == "the model server did not answer within 1 s"
        assert time.monotonic() - started < 10
    finally:
        _stop(process)
        silent.close()


def test_sigterm_ends_the_gate_and_frees_its_port(short_dir, upstream):
    process, port = _start_gate(short_dir, short_dir / "inference.sock")
    assert _request(port, "GET", "/ping")[0].status == 200
    _stop(process)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def _next_answer(stream, has_body=True):
    """(status, headers, body) of the next answer on a byte stream (a pipelining client's view)."""
    status = int(stream.readline().split()[1])
    headers = http.client.parse_headers(stream)
    return status, headers, stream.read(int(headers["Content-Length"])) if has_body else b""


def test_a_head_answer_has_no_body(gate, fresh):
    """HEAD /ping is refused like any method but GET (SageMaker's health check is GET /ping), and the
    refusal carries no body: the body written after a HEAD answer was read as the next answer."""
    with socket.create_connection(("127.0.0.1", gate), timeout=30) as client:
        client.sendall(b"HEAD /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answers = client.makefile("rb")
        status, headers, _ = _next_answer(answers, has_body=False)
        assert (status, headers["Allow"], headers["Content-Type"]) == (405, "GET", "application/json")
        status, _, body = _next_answer(answers)
        assert status == 200 and json.loads(body) == {"status": "Healthy"}
    assert [request[1:3] for request in fresh.requests] == [("GET", "/ping")]


def test_headers_over_64_kib_get_431(gate, fresh):
    """http.server alone takes 100 header lines of 64 KiB each: 6.5 MB held per connection."""
    status, answer = _raw_post(gate, b"".join(b"X-Pad-%d: %s\r\n" % (number, b"a" * 2000) for number in range(40)))
    assert (status, answer["status"]) == (431, 431)
    assert answer["error"] == "the request line and headers are over 65536 bytes: send shorter headers"
    assert fresh.requests == []
    status, answer = _raw_post(gate, b"Content-Type: image/png\r\n"
                               + b"".join(b"X-Pad-%d: %s\r\n" % (number, b"a" * 2000) for number in range(30)))
    assert status == 200 and answer["bytes"] == 2


def _post_head(length=MAX_BODY_BYTES, chunked=False):
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % length
    return (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-npy\r\n"
            + framing + b"\r\n\r\n")


def _open_unfinished(port, count, payload):
    """``count`` connections that each send ``payload`` and then nothing (refused ones included)."""
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        clients.append(client)
        try:
            client.sendall(payload)
        except OSError:
            pass  # refused and closed by the gate
    return clients


def _read_answer(client):
    response = http.client.HTTPResponse(client)
    response.begin()
    return response.status, json.loads(response.read())


def test_many_unfinished_bodies_keep_the_gate_small_and_its_connections_capped(short_dir, upstream):
    """300 connections with a partial body each took the gate from 27 to 345 MB (a 1 MB buffer per
    connection, no cap), and 40 unfinished chunked bodies held all their bytes."""
    process, port = _start_gate(short_dir, short_dir / "inference.sock")
    clients = []
    try:
        assert _request(port, "GET", "/ping")[0].status == 200
        rss_before = psutil.Process(process.pid).memory_info().rss
        chunk = 900_000
        clients += _open_unfinished(port, 40, _post_head(chunked=True) + b"%x\r\n" % chunk + b"\0" * (chunk - 1))
        clients += _open_unfinished(port, 260, _post_head() + b"\0" * 600_000)
        time.sleep(1.0)  # let the gate read what was sent
        grown = psutil.Process(process.pid).memory_info().rss - rss_before
        assert grown < 40 << 20, "the gate grew by %.0f MB" % (grown / (1 << 20))
        # the connections past the cap were answered 503 and closed
        status, answer = _read_answer(clients[-1])
        assert (status, answer["status"]) == (503, 503)
        assert answer["error"] == ("the endpoint already serves %d connections, its limit: retry, close idle "
                                   "connections, or start the endpoint with a larger --max-connections"
                                   % DEFAULT_MAX_CONNECTIONS)
    finally:
        for client in clients:
            client.close()
        _stop(process)


def test_a_freed_connection_slot_serves_again(short_dir, upstream):
    process, port = _start_gate(short_dir, short_dir / "inference.sock", max_connections=3)
    try:
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            status, answer = _read_answer(extra)
        assert status == 503 and "already serves 3 connections" in answer["error"]
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the slot is free once the gate has seen the close
            status = _request(port, "GET", "/ping")[0].status
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200
        for client in held:
            client.close()
    finally:
        _stop(process)


def _drip(client, data, interval, stop):
    """Send ``data`` one byte every ``interval`` seconds until ``stop`` is set or the gate closes."""
    for byte in data:
        if stop.wait(interval):
            return
        try:
            client.sendall(bytes([byte]))
        except OSError:
            return


def test_slow_senders_get_408_at_the_deadline_and_do_not_block_other_clients(short_dir, upstream):
    """The timeout was per read (120 s): a byte every few seconds held a connection for ever."""
    deadline = 2.0
    process, port = _start_gate(short_dir, short_dir / "inference.sock", request_deadline=deadline)
    stop = threading.Event()
    senders = []
    try:
        for prefix, trickle in [(b"", _post_head(length=100)),  # the headers trickle in
                                (_post_head(length=100), b"\0" * 100),  # the body trickles in
                                (_post_head(chunked=True), b"64\r\n" + b"\0" * 100)]:  # a chunked one
            client = socket.create_connection(("127.0.0.1", port), timeout=10 * deadline)
            client.sendall(prefix)
            thread = threading.Thread(target=_drip, args=(client, trickle, 0.2, stop), daemon=True)
            thread.start()
            senders.append(client)
        started = time.monotonic()
        body = os.urandom(500_000)  # meanwhile a normal request is served
        response, answer = _request(port, "POST", "/invocations", body, {"Content-Type": "application/x-npy"})
        assert response.status == 200 and json.loads(answer)["sha256"] == hashlib.sha256(body).hexdigest()
        for client in senders:
            status, answer = _read_answer(client)
            assert (status, answer["status"]) == (408, 408)
            assert answer["error"] == (
                "the request did not arrive within 2 s of its first byte: send the headers and the whole body "
                "at once (or start the endpoint with a larger --request-deadline)")
            assert client.recv(1) == b""  # and the connection is closed
        assert time.monotonic() - started < deadline + 5
    finally:
        stop.set()
        for client in senders:
            client.close()
        _stop(process)


def test_a_dropped_upstream_is_seen_on_descriptors_past_1024():
    """select() cannot watch a descriptor >= 1024 (ValueError); a gate holding hundreds of
    connections has such descriptors, so the idle-upstream check must work there too."""
    import resource

    from deploy.gate import _UnixHTTPConnection

    high = 1500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= high:  # a soft limit may be raised up to the hard one without privileges
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    gate_side, mms_side = socket.socketpair()
    os.dup2(gate_side.fileno(), high)
    gate_side.close()
    connection = _UnixHTTPConnection("/nonexistent", timeout=1)
    connection.sock = socket.socket(fileno=high)
    try:
        assert connection.dropped() is False
        mms_side.close()
        assert connection.dropped() is True
    finally:
        connection.sock.close()
