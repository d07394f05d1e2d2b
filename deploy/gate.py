"""The request gate of ``deploy serve``: the only TCP listener, passing GET /ping and POST /invocations to MMS.

multi-model-server serves its management API (register a model from any directory or URL,
scale, delete) beside the inference API. ``LocalEndpoint`` binds both to Unix sockets inside
its 0700 temporary directory, and this gate, a process of its own, listens on the endpoint's
127.0.0.1 port. It forwards ``GET /ping`` and ``POST /invocations`` (request bodies streamed,
one kept-alive upstream connection per client connection) and returns MMS's status, headers
and body unchanged. It answers everything else itself, as JSON ``{"error": ..., "status": N}``:
404 for any other path, 405 for another method on those two, 413 for bodies over the
endpoint's limit (before any byte reaches MMS), 403 for a Host header that is not the
loopback's (a web page that rebinds its own DNS name to 127.0.0.1), 400 for a header value
that is not printable ASCII or a Content-Type, Accept or custom-attributes value over 1,024
characters (what SageMaker's InvokeEndpoint accepts; MMS's Python worker dies on a non-ASCII
Content-Type or Accept) and for more than one Host header, 502 when MMS does not answer and
504 when it answers too late.

Standard library only, so it starts fast as a script: ``python -I gate.py --listen-fd FD
--upstream SOCKET``; ``launch_gate`` starts it with a listening socket the caller bound.
"""
import argparse
import http.client
import http.server
import json
import re
import select
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["ROUTES", "launch_gate"]

# path -> the one method forwarded on it
ROUTES = {"/ping": "GET", "/invocations": "POST"}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# Hop-by-hop headers (RFC 9110 section 7.6.1) and those the gate sets itself: never forwarded.
_NOT_FORWARDED = frozenset(["connection", "keep-alive", "proxy-connection", "te", "trailer",
                            "transfer-encoding", "upgrade", "expect", "host", "content-length"])
# SageMaker's InvokeEndpoint takes these as ASCII strings of at most 1,024 characters (botocore's
# sagemaker-runtime InvokeEndpointInput: ContentType, Accept, CustomAttributes).
_SAGEMAKER_HEADERS = frozenset(["content-type", "accept", "x-amzn-sagemaker-custom-attributes"])
_SAGEMAKER_HEADER_CHARS = 1024
# Header values as parsed (ISO-8859-1): visible ASCII, space and tab. MMS hands Content-Type,
# Accept and the custom attributes to its Python worker, which dies decoding anything else.
_PRINTABLE_ASCII = re.compile(r"[\t\x20-\x7e]*")
_CHUNK_BYTES = 1 << 20
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")  # RFC 9112 chunk-size: 1*HEXDIG (no sign, no 0x)
# An over-limit body up to this size is read and dropped so the client gets its 413 on a
# connection it can keep; a bigger one closes the connection after the answer.
_DRAIN_LIMIT_BYTES = 64 << 20


