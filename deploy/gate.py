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
Content-Type or Accept), for more than one Host, Content-Type, Content-Length or custom-attributes
header, for an HTTP/1.1 request without Host, for a Content-Length that is not decimal digits and
for a header line that is not ``NAME: VALUE`` (then the connection closes), 415 for a POST
/invocations whose Content-Type the handler does not decode (``request_types``: the media type
before any ``;`` parameters, case-insensitive, as ``serving.contract.media_type`` reads it; MMS
parses a form body itself and answers 500 echoing it, and SageMaker's inference toolkit
decodes ``application/json`` and ``text/csv`` bodies as UTF-8 before the handler sees them,
a 500 with a traceback for an image), 502 when MMS does not answer and 504 when it answers
too late.

What one client may hold is bounded: at most ``max_connections`` connections at once (503 and
closed beyond), a request's line, headers and body must all arrive within ``request_deadline``
seconds of its first byte (408 and closed after), a connection may stay idle 120 s between
requests, the request line and headers take at most 64 KiB (431), and a connection streams
its body through one 256 KiB buffer (a chunked body is spooled to a temporary file past 64 KiB).

Standard library only, so it starts fast as a script: ``python -I gate.py --listen-fd FD
--upstream SOCKET --request-type TYPE ...``; ``launch_gate`` starts it with a listening socket
the caller bound and the handler's request types.
"""
import argparse
import http.client
import http.server
import io
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_REQUEST_DEADLINE", "ROUTES", "launch_gate"]

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
# Per connection: one buffer for streaming bodies, and the memory a chunked body may take before
# it is spooled to a temporary file. 1 MiB buffers took 300 connections to 345 MB; 256 KiB ones
# cost the gate ~15% more CPU per 6 MB body than 1 MiB ones, 64 KiB ones ~50%.
_CHUNK_BYTES = 256 << 10
_SPOOL_MEMORY_BYTES = 64 << 10
# The request line and headers together (SageMaker's largest header value is 1,024 characters).
_MAX_HEAD_BYTES = 64 << 10
# Connections served at once; each further one gets 503 and is closed. The explain client keeps
# --concurrency connections (4 by default) open to an endpoint.
DEFAULT_MAX_CONNECTIONS = 64
# Seconds from a request's first byte to the last byte of its body: a 6.5 MB body crosses the
# loopback in milliseconds, so this is about clients that stall, not about slow links.
DEFAULT_REQUEST_DEADLINE = 30.0
# Seconds a kept-alive connection may stay idle before its next request starts.
_IDLE_SECONDS = 120.0
# RFC 9110 field-name (a token) and its colon, no space before it; a line starting with a space is folding.
_FIELD_LINE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:")
_DIGITS = re.compile(r"[0-9]+")  # RFC 9110 Content-Length: 1*DIGIT (no sign, no "_", no base)
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


class _HeadTooLarge(Exception):
    """The request line and headers ran past ``_MAX_HEAD_BYTES``."""


class _ClientReader(socket.SocketIO):
    """Raw reads from the client's socket, bounded in time by the request's deadline and in bytes
    by what its request line and headers may still take.

    ``await_request`` starts each request: the first read may wait ``idle_seconds``; once a byte
    arrives, every read until the next ``await_request`` ends by that byte's time plus
    ``request_seconds``, however the client spreads its bytes (a per-read timeout would let
    one byte every 119 s hold the connection for ever).
    """

    def __init__(self, sock):
        super().__init__(sock, "rb")
        self.deadline = None  # time.monotonic() by which the current read must end
        self.request_seconds = None
        self.head_budget = None  # bytes the request line and headers may still take; None: no limit
        self.request_started = False  # a byte of the current request has arrived
        self.expired = False  # a read ran out of time

    def await_request(self, idle_seconds, request_seconds, head_bytes):
        self.deadline = time.monotonic() + idle_seconds
        self.request_seconds = request_seconds
        self.head_budget = head_bytes
        self.request_started = self.expired = False

    def readinto(self, buffer):
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.expired = True
            raise TimeoutError("the request's deadline passed")
        if self.head_budget is not None:
            if self.head_budget <= 0:
                raise _HeadTooLarge()
            buffer = memoryview(buffer)[:self.head_budget]
        self._sock.settimeout(left)
        try:
            received = super().readinto(buffer)
        except TimeoutError:
            self.expired = True
            raise
        if received:
            if not self.request_started:
                self.request_started = True
                self.deadline = time.monotonic() + self.request_seconds
            if self.head_budget is not None:
                self.head_budget -= received
        return received


class _LineRecorder(object):
    """Passes ``readline`` on to ``reader`` and keeps the lines (http.client.parse_headers reads only lines)."""

    def __init__(self, reader):
        self.reader = reader
        self.lines = []

    def readline(self, limit=-1):
        line = self.reader.readline(limit)
        self.lines.append(line)
        return line

    def __getattr__(self, name):
        return getattr(self.reader, name)


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
        poller = select.poll()  # select() cannot watch descriptors >= 1024; poll() has no such limit
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))


class GateHandler(http.server.BaseHTTPRequestHandler):
    """One client connection: route each request, forward the allowed ones over one upstream connection.

    The server object carries the settings: ``upstream_path`` (MMS's inference socket),
    ``max_body_bytes``, ``upstream_timeout`` and ``request_deadline`` (seconds).
    """

    protocol_version = "HTTP/1.1"
    server_version = "clearsight-gate"
    disable_nagle_algorithm = True

    upstream = None
    buffer = None
    reader = None
    answered = False  # the current request has had its answer
    framing_lost = False  # a malformed header line: where the body ends is unknown
    header_lines = ()  # the current request's header lines as received (bytes)

    def setup(self):
        super().setup()
        self.rfile.close()  # the socket's own reader: replaced by one that keeps the deadline
        self.reader = _ClientReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self):
        """One request, read within its deadline and head budget; 408 or 431 (and close) when not."""
        self.reader.await_request(_IDLE_SECONDS, self.server.request_deadline, _MAX_HEAD_BYTES)
        self.answered = self.framing_lost = False
        self.command = None  # until this request's line is parsed (a HEAD answer has no body)
        try:
            super().handle_one_request()  # a timeout anywhere in it closes the connection
        except _HeadTooLarge:
            self.close_connection = True
            self._send_error(_RefusedRequest(431, "the request line and headers are over %d bytes: send "
                                                  "shorter headers" % _MAX_HEAD_BYTES))
            return
        if self.reader.expired and self.reader.request_started and not self.answered:
            self.close_connection = True
            try:
                self._send_error(_RefusedRequest(408, "the request did not arrive within %g s of its first byte: "
                                                      "send the headers and the whole body at once (or start "
                                                      "the endpoint with a larger --request-deadline)"
                                                 % self.server.request_deadline))
            except OSError:
                pass  # the client is gone too

    def __getattr__(self, name):
        # BaseHTTPRequestHandler calls do_<METHOD>; every method, known or not, goes through _route.
        if name.startswith("do_"):
            return self._route
        raise AttributeError(name)

    # --- routing -------------------------------------------------------------------------------

    def _check(self):
        """Raise _RefusedRequest unless this request may reach MMS; return its body length or None (chunked)."""
        self._check_header_lines()
        host = self._single_header("Host")  # RFC 9112 section 3.2: a server must answer 400; which one would count?
        if host is None and self.request_version == "HTTP/1.1":
            raise _RefusedRequest(400, "an HTTP/1.1 request must have a Host header (RFC 9112 section 3.2): "
                                       "send Host: 127.0.0.1:%d" % self.server.server_address[1])
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
        if method == "POST":
            self._check_content_type()
            # MMS hands the last of several to the handler, which may then read other filters than
            # the client meant: refused like a second Host or Content-Type.
            self._single_header("X-Amzn-SageMaker-Custom-Attributes")
        coding = self.headers.get("Transfer-Encoding")
        if coding is not None:
            if coding.strip().lower() != "chunked":
                raise _RefusedRequest(501, "Transfer-Encoding %r is not supported: send the body with a "
                                           "Content-Length (or chunked)" % coding)
            return None
        declared = self._single_header("Content-Length")
        if declared is not None and not _DIGITS.fullmatch(declared.strip(" \t")):  # int() takes "+5", " 5_0"
            raise _RefusedRequest(400, "Content-Length %r is not a byte count: send the body's length in "
                                       "decimal digits" % declared)
        length = int(declared or "0")
        if length > self.server.max_body_bytes:
            raise _RefusedRequest(413, _too_large(length, self.server.max_body_bytes))
        return length

    def _check_header_lines(self):
        """Raise _RefusedRequest (400, and close) when a header line is not ``NAME: VALUE``.

        Python's header parser stops at such a line and keeps the rest, the following headers
        included, as a "body": the request's framing is then unknown, so the gate answers once
        and closes the connection (RFC 9112 section 5: 400 for an invalid field line, or for
        obsolete line folding).
        """
        for line in self.header_lines:
            text = line.decode("latin-1").rstrip("\r\n")
            if text and not _FIELD_LINE.match(text):
                self.close_connection = self.framing_lost = True
                raise _RefusedRequest(400, "malformed header line %r: send each header on one line as NAME: "
                                           "VALUE, the name without spaces or control characters" % text[:80])

    def parse_request(self):
        """BaseHTTPRequestHandler's, keeping the raw header lines it reads in ``header_lines``."""
        reader = self.rfile
        self.rfile = recorder = _LineRecorder(reader)
        self.header_lines = recorder.lines
        try:
            return super().parse_request()
        finally:
            self.rfile = reader

    def _check_content_type(self):
        """Raise _RefusedRequest unless the request has one Content-Type that the handler decodes.

        The same test as the handler's (``serving.codecs.decode_images``) and the same 415
        message, so a request the handler would refuse never reaches MMS or the toolkit.
        """
        content_type = self._single_header("Content-Type")  # MMS and the toolkit may each read a different one
        accepted = self.server.request_types
        if not _media_type(content_type):
            if content_type is None:
                raise _RefusedRequest(415, "the request has no Content-Type header; send one of: %s"
                                      % ", ".join(accepted))
            if not content_type.strip():  # "Content-Type: " with no value
                raise _RefusedRequest(415, "the Content-Type header is empty; send one of: %s" % ", ".join(accepted))
            raise _RefusedRequest(415, "Content-Type %r names no media type; send one of: %s"
                                  % (content_type, ", ".join(accepted)))
        if _media_type(content_type) not in accepted:
            raise _RefusedRequest(415, "Content-Type %r is not supported; send one of: %s"
                                  % (content_type, ", ".join(accepted)))

    def _single_header(self, name):
        """The value of header ``name`` (None when absent); raise _RefusedRequest (400) when it is repeated."""
        values = self.headers.get_all(name) or []
        if len(values) > 1:
            raise _RefusedRequest(400, "the request has %d %s headers: send one" % (len(values), name))
        return values[0] if values else None

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
        self.reader.head_budget = None  # the headers are in; the body is bounded by max_body_bytes
        try:
            length = self._check()
        except _RefusedRequest as refused:
            if self.framing_lost:
                self._send_error(refused)
                self._discard_until_closed()
                return
            self._drain_refused_body()
            self._send_error(refused)
            return
        spool = None
        try:
            if length is None:
                spool, length = self._spool_chunked()
        except _RefusedRequest as refused:
            self._send_error(refused)
            return
        except OSError:
            self.close_connection = True  # the client went away or silent mid-body
            return
        try:
            self._forward(spool, length)
        finally:
            if spool is not None:
                spool.close()

    # --- forwarding ----------------------------------------------------------------------------

    def _upstream_connection(self):
        if self.upstream is not None and self.upstream.dropped():
            self.upstream.close()  # http.client reconnects on the next request
        if self.upstream is None:
            self.upstream = _UnixHTTPConnection(self.server.upstream_path, self.server.upstream_timeout)
        return self.upstream

    def _forward(self, spool, length):
        """Send this request to MMS: ``length`` body bytes from ``spool`` (a file), or streamed from the client."""
        connection = self._upstream_connection()
        path = urlsplit(self.path).path
        try:
            connection.putrequest(self.command, path, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _NOT_FORWARDED:
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(length))
            connection.endheaders()
        except OSError as error:
            connection.close()
            self._drain_refused_body(0 if spool is not None else length)
            self._send_error(_RefusedRequest(502, "the model server is not answering (%s); it may still be "
                                                  "starting, or it stopped: see the endpoint's log" % error))
            return
        try:
            self._stream_body(connection, length, spool)
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

    def _stream_body(self, connection, length, spool=None):
        """Copy ``length`` body bytes from ``spool``, or else from the client, to MMS."""
        if spool is None:
            self._copy_from_client(length, connection.send)
            return
        for data in iter(lambda: spool.read(_CHUNK_BYTES), b""):
            connection.send(data)

    def _copy_from_client(self, length, write=None):
        """Pass ``length`` body bytes from the client to ``write`` (or drop them) through one reused buffer.

        Raises _ClientGone when the client closes, errs or runs past its deadline first.
        """
        if self.buffer is None:
            self.buffer = memoryview(bytearray(_CHUNK_BYTES))  # no fresh allocation per chunk
        remaining = length
        while remaining > 0:
            try:
                received = self.rfile.readinto(self.buffer[:min(_CHUNK_BYTES, remaining)])
            except OSError:
                raise _ClientGone()
            if not received:
                raise _ClientGone()
            if write is not None:
                write(self.buffer[:received])
            remaining -= received

    def _spool_chunked(self):
        """Read a ``Transfer-Encoding: chunked`` body into a file; ``(file at 0, length)``.

        The file stays in memory up to 64 KiB, then moves to disk. A body over the limit is read
        to its end (up to 64 MiB, then the connection closes) and answered 413.
        """
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY_BYTES)
        try:
            total = self._read_chunks(spool)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool, total

    def _read_chunks(self, spool):
        total = 0
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
            try:  # read in pieces: rfile.read(size) would allocate the size line's bytes at once
                self._copy_from_client(size, spool.write if total <= self.server.max_body_bytes else None)
            except _ClientGone:
                if self.reader.expired:
                    raise TimeoutError("the request's deadline passed")  # answered 408
                self.close_connection = True
                raise _RefusedRequest(400, "malformed chunked body: a chunk is shorter than its size line says")
            if self.rfile.read(2) != b"\r\n":
                self.close_connection = True
                raise _RefusedRequest(400, "malformed chunked body: a chunk does not end where its size line "
                                           "says")
        while not self.close_connection and self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields are dropped
        if total > self.server.max_body_bytes:
            raise _RefusedRequest(413, _too_large(total, self.server.max_body_bytes,
                                                  "more than " if self.close_connection else ""))
        return total

    def _drain_refused_body(self, length=-1):
        """Read and drop the body of a refused request, so the client reads the answer, not a reset."""
        if length == -1:
            declared = self.headers.get("Content-Length", "0").strip(" \t")
            length = int(declared) if _DIGITS.fullmatch(declared) else None  # None: where the body ends is unknown
            if self.headers.get("Transfer-Encoding") is not None:
                length = None
        if length is None or length > _DRAIN_LIMIT_BYTES:
            self.close_connection = True
            return
        try:
            self._copy_from_client(length)
        except _ClientGone:
            self.close_connection = True

    def _discard_until_closed(self, seconds=2.0):
        """After the answer, read and drop what the client still sends until it closes (at most ``seconds``
        and 64 MiB), so that closing does not reset the connection before the client has read the answer."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + seconds
            dropped = 0
            while dropped < _DRAIN_LIMIT_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.connection.settimeout(left)
                data = self.connection.recv(_CHUNK_BYTES)
                if not data:
                    return
                dropped += len(data)
        except OSError:
            pass

    # --- answers -------------------------------------------------------------------------------

    def _send(self, status, reason, headers, body):
        """Write a whole response (status line, headers, body) in one send; a HEAD request's without the body."""
        self.answered = True
        self.connection.settimeout(self.server.request_deadline)  # a client that does not read is let go
        head = ["%s %d %s\r\n" % (self.protocol_version, status, reason or "")]
        head += ["%s: %s\r\n" % (name, value) for name, value in headers]
        head.append("Content-Length: %d\r\n" % len(body))
        if self.close_connection:
            head.append("Connection: close\r\n")
        head.append("\r\n")
        head = "".join(head).encode("latin-1", "replace")
        if self.command == "HEAD":  # RFC 9110 section 9.3.2: the headers a GET would get, no content
            body = b""
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
    """A thread per client connection, at most ``max_connections`` at once, on a listening socket bound by the caller."""

    daemon_threads = True

    def __init__(self, listener, upstream_path, max_body_bytes, upstream_timeout, request_types,
                 max_connections=DEFAULT_MAX_CONNECTIONS, request_deadline=DEFAULT_REQUEST_DEADLINE):
        super().__init__(listener.getsockname(), GateHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_address = listener.getsockname()
        self.upstream_path = upstream_path
        self.request_types = tuple(_media_type(kind) for kind in request_types)
        self.max_body_bytes = max_body_bytes
        self.upstream_timeout = upstream_timeout
        self.max_connections = max_connections
        self.request_deadline = request_deadline
        self.open_connections = 0
        self._count_lock = threading.Lock()

    def process_request(self, request, client_address):
        """Serve the connection in a thread of its own, or answer 503 and close it when at the cap."""
        with self._count_lock:
            admitted = self.open_connections < self.max_connections
            if admitted:
                self.open_connections += 1
        if not admitted:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self):
        with self._count_lock:
            self.open_connections -= 1

    def _refuse(self, request):
        """503 on a connection over the cap, written without waiting (a fresh socket's buffer takes it)."""
        message = ("the endpoint already serves %d connections, its limit: retry, close idle connections, or "
                   "start the endpoint with a larger --max-connections" % self.max_connections)
        body = json.dumps({"error": message, "status": 503}).encode("utf-8")
        head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)).encode("ascii")
        try:
            request.setblocking(False)
            request.send(head + body)
            request.recv(_CHUNK_BYTES)  # drop what the client already sent: closing on unread data resets
        except OSError:
            pass
        self.shutdown_request(request)


