"""Run a packaged model on the real SageMaker MXNet serving stack (multi-model-server) on 127.0.0.1.

Everything the server writes (config, logs, Unix sockets, pid file, the extracted model)
lives in one temporary directory that ``stop()`` removes. The endpoint counts as ready only
after a real inference succeeds: MMS's ``/ping`` answers 200 even when the model failed to load.
"""
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

from .errors import ServeError
from .package import extract_archive

logger = logging.getLogger(__name__)

HANDLER_SERVICE = "sagemaker_mxnet_serving_container.handler_service"
MAX_MMS_PORT = 32767  # multi-model-server 1.1.11 refuses higher ports ("Invalid port number")


def free_port():
    """A free TCP port on 127.0.0.1 that MMS accepts (<= 32767)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port <= MAX_MMS_PORT:
            return port
        candidate = 20000 + port % 12000
        if _port_is_free(candidate):
            return candidate
    raise ServeError("found no free port below %d on 127.0.0.1" % MAX_MMS_PORT)


def _port_is_free(port):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _mms_properties(port, workers, timeout_seconds, max_request_bytes):
    """The MMS config the toolkit would write, bound to 127.0.0.1 instead of 0.0.0.0."""
    from sagemaker_inference import model_server
    from sagemaker_inference.environment import Environment

    base = model_server._generate_mms_config_properties(Environment(), HANDLER_SERVICE)
    address = "http://127.0.0.1:%d" % port
    overrides = {
        "inference_address": address,
        "management_address": address,
        "default_workers_per_model": workers,
        "max_request_size": max_request_bytes,
        "max_response_size": max_request_bytes,
        "default_response_timeout_seconds": timeout_seconds,
    }
    kept = [line for line in base.splitlines() if line.split("=", 1)[0].strip() not in overrides]
    return "\n".join(kept + ["%s=%s" % item for item in overrides.items()]) + "\n"


class LocalEndpoint(object):
    """The embedded default endpoint: ``with LocalEndpoint("model.tar.gz") as endpoint: endpoint.url``.

    Args:
        model: a ``model.tar.gz``, a directory holding ``model.json``, weights and ``code/``, or
            an exported model directory with a ``model.json`` (served with this project's handler).
        port: TCP port on 127.0.0.1 (1..32767); a free one when None.
        workers: MMS worker processes, each with its own copy of the model.
        threads: OpenMP threads per worker (OMP_NUM_THREADS); by default
            the cores divided among the workers. The SageMaker container uses 1 unless told.
        startup_timeout: seconds to wait for the first successful inference.
        env: extra environment variables for the server (e.g. ``SERVING_MAX_BATCH_SIZE``).
        python: the interpreter that runs multi-model-server and so its workers (it needs
            multi-model-server and sagemaker-mxnet-inference installed); this one by default.
            The tests run the SageMaker container's Python 3.8 this way.
    """

    def __init__(self, model, port=None, workers=1, threads=None, startup_timeout=180.0,
                 request_timeout=60, max_request_bytes=6553500, env=None, python=None):
        self.model = Path(model)
        if not self.model.exists():
            raise ServeError("%s does not exist" % self.model)
        if port is not None and not 1 <= port <= MAX_MMS_PORT:
            raise ServeError("port must be in 1..%d (multi-model-server refuses higher ports), got %d"
                             % (MAX_MMS_PORT, port))
        if workers < 1:
            raise ServeError("workers must be >= 1, got %d" % workers)
        self.port = port
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.startup_timeout = startup_timeout
        self.request_timeout = request_timeout
        self.max_request_bytes = max_request_bytes
        self.extra_env = dict(env or {})
        self.python = str(python or sys.executable)
        self.scratch = None
        self.process = None
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
        """Start MMS and block until a real inference succeeds."""
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise ServeError("java not found: multi-model-server needs a Java runtime "
                             "(apt-get install openjdk-17-jre-headless, or `make java`)")
        self.port = self.port or free_port()
        if not _port_is_free(self.port):
            raise ServeError("port %d on 127.0.0.1 is already in use; pick another with --port" % self.port)
        self.scratch = Path(tempfile.mkdtemp(prefix="clearsight-serve-"))
        try:
            model_dir = self._stage_model()
            self._launch(model_dir)
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        logger.info("endpoint ready at %s (model %s, %d worker(s) x %d thread(s))",
                    self.url, self.model, self.workers, self.threads)
        return self

    def _stage_model(self):
        if self.model.is_dir() and (self.model / "code" / "inference.py").is_file():
            return self.model.resolve()
        if self.model.is_dir() and (self.model / "model.json").is_file():
            # An exported model without code/ (e.g. models/shapes-detector): serve it with this
            # project's handler, staged exactly as `deploy package` would pack it.
            from serving.model_spec import load_model_spec

            from .package import stage_model_dir

            spec = load_model_spec(str(self.model))
            model_dir = self.scratch / "model"
            model_dir.mkdir()
            stage_model_dir(model_dir, self.model / spec.symbol_file, self.model / spec.params_file, spec)
            return model_dir
        if self.model.is_dir():
            raise ServeError("%s has neither code/inference.py nor a model.json; build a model with "
                             "`python -m deploy package`" % self.model)
        model_dir = extract_archive(self.model, self.scratch / "model")
        if not (model_dir / "code" / "inference.py").is_file():
            raise ServeError("%s has no code/inference.py; build it with `python -m deploy package`" % self.model)
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
        config = self.scratch / "config.properties"
        config.write_text(_mms_properties(self.port, self.workers, self.request_timeout, self.max_request_bytes))
        from sagemaker_inference import model_server

        self.log_path = self.scratch / "server.log"
        command = [
            self.python, "-m", "mms.model_server", "--start", "--foreground",
            "--model-store", "/", "--mms-config", str(config),
            "--log-config", model_server.DEFAULT_MMS_LOG_FILE, "--models", "model=%s" % model_dir,
        ]
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(command, cwd=str(self.scratch), env=env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        finally:
            log.close()

    def _wait_until_ready(self):
        import requests

        side = 32
        buffer = io.BytesIO()
        np.save(buffer, np.full((1, side, side, 3), 128, dtype=np.uint8))
        body = buffer.getvalue()
        deadline = time.time() + self.startup_timeout
        last = "no answer yet"
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise ServeError("multi-model-server exited with code %d before it was ready:\n%s"
                                 % (self.process.returncode, self.log_tail()))
            try:
                response = requests.post(self.url + "/invocations", data=body, timeout=30,
                                         headers={"Content-Type": "application/x-npy", "Accept": "application/json"})
            except requests.RequestException as error:
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
        raise ServeError("the endpoint was not ready after %.0f s (last answer: %s):\n%s"
                         % (self.startup_timeout, last, self.log_tail()))

    def log_tail(self, lines=30):
        """The last lines of the server's log (for error messages)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, grace=10.0):
        """Stop the Java frontend and every worker (SIGTERM, then SIGKILL), and remove the temp dir."""
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        if self.process is not None:
            # Workers busy on a long request ignore SIGTERM: make sure the whole group is gone.
            _signal_group(self.process.pid, signal.SIGKILL)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                logger.warning("multi-model-server (pid %d) did not exit after SIGKILL", self.process.pid)
            self.process = None
        if self.scratch is not None:
            shutil.rmtree(str(self.scratch), ignore_errors=True)
            self.scratch = None


def _error_lines(text, keep=12):
    """The message and the innermost frames of a toolkit error body (message + Python traceback)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) <= keep:
        return "\n".join(lines)
    return "\n".join(lines[:2] + ["..."] + lines[-(keep - 2):])


def _signal_group(pid, signum):
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