class _RefusedRequest(Exception):
    """A request the gate answers itself: ``status``, ``message`` and extra ``headers``."""

    def __init__(self, status, message, headers=()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client.HTTPConnection`` to an HTTP server on a Unix socket (MMS's inference API)."""

    def __init__(self, socket_path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def dropped(self):
        """True when the kept-alive socket was closed by the server (readable while idle means EOF)."""
        if self.sock is None:
            return False
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)


class GateHandler(http.server.BaseHTTPRequestHandler):
    """One client connection: route each request, forward the allowed ones over one upstream connection.

    The server object carries the settings: ``upstream_path`` (MMS's inference socket),
    ``max_body_bytes`` and ``upstream_timeout`` (seconds).
    """

    protocol_version = "HTTP/1.1"
    server_version = "clearsight-gate"
    disable_nagle_algorithm = True
    timeout = 120  # seconds a client may stay silent (mid-request or idle between requests)

    upstream = None
    buffer = None

    def __getattr__(self, name):
        # BaseHTTPRequestHandler calls do_<METHOD>; every method, known or not, goes through _route.
        if name.startswith("do_"):
            return self._route
        raise AttributeError(name)

    # --- routing -------------------------------------------------------------------------------

    def _check(self):
        """Raise _RefusedRequest unless this request may reach MMS; return its body length or None (chunked)."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:  # RFC 9112 section 3.2: a server must answer 400; which one would count?
            raise _RefusedRequest(400, "the request has %d Host headers: send one" % len(hosts))
        host = self.headers.get("Host")
        if host is not None and _host_name(host) not in LOOPBACK_HOSTS:
            raise _RefusedRequest(403, "Host %r is not this endpoint: send requests to http://127.0.0.1:%d "
                                       "(other host names are refused against DNS rebinding)"
                                  % (host, self.server.server_address[1]))
        path = urlsplit(self.path).path
        method = ROUTES.get(path)
        if method is None:
            raise _RefusedRequest(404, "%s is not served here: this endpoint answers only GET /ping and "
                                       "POST /invocations" % _printable(path))
        if self.command != method:
            raise _RefusedRequest(405, "%s %s is not allowed: use %s %s" % (
                _printable(self.command), path, method, path), headers=[("Allow", method)])
        for name, value in self.headers.items():
            if name.lower() in _NOT_FORWARDED:
                continue
            if not _PRINTABLE_ASCII.fullmatch(value):
                raise _RefusedRequest(400, "the %s header holds characters other than printable ASCII (%s): "
                                           "send header values in ASCII, as SageMaker's InvokeEndpoint requires"
                                      % (_printable(name), ascii(value[:40])[1:-1]))
            if name.lower() in _SAGEMAKER_HEADERS and len(value) > _SAGEMAKER_HEADER_CHARS:
                raise _RefusedRequest(400, "the %s header is %d characters long, over the %d that SageMaker's "
                                           "InvokeEndpoint accepts: shorten it"
                                      % (_printable(name), len(value), _SAGEMAKER_HEADER_CHARS))
        coding = self.headers.get("Transfer-Encoding")
        if coding is not None:
            if coding.strip().lower() != "chunked":
                raise _RefusedRequest(501, "Transfer-Encoding %r is not supported: send the body with a "
                                           "Content-Length (or chunked)" % coding)
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if length < 0:
                raise ValueError
        except ValueError:
            raise _RefusedRequest(400, "Content-Length %r is not a byte count"
                                  % self.headers.get("Content-Length"))
        if length > self.server.max_body_bytes:
            raise _RefusedRequest(413, _too_large(length, self.server.max_body_bytes))
        return length

    def handle_expect_100(self):
        """Refuse before the client sends its body (``Expect: 100-continue``), else invite it."""
        try:
            self._check()
        except _RefusedRequest as refused:
            self.close_connection = True  # the body, if the client sends it anyway, is not read
            self._send_error(refused)
            return False
        return super().handle_expect_100()

    def _route(self):
        try:
            length = self._check()
        except _RefusedRequest as refused:
            self._drain_refused_body()
            self._send_error(refused)
            return
        try:
            body = self._read_chunked() if length is None else None
        except _RefusedRequest as refused:
            self._send_error(refused)
            return
        except OSError:
            self.close_connection = True  # the client went away or silent mid-body
            return
        self._forward(body, length)

    # --- forwarding ----------------------------------------------------------------------------

    def _upstream_connection(self):
        if self.upstream is not None and self.upstream.dropped():
            self.upstream.close()  # http.client reconnects on the next request
        if self.upstream is None:
            self.upstream = _UnixHTTPConnection(self.server.upstream_path, self.server.upstream_timeout)
        return self.upstream

    def _forward(self, body, length):
        """Send this request to MMS (``body`` bytes, or ``length`` bytes streamed from the client)."""
        connection = self._upstream_connection()
        path = urlsplit(self.path).path
        try:
            connection.putrequest(self.command, path, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _NOT_FORWARDED:
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body) if body is not None else length))
            connection.endheaders()
        except OSError as error:
            connection.close()
            self._drain_refused_body(0 if body is not None else length)
            self._send_error(_RefusedRequest(502, "the model server is not answering (%s); it may still be "
                                                  "starting, or it stopped: see the endpoint's log" % error))
            return
        try:
            if body is not None:
                connection.send(body)
            else:
                self._stream_body(connection, length)
        except _ClientGone:
            connection.close()
            self.close_connection = True
            return
        except OSError:
            # MMS closed early; it may still have answered (read below). The rest of the
            # client's body is unread: that connection cannot carry another request.
            self.close_connection = True
        try:
            response = connection.getresponse()
            answer = response.read()
        except TimeoutError:
            connection.close()
            self._send_error(_RefusedRequest(504, "the model server did not answer within %.0f s"
                                             % self.server.upstream_timeout))
            return
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            self.close_connection = True
            self._send_error(_RefusedRequest(502, "the model server closed the connection without an answer "
                                                  "(%s); see the endpoint's log" % error.__class__.__name__))
            return
        if response.will_close:
            connection.close()
        headers = [(name, value) for name, value in response.getheaders() if name.lower() not in _NOT_FORWARDED]
        self._send(response.status, response.reason, headers, answer)

    def _stream_body(self, connection, length):
        """Copy ``length`` body bytes from the client to MMS through one reused buffer."""
        if self.buffer is None:
            self.buffer = memoryview(bytearray(_CHUNK_BYTES))  # no fresh 1 MB allocation per chunk
        remaining = length
        while remaining > 0:
            try:
                received = self.rfile.readinto(self.buffer[:min(_CHUNK_BYTES, remaining)])
            except OSError:
                raise _ClientGone()
            if not received:
                raise _ClientGone()
            connection.send(self.buffer[:received])
            remaining -= received

    def _read_chunked(self):
        """The body of a ``Transfer-Encoding: chunked`` request; 413 when over the limit (read to its end)."""
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            size_field = line.split(b";", 1)[0].strip(b" \t\r\n")
            if not _CHUNK_SIZE.fullmatch(size_field):  # int() alone takes "-1", which reads to EOF
                self.close_connection = True
                raise _RefusedRequest(400, "malformed chunked body: bad chunk size line %r" % line[:40])
            size = int(size_field, 16)
            if size == 0:
                break
            total += size
            if total > _DRAIN_LIMIT_BYTES:
                self.close_connection = True
                break
            data = self.rfile.read(size)
            if len(data) != size or self.rfile.read(2) != b"\r\n":
                self.close_connection = True
                raise _RefusedRequest(400, "malformed chunked body: a chunk is shorter than its size line says")
            if total <= self.server.max_body_bytes:
                parts.append(data)
        while not self.close_connection and self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields are dropped
        if total > self.server.max_body_bytes:
            raise _RefusedRequest(413, _too_large(total, self.server.max_body_bytes,
                                                  "more than " if self.close_connection else ""))
        return b"".join(parts)

    def _drain_refused_body(self, length=-1):
        """Read and drop the body of a refused request, so the client reads the answer, not a reset."""
        if length == -1:
            coding = self.headers.get("Transfer-Encoding")
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = None
            if coding is not None:
                length = None
        if length is None or length > _DRAIN_LIMIT_BYTES:
            self.close_connection = True
            return
        try:
            while length > 0:
                chunk = self.rfile.read(min(_CHUNK_BYTES, length))
                if not chunk:
                    break
                length -= len(chunk)
        except OSError:
            pass
        if length > 0:
            self.close_connection = True

    # --- answers -------------------------------------------------------------------------------

    def _send(self, status, reason, headers, body):
        """Write a whole response (status line, headers, body) in one send."""
        head = ["%s %d %s\r\n" % (self.protocol_version, status, reason or "")]
        head += ["%s: %s\r\n" % (name, value) for name, value in headers]
        head.append("Content-Length: %d\r\n" % len(body))
        if self.close_connection:
            head.append("Connection: close\r\n")
        head.append("\r\n")
        head = "".join(head).encode("latin-1", "replace")
        if len(body) <= _CHUNK_BYTES:
            self.wfile.write(head + body)  # one segment for the usual small answer
        else:
            self.wfile.write(head)
            self.wfile.write(body)
        self.log_request(status, len(body))

    def _send_error(self, refused):
        body = json.dumps({"error": refused.message, "status": refused.status}).encode("utf-8")
        headers = [("Content-Type", "application/json")] + list(refused.headers)
        self._send(refused.status, self.responses.get(refused.status, ("",))[0], headers, body)

    def send_error(self, code, message=None, explain=None):
        """Malformed requests (bad request line, headers too long, ...): JSON like every other refusal."""
        self.close_connection = True
        default = self.responses.get(code, ("error",))[0]
        self._send_error(_RefusedRequest(code, "malformed HTTP request: %s" % (message or default)))

    def log_request(self, code="-", size="-"):
        pass  # one line per request would cost more than the forwarding; errors still go to log_error

    def finish(self):
        if self.upstream is not None:
            self.upstream.close()
        super().finish()


class _ClientGone(Exception):
    """The client closed its connection or went silent in the middle of its body."""


class GateServer(http.server.ThreadingHTTPServer):
    """A thread per client connection, on a listening socket bound by the caller."""

    daemon_threads = True

    def __init__(self, listener, upstream_path, max_body_bytes, upstream_timeout):
        super().__init__(listener.getsockname(), GateHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_address = listener.getsockname()
        self.upstream_path = upstream_path
        self.max_body_bytes = max_body_bytes
        self.upstream_timeout = upstream_timeout


def _host_name(host):
    """``'127.0.0.1:8080'`` -> ``'127.0.0.1'``, ``'[::1]:8080'`` -> ``'[::1]'`` (lower case)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.split(":", 1)[0]


def _printable(text, limit=80):
    return repr(text[:limit])[1:-1]


def _too_large(size, limit, qualifier=""):
    return ("the request body is %s%d bytes, over this endpoint's limit of %d bytes: send fewer images per "
            "request (or start the endpoint with a larger max_request_bytes)" % (qualifier, size, limit))


def launch_gate(listener, upstream_path, max_body_bytes, upstream_timeout, log_file, python=sys.executable):
    """Start the gate as its own process serving ``listener`` (a bound, listening TCP socket).

    The caller may close its copy of ``listener`` afterwards. Returns the ``subprocess.Popen``;
    the gate runs in a session of its own (SIGTERM ends it at once) and writes errors to ``log_file``.
    """
    command = [python, "-I", str(Path(__file__).resolve()), "--listen-fd", str(listener.fileno()),
               "--upstream", str(upstream_path), "--max-body-bytes", str(max_body_bytes),
               "--upstream-timeout", str(upstream_timeout)]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                            pass_fds=(listener.fileno(),), start_new_session=True, close_fds=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-fd", type=int, required=True, help="a listening TCP socket inherited from the caller")
    parser.add_argument("--upstream", required=True, help="MMS's inference API, a Unix socket path")
    parser.add_argument("--max-body-bytes", type=int, required=True)
    parser.add_argument("--upstream-timeout", type=float, required=True, help="seconds to wait for MMS's answer")
    args = parser.parse_args(argv)
    listener = socket.socket(fileno=args.listen_fd)
    server = GateServer(listener, args.upstream, args.max_body_bytes, args.upstream_timeout)
    server.serve_forever(poll_interval=3600)


if __name__ == "__main__":
    main()
