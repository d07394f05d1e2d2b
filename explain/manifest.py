"""The run manifest: one JSON line per finished image, atomic output writes, the settings check."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from .errors import ExplainError

__all__ = [
    "MANIFEST_GLOB",
    "ManifestWriter",
    "SettingsChangedError",
    "atomic_write_bytes",
    "check_settings",
    "finished_entries",
    "manifest_name",
    "read_manifests",
    "remove_manifests",
    "settings_digest",
    "sha256_bytes",
]

logger = logging.getLogger(__name__)

MANIFEST_GLOB = "manifest*.jsonl"
MANIFEST_VERSION = 1


class SettingsChangedError(ExplainError):
    """The output directory holds results computed with other settings."""


def manifest_name(tag: str = "") -> str:
    """``manifest.jsonl``, or ``manifest-<tag>.jsonl`` for one shard or host of a larger run."""
    return f"manifest-{tag}.jsonl" if tag else "manifest.jsonl"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def settings_digest(settings: dict) -> str:
    """sha256 of the settings' canonical JSON (sorted keys): equal settings, equal digest.

    A baseline image file enters by the hash of its bytes, not its path.
    """
    canonical = dict(settings)
    baseline = canonical.get("baseline")
    if isinstance(baseline, str) and Path(baseline).is_file():
        canonical["baseline"] = "sha256:" + sha256_bytes(Path(baseline).read_bytes())
    return sha256_bytes(json.dumps(canonical, sort_keys=True).encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and os.replace."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_manifests(out_dir: Path) -> list[dict]:
    """Every entry of every ``manifest*.jsonl`` in ``out_dir``, files in name order.

    A line cut short by a crash (no valid JSON) is skipped with a warning: its image was
    not recorded, so it counts as not finished.
    """
    entries = []
    for path in sorted(Path(out_dir).glob(MANIFEST_GLOB)):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s line %d is incomplete (interrupted write); ignoring it", path, number)
                continue
            if isinstance(entry, dict) and entry.get("version") == MANIFEST_VERSION:
                entries.append(entry)
    return entries


def finished_entries(entries: list[dict]) -> dict[str, dict]:
    """The latest entry per image key (later files and lines win)."""
    return {entry["key"]: entry for entry in entries}


def _differences(old: dict, new: dict) -> list[str]:
    names = sorted(set(old) | set(new))
    return [f"{name} {json.dumps(old.get(name))} -> {json.dumps(new.get(name))}"
            for name in names if old.get(name) != new.get(name)]


def check_settings(entries: list[dict], digest: str, settings: dict, out_dir: Path) -> None:
    """Raise SettingsChangedError if an entry was computed with settings other than ``settings``."""
    for entry in entries:
        if entry.get("settings_digest") != digest:
            changes = _differences(entry.get("settings", {}), settings) or ["baseline image file"]
            raise SettingsChangedError(
                f"{out_dir} holds explanations made with other settings ({'; '.join(changes)}); "
                "run again with the same settings to resume, add --restart to discard them and "
                "start over, or choose another --out")


def remove_manifests(out_dir: Path) -> int:
    """Delete every manifest in ``out_dir`` (outputs are overwritten later); returns the count."""
    paths = list(Path(out_dir).glob(MANIFEST_GLOB))
    for path in paths:
        path.unlink()
    return len(paths)


class ManifestWriter:
    """Appends one JSON line per finished image to one manifest file, flushed and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as stream:
                stream.seek(-1, os.SEEK_END)
                needs_newline = stream.read(1) != b"\n"
            if needs_newline:  # a line cut short by a crash: start a fresh line after it
                with open(self.path, "ab") as stream:
                    stream.write(b"\n")

    def append(self, entry: dict) -> None:
        line = json.dumps({"version": MANIFEST_VERSION, **entry}, sort_keys=True) + "\n"
        with open(self.path, "ab") as stream:
            stream.write(line.encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())