def _host_name(host):
    """``'127.0.0.1:8080'`` -> ``'127.0.0.1'``, ``'[::1]:8080'`` -> ``'[::1]'`` (lower case)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.split(":", 1)[0]


def _media_type(header):
    """``'Image/JPEG; q=1'`` -> ``'image/jpeg'``; None or empty -> ''. ``serving.contract.media_type``'s rule
    (that module needs numpy; this script does not): tests check that the two agree."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


def _printable(text, limit=80):
    return repr(text[:limit])[1:-1]


def _too_large(size, limit, qualifier=""):
    # No option raises it: the limit is also multi-model-server's and the handler's (and a SageMaker
    # endpoint takes at most 6,291,456 bytes), so the client's batch is what has to shrink.
    return ("the request body is %s%d bytes, over this endpoint's limit of %d bytes: send fewer or smaller "
            "images per request" % (qualifier, size, limit))


def launch_gate(listener, upstream_path, max_body_bytes, upstream_timeout, log_file, python=sys.executable,
                max_connections=DEFAULT_MAX_CONNECTIONS, request_deadline=DEFAULT_REQUEST_DEADLINE,
                request_types=None):
    """Start the gate as its own process serving ``listener`` (a bound, listening TCP socket).

    ``max_connections`` client connections are served at once (503 beyond); a request's headers
    and body must arrive within ``request_deadline`` seconds of its first byte (408 after).
    ``request_types`` are the Content-Types forwarded on POST /invocations (415 for others);
    None means the handler's own list, ``serving.contract.REQUEST_TYPES``.

    The caller may close its copy of ``listener`` afterwards. Returns the ``subprocess.Popen``;
    the gate runs in a session of its own (SIGTERM ends it at once) and writes errors to ``log_file``.
    """
    if request_types is None:  # imported here: the gate script itself must not import serving/ (numpy)
        from serving.contract import REQUEST_TYPES

        request_types = REQUEST_TYPES
    # A caller started without stdout or stderr (>&-) has its socket on descriptor 1 or 2, which the
    # child's stdout and stderr below would replace: the gate gets a copy numbered 3 or above.
    import fcntl  # here: the gate is POSIX only, and deploy/ must import where there is no fcntl (Windows)

    listen_fd = fcntl.fcntl(listener.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
    try:
        return _start_gate(python, listen_fd, upstream_path, max_body_bytes, upstream_timeout, log_file,
                           max_connections, request_deadline, request_types)
    finally:
        os.close(listen_fd)


def _start_gate(python, listen_fd, upstream_path, max_body_bytes, upstream_timeout, log_file, max_connections,
                request_deadline, request_types):
    command = [python, "-I", str(Path(__file__).resolve()), "--listen-fd", str(listen_fd),
               "--upstream", str(upstream_path), "--max-body-bytes", str(max_body_bytes),
               "--upstream-timeout", str(upstream_timeout), "--max-connections", str(max_connections),
               "--request-deadline", str(request_deadline)]
    for kind in request_types:
        command += ["--request-type", kind]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                            pass_fds=(listen_fd,), start_new_session=True, close_fds=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-fd", type=int, required=True, help="a listening TCP socket inherited from the caller")
    parser.add_argument("--upstream", required=True, help="MMS's inference API, a Unix socket path")
    parser.add_argument("--max-body-bytes", type=int, required=True)
    parser.add_argument("--upstream-timeout", type=float, required=True, help="seconds to wait for MMS's answer")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                        help="client connections served at once; more get 503 (default %(default)s)")
    parser.add_argument("--request-deadline", type=float, default=DEFAULT_REQUEST_DEADLINE,
                        help="seconds from a request's first byte to its body's last (default %(default)s)")
    parser.add_argument("--request-type", action="append", required=True, dest="request_types",
                        help="a Content-Type forwarded on POST /invocations (repeat it); others get 415")
    args = parser.parse_args(argv)
    listener = socket.socket(fileno=args.listen_fd)
    server = GateServer(listener, args.upstream, args.max_body_bytes, args.upstream_timeout,
                        args.request_types, args.max_connections, args.request_deadline)
    server.serve_forever(poll_interval=3600)


if __name__ == "__main__":
    main()
