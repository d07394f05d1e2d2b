"""What a run owns in --out: the folder's marker, the manifest (one JSON line per image), atomic writes.

A run writes and deletes only what it made: ``claim_out_dir`` marks a folder as a clearsight
output folder on first use and refuses a non-empty folder without the mark; ``--restart``
deletes only the files the manifests list.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from .baselines import baseline_file_bytes
from .config import REQUEST_SETTINGS, detection_custom_attributes, plain_number
from .errors import ConfigError, ExplainError

__all__ = [
    "MANIFEST_GLOB",
    "OUT_MARKER",
    "RUN_FILES",
    "ManifestWriter",
    "OutDirWriteError",
    "SettingsChangedError",
    "atomic_write_bytes",
    "check_settings",
    "claim_out_dir",
    "explained_entries",
    "failed_entries",
    "is_output_mark",
    "latest_entries",
    "manifest_name",
    "manifest_run",
    "os_reason",
    "read_manifests",
    "remove_run_files",
    "run_manifest_tag",
    "settings_digest",
    "sha256_bytes",
]

logger = logging.getLogger(__name__)

MANIFEST_GLOB = "manifest*.jsonl"
MANIFEST_VERSION = 1
# Written into --out on first use: the folder is a clearsight output folder.
OUT_MARKER = ".clearsight-output"
# Between a run's name and the host in a manifest's tag: manifest-<run>@<host>.jsonl.
RUN_SEPARATOR = "@"
# The run-level files a run writes into --out besides each image's outputs.
RUN_FILES = ("analysis.json", "report.html")


class SettingsChangedError(ExplainError):
    """The output directory holds results computed with other settings."""


class OutDirWriteError(ExplainError):
    """--out cannot be created, read or written (a file in its path, no permission, a read-only file system)."""


def manifest_name(tag: str = "") -> str:
    """``manifest.jsonl``, or ``manifest-<tag>.jsonl`` for one shard or host of a larger run."""
    return f"manifest-{tag}.jsonl" if tag else "manifest.jsonl"


def run_manifest_tag(run: str, host: str) -> str:
    """``<run>@<host>``: the manifest tag of one host of a named run (a Processing job), so that the
    manifests of two jobs writing to the same S3 prefix never replace each other."""
    if not run or "@" in run or "/" in run:
        raise ConfigError(f"a run name must be non-empty, without '@' or '/', got {run!r}", field="run")
    return f"{run}{RUN_SEPARATOR}{host}"


def manifest_run(file_name: str) -> str | None:
    """The run a manifest file belongs to (``manifest-<run>@<host>.jsonl``), None for one written without a run name."""
    stem = file_name[len("manifest-"):-len(".jsonl")] if file_name.startswith("manifest-") else ""
    run, separator, _host = stem.partition(RUN_SEPARATOR)
    return run if separator and run else None


def manifest_host(file_name: str) -> str | None:
    """The host a run's manifest file belongs to (``manifest-<run>@<host>.jsonl``), None for one without a run name."""
    stem = file_name[len("manifest-"):-len(".jsonl")] if file_name.startswith("manifest-") else ""
    run, separator, host = stem.partition(RUN_SEPARATOR)
    return host if separator and run else None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def settings_digest(settings: dict) -> str:
    """sha256 of the settings' canonical JSON (sorted keys): equal settings, equal digest.

    A baseline image (a file or an S3 object) enters by the hash of its bytes, not its name.
    A request setting (REQUEST_SETTINGS) at its default is left out, as runs from before these
    settings were recorded left it out: such a run resumes with the defaults.
    """
    canonical = {name: value for name, value in settings.items()
                 if name not in REQUEST_SETTINGS or value != REQUEST_SETTINGS[name]}
    baseline = baseline_file_bytes(canonical.get("baseline"))
    if baseline is not None:
        canonical["baseline"] = "sha256:" + sha256_bytes(baseline)
    return sha256_bytes(json.dumps(canonical, sort_keys=True).encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and os.replace
    (``atomic_open``)."""
    with atomic_open(path) as stream:
        stream.write(data)


@contextmanager
def atomic_open(path: Path, text: bool = False) -> Iterator[IO]:
    """A stream (binary, or UTF-8 text) to a temporary file beside ``path`` that replaces ``path``
    when the block ends, and is deleted if it raises: ``path`` is never left half-written.

    The file gets the mode every other output gets (0666 less the umask), not mkstemp's 0600:
    analysis.json and report.html are read by whoever may read the run's outputs.
    """
    path = Path(path)
    handle, temporary = _create_temporary(path)
    try:
        with (os.fdopen(handle, "w", encoding="utf-8") if text else os.fdopen(handle, "wb")) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new ``.<name>.<random>.tmp`` beside ``path``, opened for writing with mode 0666 less the umask."""
    while True:
        temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), temporary
        except FileExistsError:
            continue


