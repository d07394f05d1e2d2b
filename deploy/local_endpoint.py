"""Run a packaged model on the real SageMaker MXNet serving stack (multi-model-server) on 127.0.0.1.

Everything the server writes (config, logs, Unix sockets, pid file, the extracted model)
lives in one 0700 temporary directory that ``stop()`` removes; it is also MMS's model store.
MMS listens only on Unix sockets in that directory, its inference and management APIs each
on its own. The endpoint's TCP port belongs to the request gate (``deploy/gate.py``), a
process of its own that passes on ``GET /ping`` and ``POST /invocations`` and refuses
everything else. The endpoint counts as ready only after a real inference through the gate
succeeds (MMS's ``/ping`` answers 200 even when the model failed to load); then the
management socket's name is removed, so nothing can reach the management API any more.
"""
import errno
import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from serving.contract import MMS_MAX_REQUEST_BYTES, REQUEST_TYPES

from .errors import ServeError
from .gate import DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_DEADLINE, launch_gate
from .package import extract_archive, read_model_dir, stage_model_dir
from .watchdog import dismiss_watchdog, launch_watchdog

logger = logging.getLogger(__name__)

HANDLER_SERVICE = "sagemaker_mxnet_serving_container.handler_service"
MAX_PORT = 65535
INFERENCE_SOCKET = "inference.sock"
MANAGEMENT_SOCKET = "management.sock"
# Environment variables MMS would read over its config file (enable_envvars_config=true, as in
# the SageMaker container) that would move its APIs or model store out of the temp dir.
CONFINING_SETTINGS_ENV = ("MMS_INFERENCE_ADDRESS", "MMS_MANAGEMENT_ADDRESS", "MMS_MODEL_STORE", "MMS_LOAD_MODELS")
_UNIX_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


def free_port():
    """A TCP port on 127.0.0.1 that was free when asked (tests and scripts pick ports with it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_port_free(port):
    """Raise ServeError when 127.0.0.1:``port`` cannot be listened on now (``deploy serve`` asks before it
    starts anything; ``LocalEndpoint.start`` binds the port itself, and that is what counts)."""
    _listen(port).close()


def check_loopback():
    """Raise ServeError when nothing on 127.0.0.1 can be reached: the endpoint would never answer (``deploy serve``
    asks before it starts anything, as ``LocalEndpoint.start`` does).

    In a new network namespace (``unshare -rn``) the loopback interface is down: listening on
    127.0.0.1 works, connecting gets ENETUNREACH ("Network is unreachable").
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        probe.settimeout(5)
        try:
            probe.connect(listener.getsockname())
        except OSError as error:
            raise ServeError(_unreachable_message(error)) from None


def _unreachable_message(error):
    reason = "[Errno %d] %s" % (error.errno, error.strerror) if error.errno else str(error)
    if error.errno == errno.ENETUNREACH:
        return ("cannot connect to 127.0.0.1 (%s): the loopback interface is down, as in a new network namespace "
                "(unshare -n); bring it up first (ip link set lo up, or ifconfig lo up)" % reason)
    return "cannot connect to 127.0.0.1 (%s), where the endpoint answers" % reason


