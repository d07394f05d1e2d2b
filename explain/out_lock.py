"""One run at a time per manifest in --out: an OS file lock that names its holder and ends with it."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from pathlib import Path

from .errors import OutDirBusyError
from .manifest import OutDirWriteError, manifest_name, open_no_follow, os_reason

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

__all__ = ["OutDirLock", "lock_file_name", "remove_released_locks"]

# Windows locks byte ranges: one byte far beyond the holder's line, so that others can still read it.
_WINDOWS_LOCK_OFFSET = 1 << 20


def lock_file_name(tag: str = "") -> str:
    """``.manifest.jsonl.lock``: the lock of the run that appends to ``manifest_name(tag)``."""
    return f".{manifest_name(tag)}.lock"


class OutDirLock:
    """Held while a run writes into ``out_dir`` under manifest tag ``tag``; a context manager.

    Two runs of one tag (two plain runs, or two of one shard) cannot hold it at once: the
    second raises OutDirBusyError naming the folder and the holder (pid, host, since when).
    Shards and hosts with their own manifest (``--shard``, ``--workers``, a Processing job's
    instances) take their own lock and run side by side, as designed. The lock is the
    operating system's (``flock``; ``msvcrt.locking`` on Windows): a run that dies, even by
    SIGKILL, releases it, and the next run takes the file over.
    """

    def __init__(self, out_dir: str | Path, tag: str = "") -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / lock_file_name(tag)
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            try:
                fd = open_no_follow(self.path, os.O_RDWR | os.O_CREAT)  # not a link's target: it is truncated
            except OSError as error:
                raise OutDirWriteError(f"cannot write into --out {self.out_dir}: {os_reason(error)}"
                                       + (f" (its lock file {self.path.name}, perhaps left by another user's run: remove "
                                          f"it when no run writes into --out)" if self.path.exists() else "")) from None
            try:
                _lock_soon(fd)
            except OSError:
                holder = _holder(fd)
                os.close(fd)
                raise OutDirBusyError(
                    f"{self.out_dir} is in use by another clearsight run ({holder}); wait for it to end or "
                    f"stop it, or choose another --out: two runs must not write one folder at once") from None
            try:  # the holder we waited for may have removed the file it released: lock the current one
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")  # noqa: UP017 - runs on 3.10
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {now}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if fcntl is not None:  # remove it while holding it: a run that opened it meanwhile sees it gone
            self.path.unlink(missing_ok=True)
            os.close(fd)
            return
        os.close(fd)  # Windows cannot remove an open file; closing it releases the lock
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass

    def __enter__(self) -> OutDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def remove_released_locks(out_dir: str | Path) -> list[str]:
    """Delete the lock files in ``out_dir`` that no run holds; returns their names.

    A run killed outright (a SIGKILLed worker of ``--workers 3``) leaves its lock file, which only a
    later run of the same manifest took over: after a resume with other ``--workers`` it stayed for
    good. Each is locked before it is removed, as ``release`` removes its own, so one that a run
    holds (this one's included) stays. Called by a whole run before it starts any shard or worker,
    not by those, which start side by side. POSIX only (Windows cannot remove an open file).
    """
    if fcntl is None:
        return []
    removed = []
    for path in sorted(Path(out_dir).glob(".manifest*.jsonl.lock")):
        try:
            fd = open_no_follow(path, os.O_RDWR)
        except (OSError, OutDirWriteError):  # a link is not one of ours: left alone
            continue
        try:
            _lock(fd)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
                removed.append(path.name)
        except OSError:
            pass  # held by a running run, or removed meanwhile
        finally:
            os.close(fd)
    return removed


def _lock_soon(fd: int, tries: int = 5, pause: float = 0.02) -> None:
    """``_lock``, tried again a few times over ~0.1 s: ``remove_released_locks`` holds a stale lock
    file for the moment it takes to remove it, and a run starting then is not busy."""
    for _ in range(tries - 1):
        try:
            return _lock(fd)
        except OSError:
            time.sleep(pause)
    _lock(fd)


def _lock(fd: int) -> None:
    """Lock ``fd`` without waiting; OSError when another process holds it."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        os.lseek(fd, 0, os.SEEK_SET)


def _holder(fd: int) -> str:
    """The holder's line (``pid 1234 on HOST since TIME``), or what can be said without it."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "its pid is not recorded yet"
