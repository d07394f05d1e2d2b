"""Ctrl-C, SIGTERM and SIGHUP stop ``deploy serve`` in any phase: an exception unwinds it and its cleanup runs.

The same stop as ``explain/stop_signals.py`` gives explain runs (deploy does not import explain).
"""
import contextlib
import logging
import signal

__all__ = ["STOP_SIGNALS", "Stopped", "ignore_stop_signals", "stop_on_signals"]

logger = logging.getLogger(__name__)

# What Ctrl-C, `kill`, `timeout`, systemd, docker stop and a closed terminal send (no SIGHUP on Windows).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(BaseException):
    """Raised in the main thread by the first stop signal, wherever it is (as Ctrl-C's KeyboardInterrupt is).

    A BaseException: no ``except Exception`` on the way swallows it, and every ``finally`` runs
    (``LocalEndpoint.start`` stops the processes and removes the files it had made so far).
    """

    def __init__(self, signal_number):
        self.signal_number = signal_number
        super().__init__("stopped by %s" % signal.Signals(signal_number).name)


class StopRequests(object):
    """The signal handler: the first stop signal raises Stopped; later ones, and any after ``ignore_more()``, do not."""

    def __init__(self):
        self.stopping = False

    def ignore_more(self):
        """From now on the process is stopping anyway: a signal must not cut its cleanup short."""
        self.stopping = True

    def __call__(self, signal_number, frame):
        if self.stopping:
            logger.debug("%s received while stopping; still cleaning up", signal.Signals(signal_number).name)
            return
        self.stopping = True
        raise Stopped(signal_number)


@contextlib.contextmanager
def stop_on_signals():
    """Within the block, STOP_SIGNALS raise Stopped (the first of them only); the old handlers after it.

    Yields the StopRequests handler. Main thread only, where Python runs signal handlers.
    """
    handler = StopRequests()
    # SIGHUP and SIGINT ignored when the process started (nohup, a background job of a script) stay ignored: a
    # handler over nohup's stopped a server when its terminal closed (review 27)
    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS
                if number == signal.SIGTERM or signal.getsignal(number) != signal.SIG_IGN}
    try:
        yield handler
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def ignore_stop_signals():
    """Ignore STOP_SIGNALS from now on: for a process that has stopped and cleaned up, and only exits.

    The group's copy of a SIGTERM (`timeout`, `kill -- -PGID`) or a second Ctrl-C would otherwise
    turn its exit status into death by that signal.
    """
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