def _not_ours(out_dir: Path, what: str, remedy: str) -> ConfigError:
    return ConfigError(f"{out_dir} {what}; {remedy}", field="out_dir")


def _warn_once(message: str) -> None:
    """Log ``message`` as a warning the first time only: a run reads its manifests more than once."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning("%s", message)


_WARNED: set[str] = set()


def _read_entries(path: Path) -> list[dict]:
    """The manifest entries of one file; ConfigError when the file is not a clearsight manifest."""
    entries = []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _not_ours(path.parent, f"holds {path.name}, whose line {number} is not UTF-8 text: it is "
                            "not a clearsight manifest (those are JSON lines)",
                            "move it out of --out or choose another --out") from None
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            _warn_once(f"{path} line {number} is incomplete (interrupted write); ignoring it")
            continue
        if isinstance(entry, dict) and entry.get("version") == MANIFEST_VERSION and isinstance(entry.get("key"), str):
            entries.append(entry)
    return entries


def read_manifests(out_dir: Path) -> list[dict]:
    """Every entry of every ``manifest*.jsonl`` in ``out_dir``, files in name order.

    A line cut short by a crash (no valid JSON) is skipped with a warning: its image was
    not recorded, so it counts as not finished. A file that is not UTF-8 text is not a
    clearsight manifest: ConfigError (about --out).
    """
    entries = []
    for path in sorted(Path(out_dir).glob(MANIFEST_GLOB)):
        entries.extend(_read_entries(path))
    return entries


def latest_entries(entries: list[dict]) -> dict[str, dict]:
    """The latest entry per image key (later files and lines win): explained or failed."""
    return {entry["key"]: entry for entry in entries}


def explained_entries(entries: list[dict]) -> dict[str, dict]:
    """Per image key, the latest entry when it records an explained image."""
    return {key: entry for key, entry in latest_entries(entries).items() if entry.get("status", "explained") == "explained"}


def failed_entries(entries: list[dict]) -> dict[str, dict]:
    """Per image key, the latest entry when it records a failure (``failure``: kind and reason)."""
    return {key: entry for key, entry in latest_entries(entries).items() if entry.get("status") == "failed"}


def _differences(old: dict, new: dict) -> list[str]:
    unrecorded = set(REQUEST_SETTINGS) - set(old)  # a run from before they were recorded
    old, new = {**REQUEST_SETTINGS, **old}, {**REQUEST_SETTINGS, **new}  # absent: the default
    names = sorted(set(old) | set(new))
    return [f"{name} {json.dumps(old.get(name))}"
            + (" (not recorded by that run, which predates it: taken as the default)" if name in unrecorded else "")
            + f" -> {json.dumps(new.get(name))}"
            for name in names if old.get(name) != new.get(name)]


def restart_advice(sharded: bool = False) -> str:
    """How to discard an earlier run's results: --restart, and, for a run that is one shard of several (of
    --shard, or one of --workers' processes), what a --shard run does instead (--shard excludes --restart)."""
    return "add --restart (in Python: RunOptions(restart=True)" + (
        "; for --shard runs, which exclude it, empty --out before starting the shards)" if sharded else ")")


