"""Files and folders named for the process that made them, ``<prefix><pid>@<host>-...``, and whether
that process is gone (hosts may share a folder: another host's are never judged)."""

from __future__ import annotations

import os
import re
import socket

__all__ = ["host_name", "owned_prefix", "left_by_a_dead_process", "process_alive"]

_HOST_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")


def host_name() -> str:
    """This machine's name as it appears in such names."""
    return _HOST_CHARACTERS.sub("_", socket.gethostname())[:64] or "host"


def owned_prefix(prefix: str) -> str:
    """``<prefix><pid>@<host>-``: a name made by this process on this host."""
    return f"{prefix}{os.getpid()}@{host_name()}-"


def left_by_a_dead_process(name: str, prefix: str) -> bool:
    """Whether ``name`` (``owned_prefix(prefix)`` + anything) was made on this host by a process that
    no longer runs. Names of other hosts, and older names that carry no host, are never so."""
    if not name.startswith(prefix):
        return False
    owner = name[len(prefix):].rsplit("-", 1)[0]
    pid_text, at, host = owner.partition("@")
    return bool(at) and host == host_name() and pid_text.isdigit() and not process_alive(int(pid_text))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
