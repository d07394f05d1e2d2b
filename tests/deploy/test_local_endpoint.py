"""LocalEndpoint's own messages, without starting multi-model-server."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.errors import ServeError
from deploy.local_endpoint import LocalEndpoint, free_port
from tests.conftest import REPO, network_namespaces_available


@pytest.mark.parametrize("log, shown", [
    ("starting\nWorker died.\n", "The endpoint's log is removed when it stops; its last lines:\nstarting\nWorker died."),
    ("", "The endpoint's log was empty."),
])
def test_a_startup_timeout_suggests_a_longer_one_and_prints_the_log_it_points_at(log, shown, tmp_path):
    """Review 17, F14: the log's folder is gone once the error is shown: the message carries its tail."""
    endpoint = LocalEndpoint(tmp_path, port=free_port(), startup_timeout=0.2)
    endpoint.log_path = tmp_path / "server.log"
    endpoint.log_path.write_text(log)
    endpoint.check_running = lambda: None  # no server processes in this test
    with pytest.raises(ServeError) as raised:
        endpoint._wait_until_ready()
    message = str(raised.value)
    assert message.startswith("the endpoint was not ready after 0 s (last answer: ")
    assert ("); a model can take longer than that to load: raise the startup timeout (deploy serve "
            "--startup-timeout). " + shown) in message
    assert message.endswith(shown)


@pytest.mark.integration  # a subprocess
@pytest.mark.skipif(not network_namespaces_available(), reason="needs unshare -rn (user and network namespaces)")
def test_with_the_loopback_interface_down_the_wait_ends_at_once_and_names_the_cause(tmp_path):
    """Review 26, finding 3: ENETUNREACH on 127.0.0.1 was retried for --startup-timeout, then answered with
    'a model can take longer than that to load: raise the startup timeout'."""
    script = ("from deploy.local_endpoint import LocalEndpoint\n"
              "endpoint = LocalEndpoint(%r, port=8080, startup_timeout=120)\n"
              "endpoint.check_running = lambda: None  # no server processes in this test\n"
              "endpoint._wait_until_ready()\n" % str(tmp_path))
    started = time.monotonic()
    run = subprocess.run(["unshare", "-rn", sys.executable, "-c", script], cwd=str(REPO), capture_output=True,
                         text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (
        "deploy.errors.ServeError: cannot connect to 127.0.0.1 ([Errno 101] Network is unreachable): the loopback "
        "interface is down, as in a new network namespace (unshare -n); bring it up first (ip link set lo up, "
        "or ifconfig lo up)")


@pytest.mark.parametrize("where, message", [
    ("d" * 120, "is too deep for Unix socket names (at most 107 bytes); set TMPDIR to a shorter directory, e.g. /tmp"),
    # review 40, D5: Java failed to bind "acc\u00c3\u00a9/..." and serve said "multi-model-server exited with code 0"
    ("acc\u00e9", "has characters outside ASCII, which multi-model-server's Java cannot use in its socket's name; "
                  "set TMPDIR to another directory, e.g. /tmp"),
])
def test_a_temporary_directory_multi_model_server_cannot_use_is_refused_before_it_starts(
        where, message, tiny_detector_dir, tmp_path, monkeypatch):
    import re
    import shutil
    import tempfile

    temporary = Path(tempfile.mkdtemp(prefix="t", dir="/tmp" if len(where) < 10 else tmp_path)) / where  # short
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    try:
        endpoint = LocalEndpoint(tiny_detector_dir, port=free_port())
        with pytest.raises(ServeError, match="^the temporary directory .* " + re.escape(message) + "$"):
            endpoint.prepare()
        endpoint.stop()
        assert list(temporary.iterdir()) == []  # its own temp folder removed
    finally:
        shutil.rmtree(temporary.parent)