def check_settings(entries: list[dict], digest: str, settings: dict, out_dir: Path, sharded: bool = False) -> None:
    """Raise SettingsChangedError if an entry was computed with settings other than ``settings``.

    sharded: the run is one shard of several (of --shard, or one of --workers' processes): --shard excludes
    --restart (one shard's restart would discard the others'), so the message says what such a run does instead."""
    others = [entry for entry in entries if entry.get("settings_digest") != digest]
    if not others:
        return
    restart = restart_advice(sharded)
    entry = others[0]
    changes = _differences(entry.get("settings", {}), settings) or [
        f"the bytes of baseline image {settings.get('baseline')}"]  # the same name, other bytes
    explained = [item for item in entries if item.get("status", "explained") == "explained"]  # superseded too
    if not explained:  # only failures, say a photo too large before --resize
        raise SettingsChangedError(
            f"{out_dir} holds only failure records of a run with other settings ({'; '.join(changes)}), "
            f"no explanation: {restart} to discard them (nothing explained is lost), or choose another --out")
    if all(item.get("status") == "failed" for item in others):  # another host's failures beside our explanations
        raise SettingsChangedError(
            f"{out_dir} holds failure records of a run with other settings ({'; '.join(changes)}) beside "
            f"{len(explained)} explanation(s) made with these settings: choose another --out, or {restart}, "
            "which discards the explanations too")
    names = entry.get("settings", {}).get("label_headers")
    hint = ""
    if settings.get("label_headers") is None and names:
        # an in-process model folder gives its model.json's names; an endpoint serving it gives none
        listed = ",".join(map(str, names))
        hint = (f" (the class names: pass --label-headers {listed}, label_headers= from Python, to give the same)"
                if len(listed.split(",")) == len(names)
                else " (the class names: give the same with --label-headers, a file of one per line)")
    float32 = _float32_recorded(entry.get("settings", {}), settings)
    if float32:
        named = ", ".join(f"{name}={old!r}" for name, old in float32)
        others = " with the other changes undone" if len(float32) < len(changes) else ""
        hint += (f" (since 2026-12-03 a numpy float32 setting is recorded as the decimal it shows: to resume, give "
                 f"{named} as {'Python floats' if len(float32) > 1 else 'a Python float'}{others})")
    earlier, now = entry.get("settings", {}).get("custom_attributes"), settings.get("custom_attributes")
    if isinstance(earlier, str) and now != earlier and now == _as_sent_for_detection(earlier):
        hint += (" (since 2026-12-02 a detection run adds score_threshold=0 to custom attributes that do not "
                 f"set it, so these were explained at the model's default threshold: {restart})")
    raise SettingsChangedError(
        f"{out_dir} holds explanations made with other settings ({'; '.join(changes)}); "
        f"run again with the same settings to resume{hint}, {restart} to discard them and start over, or choose "
        "another --out")


def _float32_recorded(old: dict, new: dict) -> list[tuple[str, float]]:
    """The settings an earlier run recorded at a numpy float32's binary value (0.30000001192092896) that this
    run gives as the decimal that float32 shows (0.3): (name, the earlier value) for each."""
    import numpy as np

    found = []
    for name, earlier in old.items():
        now = new.get(name)
        if (isinstance(earlier, float) and isinstance(now, float) and earlier != now
                and float(np.float32(earlier)) == earlier and plain_number(np.float32(earlier)) == now):
            found.append((name, earlier))
    return found


def _as_sent_for_detection(custom_attributes: str) -> str | None:
    """What a detection run sends for recorded ``custom_attributes`` now, or None when it cannot."""
    try:
        return detection_custom_attributes(custom_attributes)
    except ConfigError:
        return None


def _is_clearsight_manifest(path: Path) -> bool:
    """Whether ``path`` holds at least one clearsight manifest entry."""
    try:
        return bool(_read_entries(path))
    except (ConfigError, OSError):
        return False


