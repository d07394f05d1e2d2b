"""LocalEndpoint's own messages, without starting multi-model-server."""

import pytest

from deploy.errors import ServeError
from deploy.local_endpoint import LocalEndpoint, free_port


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
