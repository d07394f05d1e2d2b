"""Stop a local endpoint's processes and remove its files when the process that started it dies, SIGKILL included.

``LocalEndpoint.stop`` ends the gate and multi-model-server (Java frontend and Python workers)
and removes the temporary directory, and SIGTERM or Ctrl-C of ``deploy serve`` run it. A
SIGKILL (``kill -9``, the OOM killer) runs nothing: the gate and MMS, each in a session of its
own, kept answering on the port, and their directory stayed in /tmp. ``PR_SET_PDEATHSIG`` would
reach only the direct children, and MMS's Python launcher dies on a signal without stopping
its Java child, so instead this small process holds the read end of a pipe whose only write
end the endpoint's owner holds: end of file means the owner is gone, and then it signals the
process groups it was given (SIGTERM, SIGKILL after ``--grace`` seconds) and removes the directory.

Standard library only: ``python -I watchdog.py --group PGID ... --remove DIR`` with the pipe on stdin.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["dismiss_watchdog", "launch_watchdog"]


def _alive(group):
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(group, signum):
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_groups(groups, grace):
    """SIGTERM every process group, then SIGKILL the ones still there after ``grace`` seconds."""
    for group in groups:
        _signal(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(group) for group in groups):
        time.sleep(0.1)
    for group in groups:
        _signal(group, signal.SIGKILL)


def launch_watchdog(groups, directory, grace=10.0, python=sys.executable):
    """Start the watchdog for the process ``groups`` (their leaders' pids) and ``directory``.

    Returns the ``subprocess.Popen``; its ``stdin`` is the pipe's write end. When this process
    dies, however it dies, the pipe closes without a word and the watchdog stops the groups,
    removes ``directory`` and exits. ``dismiss_watchdog`` writes a byte first: then it just exits.
    """
    command = [python, "-I", str(Path(__file__).resolve()), "--remove", str(directory), "--grace", str(grace)]
    for group in groups:
        command += ["--group", str(group)]
    # Its own session: a Ctrl-C in the terminal reaches deploy serve, which stops things in order.
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            close_fds=True, start_new_session=True)


def dismiss_watchdog(watchdog, timeout=10.0):
    """Tell the watchdog that its owner stopped everything itself, and wait for it to exit."""
    try:
        watchdog.stdin.write(b"x")
        watchdog.stdin.close()
    except OSError:
        pass
    try:
        watchdog.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, action="append", default=[], help="a process group to stop")
    parser.add_argument("--remove", required=True, help="the directory to remove afterwards")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.stdin.buffer.read(1):  # the owner stopped everything itself and says so: nothing to do
        return
    stop_groups(args.group, args.grace)  # end of file without a word: the owner is gone
    shutil.rmtree(args.remove, ignore_errors=True)


if __name__ == "__main__":
    main()
