"""Shared fixtures: tiny exported models, their archives, and a real local endpoint serving one.

Tests that start servers or processes are marked ``integration`` here, from the fixtures they
use (``PROCESS_FIXTURES``, directly or through other fixtures), so ``make test-fast``
(``pytest -m "not integration"``) runs without Java, moto or subprocesses. A test that starts
one without such a fixture carries ``@pytest.mark.integration`` itself.
"""
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.tiny_models import export_tiny_model

REPO = Path(__file__).resolve().parent.parent

# A test run started in the background by a non-interactive shell (`make test &`, nohup) inherits
# SIGINT ignored, and so would every server it starts: the Ctrl-C tests (rollback on an
# interrupted call, `deploy serve` stopping on SIGINT) would then test nothing and fail. Give
# this process Python's own handler back; processes it starts get the default disposition.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def default_hangup():
    """``preexec_fn`` of a process a test sends SIGHUP: it starts with SIGHUP's default disposition, as from a
    terminal. Under ``nohup make test`` it would inherit SIGHUP ignored, which explain and deploy serve leave
    ignored (a nohup'ed run outlives its terminal), and the test would test nothing."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


# fixtures that start a process or a server: multi-model-server (Java), a moto server, the
# packaging check (a fresh interpreter running the packed code)
PROCESS_FIXTURES = frozenset({"detector_endpoint", "own_detector_endpoint", "tiny_detector_archive",
                              "moto_url", "sigkill_endpoint"})


def pytest_collection_modifyitems(config, items):
    """Mark every test that uses a PROCESS_FIXTURES fixture (directly or not) as integration."""
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _utf8_encodable(value):
    """``value`` with every string that UTF-8 cannot encode (a lone surrogate: a file name's byte that is not
    UTF-8, as Python decodes it) backslash-escaped, in dicts, lists and tuples too."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_utf8_encodable(key): _utf8_encodable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_utf8_encodable(item) for item in value)
    return value


@pytest.hookimpl(hookwrapper=True)
def pytest_report_to_serializable(config, report):
    """pytest-xdist (make test's -n) sends each report to the main process as UTF-8: a test whose captured log
    names a file that is not UTF-8 (tests/explain/test_report.py) stopped the whole session with an internal
    error. Such strings are sent escaped; the test's outcome is unchanged."""
    outcome = yield
    data = outcome.get_result()
    if data is not None:
        outcome.force_result(_utf8_encodable(data))


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def random_images(count, height, width, seed=0):
    """``(count, height, width, 3)`` uint8 noise images."""
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def tiny_detector_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("tiny-detector"), "detection")


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("tiny-classifier"), "classification")


@pytest.fixture(scope="session")
def tiny_detector_archive(tiny_detector_dir, tmp_path_factory):
    from deploy.package import package_model_dir

    return package_model_dir(tiny_detector_dir, tmp_path_factory.mktemp("archive") / "model.tar.gz").archive


class ServeProcess:
    """``python -m deploy serve`` in a subprocess, as a user would run it."""

    def __init__(self, model, port, extra_args=(), env=None):
        from deploy.local_endpoint import free_port

        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploy", "serve", "--model", str(model), "--port", str(self.port), *extra_args],
            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONPATH=str(REPO), **(env or {})),
        )
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            self.process.kill()
            raise RuntimeError("deploy serve did not start: %s %s" % (line, self.process.stderr.read()))

    def post(self, body, content_type="application/x-npy", accept="application/json", headers=None):
        all_headers = {"Content-Type": content_type, "Accept": accept}
        all_headers.update(headers or {})
        return requests.post(self.url + "/invocations", data=body, headers=all_headers, timeout=60)

    def stop(self, timeout=30):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="session")
def detector_endpoint(tiny_detector_archive):
    server = ServeProcess(tiny_detector_archive, None)
    yield server
    server.stop()


def network_namespaces_available():
    """Whether this user may make a network namespace (``unshare -rn``), where loopback starts down."""
    import shutil

    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-rn", "true"]).returncode == 0


def wait_for(condition, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False
