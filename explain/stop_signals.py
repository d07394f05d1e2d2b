"""SIGTERM and SIGHUP stop a run as Ctrl-C does: an exception unwinds it, cleanup runs, it stays resumable."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator

__all__ = ["STOP_SIGNALS", "WAKE_SECONDS", "RunStopped", "exit_when_parent_exits", "ignore_stop_signals",
           "ignored_from_the_start", "start_resource_tracker", "stop_on_signals"]

logger = logging.getLogger(__name__)

# A stop signal this soon after the first is the same stop (sent to the process, then to its group).
REPEAT_QUIET_SECONDS = 2.0

# The longest a main thread waiting for other threads or processes goes without looking for a stop signal. A
# signal sent to the process may be delivered to any of its threads; Python then runs the handler in the main
# thread only once that thread runs bytecode again, and one blocked in a wait without a timeout never did: a
# --workers worker ignored SIGTERM until it was killed (review 27).
WAKE_SECONDS = 0.5

# What `kill`, `timeout`, systemd, docker stop and a closed terminal send (SIGHUP does not exist on Windows).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class RunStopped(BaseException):
    """Raised in the main thread by a stop signal.

    A BaseException, as KeyboardInterrupt is: no ``except Exception`` on the way swallows it,
    and every ``finally`` (worker processes, temporary folders, connections) runs.
    ``signal_name``: ``SIGTERM``, ``SIGHUP``; ``exit_status``: 128 + the signal's number, as
    a shell reports a process ended by that signal.
    """

    def __init__(self, signal_number: int) -> None:
        self.signal_number = signal_number
        self.signal_name = signal.Signals(signal_number).name
        self.exit_status = 128 + signal_number
        super().__init__(f"stopped by {self.signal_name}")


@contextlib.contextmanager
def stop_on_signals(ctrl_c: bool = False) -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise RunStopped in the main thread; the old handlers after it.

    Only the first signal raises: a later one while the run unwinds is ignored, so that cleanup
    is not cut short (SIGKILL still ends the process). It is said in a warning only when it comes
    REPEAT_QUIET_SECONDS or more after the first: `timeout`, a closed terminal and `kill -- -PGID`
    signal the process and then its whole group, so an immediate repeat is the same stop. With
    ``ctrl_c``, SIGINT is one of them: the first raises KeyboardInterrupt, as Python's own
    handler does, and a second Ctrl-C no longer cuts the cleanup short (it ended a run stopping
    its --workers by SIGINT, exit status -2, not 130). Outside the main thread (where Python
    cannot install handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping: list[float] = []

    def handler(signal_number: int, _frame) -> None:
        if stopping:
            level = logging.WARNING if time.monotonic() - stopping[0] >= REPEAT_QUIET_SECONDS else logging.DEBUG
            logger.log(level, "%s received while stopping; still cleaning up", _signal_text(signal_number))
            return
        stopping.append(time.monotonic())
        if signal_number == signal.SIGINT:
            raise KeyboardInterrupt
        raise RunStopped(signal_number)

    numbers = [number for number in STOP_SIGNALS + ((signal.SIGINT,) if ctrl_c else ())
               if not ignored_from_the_start(number)]
    previous = {number: signal.signal(number, handler) for number in numbers}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def ignored_from_the_start(signal_number: int) -> bool:
    """Whether the process was started with SIGHUP or SIGINT ignored, which the run then leaves ignored.

    ``nohup`` ignores SIGHUP so that a command outlives its terminal, and a shell without job control
    starts a background command with SIGINT ignored (Python itself then installs no KeyboardInterrupt).
    A handler installed over them stopped a nohup'ed run when its terminal closed (review 27). SIGTERM is
    always handled: it is how a run stops its --workers.
    """
    return signal_number != signal.SIGTERM and signal.getsignal(signal_number) == signal.SIG_IGN


def ignore_stop_signals() -> None:
    """Ignore SIGINT, SIGTERM and SIGHUP from now on: for a process that has stopped and only exits.

    Called once a stopped run has unwound (outside stop_on_signals' block, whose handlers are
    gone): a repeated Ctrl-C or the group's copy of a SIGTERM would otherwise end the process by
    that signal while it prints its last line and exits. Main thread only (a no-op elsewhere).
    """
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS + (signal.SIGINT,):
            signal.signal(number, signal.SIG_IGN)


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (if it is not running) with SIGHUP blocked in it.

    The tracker (a process of its own, which worker pools' semaphores register with) ignores SIGINT
    and SIGTERM but not SIGHUP: a closed terminal, which signals the whole process group, ended it, and
    the run's last line came with a "process died unexpectedly" warning and a KeyError traceback per
    semaphore (review 25). A process started with a signal blocked keeps it blocked; the tracker exits
    when its last user closes its pipe, as before. POSIX only (elsewhere the tracker starts as usual).
    """
    from multiprocessing import resource_tracker

    if not (hasattr(signal, "SIGHUP") and hasattr(signal, "pthread_sigmask")):
        resource_tracker.ensure_running()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _signal_text(signal_number: int) -> str:
    return "Ctrl-C" if signal_number == signal.SIGINT else signal.Signals(signal_number).name


@contextlib.contextmanager
def exit_when_parent_exits(parent: int, poll_seconds: float = 0.5) -> Iterator[None]:
    """A worker process sends itself SIGTERM once its parent ``parent`` (a pid) is gone (even by SIGKILL).

    Without it, a worker whose parent died keeps explaining its shard into --out with nobody to
    merge or stop it. The parent's pid is given, not read here: a parent that died while the
    worker was starting is noticed too. Needs ``os.getppid`` to change when the parent dies
    (POSIX); elsewhere a no-op.
    """
    done = threading.Event()

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                logger.warning("the parent process %d is gone; stopping this worker", parent)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            if done.wait(poll_seconds):
                return

    if os.name == "posix":
        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    try:
        yield
    finally:
        done.set()
