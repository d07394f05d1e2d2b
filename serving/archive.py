"""Reproducible archives and their safe extraction (model.tar.gz, the Processing job's wheelhouse).

One set of writers for every archive the project makes: sorted entries, zero mtimes, root owner,
fixed modes and a gzip header without name or time, so the same content always gives the same
bytes (and the same sha256). One reader for the archives it runs: members with absolute paths, ``..``
or links are refused before anything is written. Standard library only, Python 3.8 syntax: it
lives in serving/ so that deploy/ (writes model.tar.gz), explain/ (runs one in-process) and the
scale-out job (ships its wheelhouse) share it without importing each other.
"""
import errno
import gzip
import io
import os
import tarfile
from pathlib import Path

from .errors import ServingError

__all__ = ["ArchiveError", "directory_entries", "tar_gz_bytes", "write_tar_gz", "write_tar", "extract_tar_gz"]


class ArchiveError(ServingError):
    """An archive cannot be read, or holds an entry that would land outside its folder."""


def directory_entries(root):
    """Every file and folder under ``root``, sorted: a list of ``(relative posix name, bytes or None)``.

    None marks a folder. The order is the sorted order of the paths, so it does not depend on
    the file system.
    """
    root = Path(root)
    entries = []
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        entries.append((name, None if path.is_dir() else path.read_bytes()))
    return entries


def tar_gz_bytes(entries):
    """gzip-compressed PAX tar of ``entries`` (``(name, bytes)`` files, ``(name, None)`` folders), in order.

    Every member has mtime 0, owner root:root (uid/gid 0), mode 0o644 (files) or 0o755
    (folders); the gzip header has no file name and mtime 0.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            if data is None:
                info = _member(name, 0)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                tar.addfile(_member(name, len(data)), io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, filename="") as stream:
        stream.write(raw.getvalue())
    return compressed.getvalue()


def _member(name, size):
    """A file member with the fixed metadata: mtime 0, root:root, mode 0o644."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid, info.gid, info.uname, info.gname = 0, 0, "root", "root"
    return info


def write_tar(path, folder, names):
    """An uncompressed PAX tar at ``path`` of the files ``names`` in ``folder``, sorted, each
    streamed from disk (for archives too large to hold in memory, e.g. a wheelhouse)."""
    folder = Path(folder)
    with tarfile.open(str(path), mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(names):
            with open(str(folder / name), "rb") as stream:
                archive.addfile(_member(name, (folder / name).stat().st_size), stream)


def write_tar_gz(entries, archive):
    """Write ``tar_gz_bytes(entries)`` to ``archive`` through ``<archive>.partial`` and os.replace."""
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    partial.write_bytes(tar_gz_bytes(entries))
    os.replace(str(partial), str(archive))
    return archive


_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})  # writing the extracted files failed for want of room


def extract_tar_gz(archive, target_dir):
    """Extract a tar.gz into ``target_dir`` after checking every member; returns the resolved folder.

    Raises ArchiveError for an unreadable archive or a member with an absolute path, ``..``,
    a (sym)link or a special file (FIFO, device), naming the archive and the member.
    """
    target = Path(target_dir).resolve()
    try:
        with tarfile.open(str(archive), "r:gz") as tar:
            for member in tar.getmembers():
                destination = (target / member.name).resolve()
                # inside the folder, not only named like it: '../out2/x' of folder 'out' starts with '.../out'
                inside = destination == target or target in destination.parents
                # files and folders only: a FIFO (a model.json that hangs loading) or a device node is no model
                # file, and a Python without the tar data filter (3.8 before 3.8.17) creates them
                if not inside or not (member.isfile() or member.isdir()):
                    raise ArchiveError("%s holds an unsafe entry %r" % (archive, member.name))
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12: refuse the same again
                tar.extractall(str(target), filter="data")
            else:
                tar.extractall(str(target))
    except (tarfile.TarError, OSError, EOFError) as error:
        if getattr(error, "errno", None) in _NO_ROOM:  # the disk is full, not the archive broken (review 40, D6)
            raise ArchiveError("cannot extract %s into %s: %s; free some space there, or set TMPDIR to a folder "
                               "with room" % (archive, target, error.strerror or error))
        raise ArchiveError("%s is not a readable model.tar.gz (%s)" % (archive, error))
    return target