def _listen(port):
    """A TCP socket listening on 127.0.0.1:``port`` (any free port when 0), for the gate to serve."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as error:
        listener.close()
        raise ServeError("cannot listen on 127.0.0.1:%d (%s); pick another port with --port"
                         % (port, error.strerror or error))
    listener.listen(128)
    return listener


def _mms_properties(inference_socket, management_socket, workers, timeout_seconds, max_request_bytes):
    """The MMS config the toolkit would write, with both APIs on Unix sockets instead of 0.0.0.0:8080."""
    from sagemaker_inference import model_server
    from sagemaker_inference.environment import Environment

    base = model_server._generate_mms_config_properties(Environment(), HANDLER_SERVICE)
    overrides = {
        "inference_address": "unix:%s" % inference_socket,
        "management_address": "unix:%s" % management_socket,
        "use_native_io": "true",  # MMS accepts unix: addresses only with native (epoll) I/O
        "default_workers_per_model": workers,
        "max_request_size": max_request_bytes,
        "max_response_size": max_request_bytes,
        "default_response_timeout_seconds": timeout_seconds,
    }
    kept = [line for line in base.splitlines() if line.split("=", 1)[0].strip() not in overrides]
    return "\n".join(kept + ["%s=%s" % item for item in overrides.items()]) + "\n"


def check_model_folder(model: Path) -> None:
    """Raise ServeError for a folder that is no model (neither code/inference.py nor a model.json), and
    read_model_dir's error for an exported model's folder whose model.json or files are wrong: before
    anything starts, as serve checks it, and when the model is staged. An archive is checked when it is
    extracted."""
    model = Path(model)
    if not model.is_dir() or (model / "code" / "inference.py").is_file():
        return
    if not (model / "model.json").is_file():
        raise ServeError("%s has neither code/inference.py nor a model.json; build a model with "
                         "`clearsight deploy package`" % model)
    read_model_dir(model)


class LocalEndpoint(object):
    """The embedded default endpoint: ``with LocalEndpoint("model.tar.gz") as endpoint: endpoint.url``.

    Args:
        model: a ``model.tar.gz``, a directory holding ``model.json``, weights and ``code/``, or
            an exported model directory with a ``model.json`` (served with this project's handler).
        port: TCP port on 127.0.0.1 (1..65535) where the gate answers; a free one when None.
        workers: MMS worker processes, each with its own copy of the model.
        threads: OpenMP threads per worker (OMP_NUM_THREADS); by default
            the cores divided among the workers. The SageMaker container uses 1 unless told.
        startup_timeout: seconds to wait for the first successful inference.
        request_timeout: seconds MMS gives one request (``default_response_timeout_seconds``).
        max_request_bytes: the largest request body; bigger ones get 413 from the gate.
        max_connections: client connections the gate serves at once; more get 503.
        request_deadline: seconds from a request's first byte to its body's last; later gets 408.
        env: extra environment variables for the server (e.g. ``SERVING_MAX_BATCH_SIZE``).
        python: the interpreter that runs multi-model-server and so its workers (it needs
            multi-model-server and sagemaker-mxnet-inference installed); this one by default.
            The tests run the SageMaker container's Python 3.8 this way.
    """

    def __init__(self, model, port=None, workers=1, threads=None, startup_timeout=180.0,
                 request_timeout=60, max_request_bytes=MMS_MAX_REQUEST_BYTES, env=None, python=None,
                 max_connections=DEFAULT_MAX_CONNECTIONS, request_deadline=DEFAULT_REQUEST_DEADLINE):
        self.model = Path(model)
        if not self.model.exists():
            raise ServeError("%s does not exist" % self.model)
        if port is not None and not 1 <= port <= MAX_PORT:
            raise ServeError("port must be in 1..%d, got %d" % (MAX_PORT, port))
        if workers < 1:
            raise ServeError("workers must be >= 1, got %d" % workers)
        if max_connections < 1:
            raise ServeError("max_connections must be >= 1, got %d" % max_connections)
        if not request_deadline > 0:
            raise ServeError("request_deadline must be > 0 seconds, got %r" % request_deadline)
        self.port = port
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.startup_timeout = startup_timeout
        self.request_timeout = request_timeout
        self.max_request_bytes = max_request_bytes
        self.max_connections = max_connections
        self.request_deadline = request_deadline
        self.extra_env = dict(env or {})
        self.python = str(python or sys.executable)
        self.scratch = None
        self.model_dir = None  # the staged model, inside scratch (prepare())
        self.process = None  # multi-model-server (its Java frontend and Python workers)
        self.gate = None  # the request gate, the only process listening on a TCP port
        self.watchdog = None  # ends both when this process dies without stop() (deploy/watchdog.py)
        self.log_path = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        """Start MMS and the gate, block until a real inference through the gate succeeds."""
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise ServeError("java not found: multi-model-server needs a Java runtime "
                             "(apt-get install openjdk-17-jre-headless, or `make java` in a clearsight checkout)")
        check_loopback()  # before anything starts: else it would wait --startup-timeout for answers that cannot come
        listener = _listen(self.port or 0)
        self.port = listener.getsockname()[1]
        try:
            model_dir = self.prepare()
            self._launch(model_dir)
            self._launch_gate(listener)
            listener.close()  # the gate holds it now
            # stops the gate and MMS and removes the temp dir should this process die without stop()
            self.watchdog = launch_watchdog([self.process.pid, self.gate.pid], self.scratch)
            self._wait_until_ready()
            self._close_management()
        except BaseException:
            listener.close()
            self.stop()
            raise
        logger.info("endpoint ready at %s (model %s, %d worker(s) x %d thread(s))",
                    self.url, self.model, self.workers, self.threads)
        return self

    def prepare(self):
        """Make the temp dir and stage the model in it (extracted, staged or linked); returns the staged
        model's folder. A model that cannot be served (a broken archive, one without code/inference.py)
        fails here, before any server process starts; ``start`` calls it unless it was called before,
        ``stop`` removes the temp dir either way."""
        if self.model_dir is None:
            if self.scratch is None:
                self.scratch = Path(tempfile.mkdtemp(prefix="clearsight-serve-"))  # mode 0700
            _check_socket_path_length(self.scratch / "tmp" / ".mms.sock.65535")
            self.model_dir = self._stage_model()
        return self.model_dir

    def _stage_model(self):
        """The model directory, inside the temp dir (MMS's model store): extracted, staged or linked."""
        if self.model.is_dir() and (self.model / "code" / "inference.py").is_file():
            model_dir = self.scratch / "model"
            model_dir.symlink_to(self.model.resolve(), target_is_directory=True)
            return model_dir
        if self.model.is_dir() and (self.model / "model.json").is_file():
            # An exported model without code/ (e.g. models/shapes-detector): serve it with this
            # project's handler, staged exactly as `deploy package` would pack it.
            spec = read_model_dir(self.model)
            model_dir = self.scratch / "model"
            model_dir.mkdir()
            stage_model_dir(model_dir, self.model / spec.symbol_file, self.model / spec.params_file, spec)
            return model_dir
        check_model_folder(self.model)
        model_dir = extract_archive(self.model, self.scratch / "model")
        if not (model_dir / "code" / "inference.py").is_file():
            raise ServeError("%s has no code/inference.py; build it with `clearsight deploy package`" % self.model)
        return model_dir

    def _launch(self, model_dir):
        logs = self.scratch / "logs"
        tmp = self.scratch / "tmp"
        logs.mkdir()
        tmp.mkdir()
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": os.pathsep.join([str(model_dir / "code")] + [p for p in [env.get("PYTHONPATH")] if p]),
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(self.workers),
            # Threads inside each operator (OpenMP); one operator at a time per worker, as
            # mxnet does in-process by default: more engine threads oversubscribe the cores.
            "OMP_NUM_THREADS": str(self.threads),
            "MXNET_CPU_WORKER_NTHREADS": "1",
            "LOG_LOCATION": str(logs),
            "METRICS_LOCATION": str(logs),
            # MMS puts its pid file and worker sockets in the temp dir: keep them in ours.
            "TEMP": str(tmp),
            "TMPDIR": str(tmp),
        })
        env.update(self.extra_env)
        for name in CONFINING_SETTINGS_ENV:
            env.pop(name, None)
        config = self.scratch / "config.properties"
        config.write_text(_mms_properties(self.scratch / INFERENCE_SOCKET, self.scratch / MANAGEMENT_SOCKET,
                                          self.workers, self.request_timeout, self.max_request_bytes))
        self.log_path = self.scratch / "server.log"
        # The model store is the temp dir, and the model its "model" entry.
        command = [
            self.python, "-m", "mms.model_server", "--start", "--foreground",
            "--model-store", str(self.scratch), "--mms-config", str(config),
            "--log-config", str(_log_config(self.scratch)), "--models", "model=%s" % model_dir.name,
        ]
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(command, cwd=str(self.scratch), env=env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        finally:
            log.close()

    def _launch_gate(self, listener):
        # The gate waits for MMS's answer a little longer than MMS waits for its worker.
        with open(self.scratch / "gate.log", "wb") as gate_log:
            self.gate = launch_gate(listener, self.scratch / INFERENCE_SOCKET, self.max_request_bytes,
                                    self.request_timeout + 30, gate_log, max_connections=self.max_connections,
                                    request_deadline=self.request_deadline, request_types=REQUEST_TYPES)

    def check_running(self):
        """Raise ServeError when multi-model-server or the gate has exited."""
        if self.process is None or self.process.poll() is not None:
            raise ServeError("multi-model-server exited%s:\n%s" % (
                "" if self.process is None else " with code %d" % self.process.returncode, self.log_tail()))
        if self.gate is None or self.gate.poll() is not None:
            raise ServeError("the request gate exited:\n%s" % _tail(self.scratch and self.scratch / "gate.log"))

    def _close_management(self):
        """Remove the management socket's name once MMS has bound it: no one can connect to it after that."""
        management = self.scratch / MANAGEMENT_SOCKET
        deadline = time.time() + self.startup_timeout
        while not management.exists():
            self.check_running()
            if time.time() > deadline:
                raise ServeError("multi-model-server never bound its management socket %s:\n%s"
                                 % (management, self.log_tail()))
            time.sleep(0.05)
        management.unlink()

    def _wait_until_ready(self):
        import requests

        side = 32
        buffer = io.BytesIO()
        np.save(buffer, np.full((1, side, side, 3), 128, dtype=np.uint8))
        body = buffer.getvalue()
        deadline = time.time() + self.startup_timeout
        last = "no answer yet"
        while time.time() < deadline:
            self.check_running()
            try:
                response = requests.post(self.url + "/invocations", data=body, timeout=30,
                                         headers={"Content-Type": "application/x-npy", "Accept": "application/json"})
            except requests.RequestException as error:
                unreachable = _os_error_within(error, errno.ENETUNREACH)
                if unreachable is not None:  # the loopback interface went down: no answer will ever come
                    raise ServeError(_unreachable_message(unreachable)) from None
                last = str(error)
            else:
                if response.status_code == 200:
                    return
                last = "HTTP %d: %s" % (response.status_code, response.text[:300])
                # The toolkit loads the model on the first request and answers 500 when model_fn
                # fails (503 only means no worker is free yet): no point waiting any longer.
                if response.status_code == 500 or "Failed to load model" in self.log_tail(400):
                    raise ServeError("the model failed to load:\n%s" % _error_lines(response.text))
            time.sleep(0.5)
        tail = self.log_tail()
        raise ServeError("the endpoint was not ready after %.0f s (last answer: %s); a model can take longer than "
                         "that to load: raise the startup timeout (deploy serve --startup-timeout). %s"
                         % (self.startup_timeout, last, "The endpoint's log is removed when it stops; its last lines:\n"
                            + tail if tail else "The endpoint's log was empty."))

    def log_tail(self, lines=30):
        """The last lines of the server's log (for error messages)."""
        return _tail(self.log_path, lines)

    def stop(self, grace=10.0):
        """Stop the gate, the Java frontend and every worker (SIGTERM, then SIGKILL), and remove the temp dir."""
        running = [process for process in (self.gate, self.process) if process is not None]
        for process in running:  # the gate first: no request gets in while MMS stops
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            # Workers busy on a long request ignore SIGTERM: make sure the whole group is gone.
            _signal_group(process.pid, signal.SIGKILL)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                logger.warning("process %d (%s) did not exit after SIGKILL", process.pid, process.args[0])
        self.gate = self.process = None
        if self.scratch is not None:
            shutil.rmtree(str(self.scratch), ignore_errors=True)
            self.scratch = None
            self.model_dir = None
        if self.watchdog is not None:
            dismiss_watchdog(self.watchdog)
            self.watchdog = None


# SageMaker's log4j2 config sends everything MMS logs at INFO (three lines per request: the access
# log, the backend time, the worker's own line) to stdout as well as to its rolling files (10 MB
# each): our server.log, MMS's stdout, grew by 0.35-1.7 KB per request with no bound. Its console
# appender is given a WARN threshold: errors and worker failures still reach server.log (its tail
# goes into error messages); the INFO lines stay in logs/*.log, which roll over.
_CONSOLE_APPENDER_END = "</Console>"
_CONSOLE_THRESHOLD = '    <ThresholdFilter level="WARN" onMatch="ACCEPT" onMismatch="DENY"/>\n        </Console>'


def _log_config(scratch):
    """The toolkit's log4j2 config with a WARN threshold on the console (server.log); the toolkit's own file
    when its console appender cannot be found."""
    from sagemaker_inference import model_server

    source = Path(model_server.DEFAULT_MMS_LOG_FILE)
    text = source.read_text()
    if text.count(_CONSOLE_APPENDER_END) != 1:
        return source
    target = Path(scratch) / "log4j2.xml"
    target.write_text(text.replace(_CONSOLE_APPENDER_END, _CONSOLE_THRESHOLD))
    return target


def _os_error_within(error, number):
    """The OSError with errno ``number`` that ``error`` (a requests exception) wraps, or None.

    requests wraps urllib3's MaxRetryError (``.reason``), which wraps NewConnectionError, raised from the OSError.
    """
    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == number:
            return current
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        pending.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return None


def _error_lines(text, keep=12):
    """The message and the innermost frames of a toolkit error body (message + Python traceback)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) <= keep:
        return "\n".join(lines)
    return "\n".join(lines[:2] + ["..."] + lines[-(keep - 2):])


def _tail(path, lines=30):
    if path is None or not Path(path).exists():
        return ""
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def _check_socket_path_length(path):
    if len(os.fsencode(str(path))) > _UNIX_SOCKET_PATH_MAX:
        raise ServeError("the temporary directory %s is too deep for Unix socket names (at most %d bytes); "
                         "set TMPDIR to a shorter directory, e.g. /tmp" % (path.parent.parent, _UNIX_SOCKET_PATH_MAX))
    try:
        str(path).encode("ascii")
    except UnicodeEncodeError:  # Java (multi-model-server) could not bind its socket there ("Failed to bind")
        raise ServeError("the temporary directory %s has characters outside ASCII, which multi-model-server's "
                         "Java cannot use in its socket's name; set TMPDIR to another directory, e.g. /tmp"
                         % ascii(str(path.parent.parent))[1:-1]) from None


def _signal_group(pid, signum):
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