def claim_out_dir(out_dir: Path, allow_non_empty: bool = False) -> None:
    """Create ``out_dir`` or check that a run may write into it; mark it as a clearsight output folder.

    A folder with the marker (or, from before markers existed, a clearsight manifest) is the
    tool's own. An empty or new one is marked. A non-empty folder without the mark is refused
    (ConfigError about --out) unless ``allow_non_empty``; even then, a manifest*.jsonl,
    analysis.json or report.html that clearsight did not write is refused rather than
    appended to or replaced. An S3 location (``s3://...``, which a Path makes ``s3:/...``) is
    refused: it would be a local folder named ``s3:``.
    """
    if str(out_dir).startswith("s3:/"):
        url = "s3://" + str(out_dir)[len("s3:/"):].lstrip("/")
        raise ConfigError(f"{url} is an S3 location: explain writes into a local folder; give one and copy it "
                          "to S3 afterwards (aws s3 sync), or run `clearsight explain-job`, whose --out is an "
                          "S3 prefix", field="out_dir")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise _not_ours(out_dir, "is a file", "give a folder (new, empty or made by clearsight) as --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutDirWriteError(f"cannot create --out {out_dir}: {_creation_problem(out_dir, error)}") from None
    marker = out_dir / OUT_MARKER
    if marker.is_file():
        return
    try:
        present = sorted(path.name for path in out_dir.iterdir())
    except OSError as error:
        raise OutDirWriteError(f"cannot read --out {out_dir}: {os_reason(error)}") from None
    manifests = sorted(out_dir.glob(MANIFEST_GLOB))
    earlier_run = bool(manifests) and all(_is_clearsight_manifest(path) for path in manifests)
    if present and not earlier_run:
        if not allow_non_empty:
            shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
            raise _not_ours(out_dir, f"is not empty ({shown}) and is not a clearsight output folder (no "
                            f"{OUT_MARKER} file)", "choose a new or empty --out, or add --allow-non-empty-out (in "
                            "Python: RunOptions(allow_non_empty_out=True)) to write into it anyway (clearsight then "
                            "adds only its own files)")
        clashes = [path.name for path in manifests] + [name for name in RUN_FILES if (out_dir / name).exists()]
        if clashes:
            raise _not_ours(out_dir, f"holds {', '.join(clashes)}, not written by clearsight",
                            "move them elsewhere or choose another --out: a run would append to or replace them")
    now = dt.datetime.now(dt.timezone.utc)  # noqa: UP017 - datetime.UTC needs Python 3.11; explain runs on 3.10
    stamp = {"tool": "clearsight", "created": now.isoformat(timespec="seconds"),
             "note": "clearsight writes and deletes only its own files in this folder"}
    # written in place, not through a temporary file: only its presence counts, so a run killed while
    # writing it leaves a marked folder, not a temporary that made the folder "not empty" for the next run
    try:
        handle = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except FileExistsError:
        return  # another run marked it meanwhile
    except OSError as error:
        raise OutDirWriteError(f"cannot write into --out {out_dir}: {os_reason(error)}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write((json.dumps(stamp) + "\n").encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as error:
        raise OutDirWriteError(f"cannot write into --out {out_dir}: {os_reason(error)}") from None


def is_output_mark(name: str) -> bool:
    """Whether a file named ``name`` marks its folder as clearsight's outputs, not images to explain:
    the OUT_MARKER of an --out, or a manifest (MANIFEST_GLOB: what every run writes, and what a
    Processing job uploads to S3)."""
    return name == OUT_MARKER or fnmatch.fnmatchcase(name, MANIFEST_GLOB)


def os_reason(error: OSError) -> str:
    """What an OSError says went wrong, without its path: ``Permission denied``, ``Read-only file system``."""
    return error.strerror or str(error) or type(error).__name__


def _creation_problem(out_dir: Path, error: OSError) -> str:
    """Why ``out_dir`` could not be made: a symbolic link to nothing, a file where a parent folder should be,
    or the OS's reason."""
    if out_dir.is_symlink() and not out_dir.exists():  # mkdir says "File exists"
        try:
            target = os.readlink(out_dir)
        except OSError:
            target = "?"
        return (f"it is a symbolic link to {target}, which does not exist (or is a loop of links): "
                "create the folder it names, or remove the link")
    for parent in out_dir.parents:
        if parent.exists():
            return os_reason(error) if parent.is_dir() else f"{parent} is a file, not a folder"
    return os_reason(error)


def _plain_file_name(name: object) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and PurePosixPath(name).name == name
            and "\\" not in name and name != OUT_MARKER)


def remove_run_files(out_dir: Path) -> int:
    """--restart: delete the run's analysis.json and report.html, the files the manifests in ``out_dir``
    list, then those manifests; returns the count.

    Only the RUN_FILES of a marked folder (``claim_out_dir``: they are clearsight's), names the
    tool recorded (plain file names in ``out_dir``) and manifest files that hold clearsight
    entries are deleted; anything else in the folder stays. The report goes first: a restart
    stopped before its own report leaves none describing the discarded results.
    """
    out_dir = Path(out_dir)
    manifests = sorted(out_dir.glob(MANIFEST_GLOB))
    names = {name for path in manifests for entry in _read_entries(path)
             for name in entry.get("files", []) if _plain_file_name(name)}
    if (out_dir / OUT_MARKER).is_file():
        names |= set(RUN_FILES)
    removed = 0
    for name in sorted(names, key=lambda name: (name not in RUN_FILES, name)):
        path = out_dir / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed += 1
    for path in manifests:
        if _is_clearsight_manifest(path):
            path.unlink()
            removed += 1
        else:
            logger.warning("--restart: %s is not a clearsight manifest; leaving it", path)
    return removed


NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX; Windows has no such flag (nor symbolic links a user makes)


def open_no_follow(path: Path, flags: int) -> int:
    """os.open(path, flags, 0o666) that refuses a symbolic link at ``path`` itself: OutDirWriteError naming it.

    A run appends to its manifest and rewrites its lock file in place; a link planted under either name in
    a shared or copied --out would have made it write into the file the link points to."""
    try:
        return os.open(path, flags | NO_FOLLOW | getattr(os, "O_BINARY", 0), 0o666)
    except OSError:
        if NO_FOLLOW and os.path.islink(path):
            raise OutDirWriteError(f"{path} is a symbolic link: a run writes only plain files into --out; "
                                   f"remove the link (rm {path}) and run again") from None
        raise


class ManifestWriter:
    """Appends one JSON line per finished or failed image to one manifest file, flushed and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.is_symlink():
            os.close(open_no_follow(self.path, os.O_RDONLY))  # refused, naming the link (where links can be refused)
        if self.path.is_file() and self.path.stat().st_size:
            self._end_last_line()

    def _end_last_line(self) -> None:
        """Make the file end with a whole line before appending to it.

        A last line without its newline was cut short by a crash (killed mid-write): it is cut
        off, so that later runs do not warn about it again; its image was never recorded and is
        explained again. A last line that is a whole entry only lacking the newline gets one.
        """
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        start = data.rfind(b"\n") + 1
        try:
            json.loads(data[start:])
        except ValueError:
            logger.info("%s: removing its last line, cut short by an interrupted write (%d bytes)",
                        self.path, len(data) - start)
            with os.fdopen(open_no_follow(self.path, os.O_RDWR), "r+b") as stream:
                stream.truncate(start)
                stream.flush()
                os.fsync(stream.fileno())
            return
        with os.fdopen(open_no_follow(self.path, os.O_WRONLY | os.O_APPEND), "ab") as stream:
            stream.write(b"\n")

    def append(self, entry: dict) -> None:
        line = json.dumps({"version": MANIFEST_VERSION, **entry}, sort_keys=True) + "\n"
        with os.fdopen(open_no_follow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab") as stream:
            stream.write(line.encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())
