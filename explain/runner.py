"""The one pipeline for many images: manifest, several images in flight, shards, the merged report.

Files, folders, s3:// prefixes or ImageSources in, per image ``<stem>_shap.npz`` and the
rendered JPEGs out, then analysis.json and report.html for the run. Every front end (the CLI,
its worker processes, the Processing job, the demo) runs images through ``run_explanations``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from .config import ExplainConfig, plain_number
from .detection import check_label_headers, model_class_names
from .errors import (
    ConfigError,
    EndpointAccessError,
    EndpointUnavailableError,
    ExplainError,
    PredictorError,
)
from .explainer import Predict, explain_image, save_npz
from .image_warnings import collect_image_warnings
from .images import decode_image
from .manifest import (
    ManifestWriter,
    check_settings,
    claim_out_dir,
    explained_entries,
    failed_entries,
    is_output_mark,
    latest_entries,
    manifest_name,
    read_manifests,
    remove_run_files,
    restart_advice,
    settings_digest,
    sha256_bytes,
)
from .out_lock import OutDirLock, remove_released_locks
from .owners import left_by_a_dead_process, owned_prefix
from .render import (
    classification_file_name,
    heatmap_box_number,
    heatmap_file_name,
    objects_file_name,
    render_explanation,
)
from .report import build_image_summary, build_run_summary, write_analysis, write_report
from .sharding import Shard, select_shard
from .sources import ImageSource, OversizedImageError, collect_sources
from .stop_signals import WAKE_SECONDS

__all__ = ["FAILURE_KINDS", "RETRIED_KINDS", "RunOptions", "check_same_images", "merge_outputs",
           "prepare_out_dir", "remove_stale_locks", "run_explanations", "without_earlier_outputs",
           "staged_outputs", "foreign_outputs", "STAGING_JOURNAL"]

logger = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
# In a staging folder: the image key and the names its files take in --out, written before any is moved
# there, so that files a run moved in and did not list (killed before its manifest line) are known as its own.
STAGING_JOURNAL = "outputs.json"
# Why one image failed (the run goes on and records it in the manifest):
FAILURE_KINDS = {
    "read": "its bytes could not be read (missing, no permission, S3 error)",
    "image": "the bytes are not an image explain can use (not JPEG or PNG, truncated, too many pixels, "
             "too small to segment)",
    "model": "the endpoint or model rejected the image's requests, or answered unusably for it",
    "error": "an unexpected error while explaining or rendering it",
}
# Kinds a later run tries again by itself (the file, the endpoint or the software may have changed);
# "image" only with retry_failed (--retry-failed) or once the image's bytes have changed: the same
# bytes would fail the same way.
RETRIED_KINDS = ("read", "model", "error")


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out (never what it computes: results do not depend on these).

    images_in_flight: images explained at once (threads sharing the predictor and its
    concurrency budget). shard: the part of the image list this process explains.
    manifest_tag: names this process's manifest file (default: the shard's name).
    restart: delete the outputs and manifests of earlier runs (only files the manifests
    list). retry_failed: explain again images an earlier run recorded as failed because of the
    image's bytes (kind "image"; the other kinds are always tried again). allow_non_empty_out: write into an
    --out that holds files clearsight did not make (``manifest.claim_out_dir``). merge:
    write analysis.json and report.html from every finished image at the end. progress: a
    bar on stderr.
    """

    images_in_flight: int = 2
    shard: Shard = field(default_factory=Shard)
    manifest_tag: str | None = None
    restart: bool = False
    retry_failed: bool = False
    allow_non_empty_out: bool = False
    merge: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "images_in_flight", plain_number(self.images_in_flight))  # np.int64(2) -> 2
        if not isinstance(self.shard, Shard):  # "0/4" was an AttributeError when the run began
            raise ConfigError(f"shard must be a Shard (Shard(index, count), or Shard.parse('0/4')), got "
                              f"{self.shard!r}", field="shard")
        for name in ("restart", "retry_failed", "allow_non_empty_out", "merge", "progress"):
            flag = plain_number(getattr(self, name))  # np.True_ -> True
            if not isinstance(flag, bool):  # review 36: restart="false" was true, and deleted the earlier run
                raise ConfigError(f"{name} must be True or False, got {flag!r}", field=name)
            object.__setattr__(self, name, flag)
        value = self.images_in_flight
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
            raise ConfigError(f"images_in_flight must be an integer in [1, 256], got {value!r}",
                              field="images_in_flight")
        if self.manifest_tag is not None and (not self.manifest_tag or "/" in self.manifest_tag):
            raise ConfigError(f"manifest_tag must be a non-empty name without '/', got {self.manifest_tag!r}",
                              field="manifest_tag")


class _Aborted(Exception):
    """Raised inside an image's thread once the run is stopping."""


def prepare_out_dir(out_dir: Path, config: ExplainConfig, restart: bool,
                    allow_non_empty: bool = False, sharded: bool = False) -> list[dict]:
    """Claim ``out_dir`` (``manifest.claim_out_dir``), apply --restart, drop this host's stale staging
    folders (``_tidy_staging``), check the settings (``sharded``: of one shard of several, as
    ``check_settings``).

    Returns the manifest entries that stay valid. Raises ConfigError (about --out) for a
    folder the run may not write into, SettingsChangedError when the directory holds results
    of other settings and ``restart`` is false.
    """
    out_dir = Path(out_dir)
    claim_out_dir(out_dir, allow_non_empty)
    if restart:
        removed = remove_run_files(out_dir) + _tidy_staging(out_dir, set(), discard=True)
        if removed:
            logger.info("--restart: removed %d file(s) of earlier runs in %s", removed, out_dir)
        return []
    entries = read_manifests(out_dir)
    _tidy_staging(out_dir, _listed_names(entries))
    settings = config.to_dict()
    check_settings(entries, settings_digest(settings), settings, out_dir, sharded)
    return entries


def _tidy_staging(out_dir: Path, listed: set[str], discard: bool = False) -> int:
    """Remove the staging folders that killed runs on this host left in ``out_dir``, but keep the journal
    (``STAGING_JOURNAL``) of one whose files are in ``out_dir`` and no manifest lists (``listed``): they
    stay known as clearsight's until an image's manifest line lists them. ``discard`` (--restart): delete
    those files too. Returns the count of files deleted from ``out_dir``."""
    removed = 0
    for staging in out_dir.glob(STAGING_PREFIX + "*"):
        if not (staging.is_dir() and _stale_staging(staging.name)):
            continue
        names = next(iter(staged_outputs_of([staging]).values()), frozenset())
        present = [name for name in names if _local_file(out_dir)(name)]
        if discard:
            for name in present:
                (out_dir / name).unlink(missing_ok=True)
                removed += 1
        unlisted = not discard and any(name not in listed for name in present)
        if not unlisted:
            shutil.rmtree(staging, ignore_errors=True)
            continue
        _keep_only_the_journal(staging)
    return removed


def _keep_only_the_journal(staging: Path) -> None:
    """Delete what ``staging`` holds but its journal (``STAGING_JOURNAL``)."""
    for path in staging.iterdir():
        if path.name == STAGING_JOURNAL:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _listed_names(entries: list[dict]) -> set[str]:
    """Every file name the manifest ``entries`` list."""
    return {name for entry in entries for name in entry.get("files", []) if isinstance(name, str)}


def remove_stale_locks(out_dir: Path) -> None:
    """Delete the lock files of earlier runs killed outright (``out_lock.remove_released_locks``)."""
    removed = remove_released_locks(out_dir)
    if removed:
        logger.info("removed %d lock file(s) left by killed runs in %s: %s", len(removed), out_dir, ", ".join(removed))


def _staging_prefix() -> str:
    """``.staging-<pid>@<host>-``: a staging folder names the process and the host that made it."""
    return owned_prefix(STAGING_PREFIX)


def _stale_staging(name: str) -> bool:
    """Whether staging folder ``name`` was made on this host by a process that no longer runs.

    Folders of other hosts (several machines sharing --out) and of older versions, whose
    names carry no host, are never removed.
    """
    return left_by_a_dead_process(name, STAGING_PREFIX)


def _write_outputs(explanation, key: str, stem: str, out_dir: Path, label_headers,
                   earlier_files: frozenset[str] = frozenset()) -> tuple[list[str], Path]:
    """Render into a staging folder, then os.replace each file into ``out_dir``.

    An image explained again (its bytes changed, a file was missing) may now have fewer
    targets: once the new files are rendered, this stem's outputs that they do not replace
    (``_stale_outputs``; ``earlier_files``: what earlier manifest entries of the image and the
    journals of killed runs' staging folders list) are deleted, and then the new files are moved in.
    Before that the staging folder's journal (``STAGING_JOURNAL``) records ``key`` and the names.
    Returns the names and the staging folder, which the caller deletes once the manifest lists them.
    """
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(), dir=out_dir))
    try:
        files = save_npz(explanation, staging / _npz_file_name(stem))
        phase = time.perf_counter()
        files += render_explanation(explanation, stem, staging, label_headers)
        explanation.timings["render_s"] = time.perf_counter() - phase
        (staging / STAGING_JOURNAL).write_text(json.dumps({"key": key, "files": files}), encoding="utf-8")
        for name in _stale_outputs(out_dir, stem, explanation.task, files, earlier_files):
            (out_dir / name).unlink(missing_ok=True)
        for name in files:
            os.replace(staging / name, out_dir / name)
    except BaseException:
        # stopped (Ctrl-C, a signal, a full disk) once the journal was written: some files may be in out_dir
        # already, unlisted; the journal stays to name them as clearsight's (``_tidy_staging``)
        if (staging / STAGING_JOURNAL).is_file():
            _keep_only_the_journal(staging)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return files, staging


def _npz_file_name(stem: str) -> str:
    return f"{stem}_shap.npz"


def _is_output_of(stem: str, task: str, name: str) -> bool:
    """Whether ``name`` is exactly a name a ``task`` explanation of ``stem`` writes.

    Within one task these names never coincide for two stems (classification's
    ``shap_<stem>.jpeg`` can spell another stem's detection heatmap, but an --out holds one
    task: its settings say so).
    """
    if name == _npz_file_name(stem):
        return True
    if task == "detection":
        return name == objects_file_name(stem) or heatmap_box_number(stem, name) is not None
    return name == classification_file_name(stem)


def _earlier_outputs(stem: str, task: str, listed: frozenset[str] | set[str],
                     exists: Callable[[str], bool], first_box: int = 1) -> set[str]:
    """The present output files of an earlier explanation of ``stem``: those its manifest entries list
    (``listed``; this stem's exact names only, ``_is_output_of``: another image's files are never among
    them) and the heatmaps numbered from ``first_box`` on while they exist (a run cut off before its
    manifest line left them unlisted). exists: whether a name is an output file there."""
    names = {name for name in listed if _is_output_of(stem, task, name)}
    if task == "detection":
        box_number = first_box
        while exists(heatmap_file_name(stem, box_number)):
            names.add(heatmap_file_name(stem, box_number))
            box_number += 1
    return {name for name in names if exists(name)}


def _stale_outputs(out_dir: Path, stem: str, task: str, new_files: Sequence[str],
                   earlier_files: frozenset[str]) -> list[str]:
    """The files in ``out_dir`` of an earlier explanation of ``stem`` that ``new_files`` leave behind:
    those the manifests (or a killed run's staging journal) list for the image. A file no run listed
    is never deleted, whatever its name (``foreign_outputs`` refuses a run that would write over one)."""
    exists = _local_file(out_dir)
    return sorted(name for name in earlier_files
                  if _is_output_of(stem, task, name) and name not in new_files and exists(name))


_OUTPUT_STEMS = (re.compile(r"shap_(.+)_box[1-9][0-9]*_object\.jpeg"), re.compile(r"(.+)_objects\.jpeg"),
                 re.compile(r"(.+)_shap\.npz"), re.compile(r"shap_(.+)\.jpeg"))


def _output_name(name: str) -> bool:
    """Whether ``name`` is a plain file name shaped as some stem's output (``_OUTPUT_STEMS``)."""
    return "/" not in name and "\\" not in name and any(pattern.fullmatch(name) for pattern in _OUTPUT_STEMS)


def staged_outputs(out_dir: Path) -> dict[str, frozenset[str]]:
    """Per image key, the output names that the journals of the staging folders in ``out_dir`` record
    (``STAGING_JOURNAL``): files a run moved into --out before its manifest line, if it was killed."""
    return staged_outputs_of(Path(out_dir).glob(STAGING_PREFIX + "*"))


def staged_outputs_of(folders: Iterable[Path]) -> dict[str, frozenset[str]]:
    """``staged_outputs`` of these staging folders."""
    found: dict[str, set[str]] = {}
    for staging in folders:
        try:
            record = json.loads((staging / STAGING_JOURNAL).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("key"), str) and isinstance(record.get("files"), list):
            # only names an explanation writes (a journal planted in --out names no notes.txt or .clearsight-output)
            found.setdefault(record["key"], set()).update(
                name for name in record["files"] if isinstance(name, str) and _output_name(name))
    return {key: frozenset(names) for key, names in found.items()}


def foreign_outputs(out_dir: Path, stems: Iterable[str], task: str, listed: Iterable[str]) -> list[str]:
    """The files in ``out_dir`` named exactly as outputs of ``stems`` (``task``) that no manifest or
    staging journal lists (``listed``): not clearsight's, or not this folder's runs' (Clarify writes
    the same names); a run would write over them."""
    wanted = set(stems)
    listed = set(listed)
    found = []
    with os.scandir(out_dir) as entries:
        for entry in entries:
            name = entry.name
            if name in listed or not entry.is_file(follow_symlinks=False):
                continue
            for pattern in _OUTPUT_STEMS:
                match = pattern.fullmatch(name)
                if match and match.group(1) in wanted and _is_output_of(match.group(1), task, name):
                    found.append(name)
                    break
    return sorted(found)


def _kept_from_earlier_run(stem: str, task: str, listed: frozenset[str] | set[str],
                           exists: Callable[[str], bool]) -> list[str]:
    """The outputs of an earlier explanation of ``stem`` still present, for an image this run did not
    explain: ``_earlier_outputs`` from heatmap 1, and this stem's other exact output names."""
    names = {_npz_file_name(stem)}
    names.add(objects_file_name(stem) if task == "detection" else classification_file_name(stem))
    return sorted(_earlier_outputs(stem, task, listed, exists) | {name for name in names if exists(name)})


def _local_file(out_dir: Path) -> Callable[[str], bool]:
    """Whether a name is a file (not a link) in ``out_dir``."""
    return lambda name: (out_dir / name).is_file() and not (out_dir / name).is_symlink()


def _earlier_files(entries: list[dict]) -> dict[str, frozenset[str]]:
    """Per image key, every file name its manifest entries list (explained in any earlier run)."""
    files: dict[str, set[str]] = {}
    for entry in entries:
        names = entry.get("files", [])
        if isinstance(names, list):
            files.setdefault(entry["key"], set()).update(name for name in names if isinstance(name, str))
    return {key: frozenset(names) for key, names in files.items()}


def _is_done(entry: dict | None, source: ImageSource, out_dir: Path, retry_failed: bool) -> bool:
    """Whether an earlier run's latest entry for ``source`` stands: explained with every file
    present, or failed for a reason the same bytes would meet again; either for these bytes."""
    if entry is None or entry.get("stem") != source.stem:
        return False
    if entry.get("status") == "failed":
        kind = entry.get("failure", {}).get("kind")
        if retry_failed or kind in RETRIED_KINDS or kind not in FAILURE_KINDS:
            return False
    elif damaged := _damaged_outputs(entry, out_dir):
        logger.warning("%s: its output(s) %s in %s are missing or not the size they were written with; "
                       "explaining it again", source.location, ", ".join(damaged), str(out_dir))
        return False
    try:
        return entry.get("fingerprint") == source.fingerprint()
    except ExplainError:
        return False


def _another_existing_image(earlier: str, location: str) -> bool:
    """Whether ``earlier`` (where an explained image came from) is an image that still exists and is
    not ``location``: an S3 URL other than it, or a local file that is not the same file (a relative
    path that leads nowhere from here, or to this file, is not counted: it may be this image seen
    from another working directory, or a folder moved since)."""
    if earlier.startswith("s3://") or location.startswith("s3://"):
        return earlier != location
    try:
        return os.path.isfile(earlier) and not os.path.samefile(earlier, location)
    except OSError:
        return False


def check_same_images(sources: Sequence[ImageSource], entries: list[dict], out_dir: Path,
                      sharded: bool = False) -> None:
    """Raise ConfigError (about --out) before any work when an image to explain has the key of an image
    an earlier run explained into ``out_dir`` from another image that still exists, with other bytes:
    its outputs would silently replace that explanation. The same file with changed bytes, the same
    bytes from anywhere (a moved folder, a local copy of an S3 object: the bytes are read to compare
    their sha256 when the fingerprints differ: an ETag is not a sha256) and an earlier image that is gone are
    explained as usual. sharded: as ``check_settings``'s."""
    explained = explained_entries(entries)
    for source in sources:
        entry = explained.get(source.key)
        if entry is None or not _another_existing_image(str(entry.get("location", "")), source.location):
            continue
        try:
            if entry.get("fingerprint") == source.fingerprint():
                continue
            # an S3 object's fingerprint is its ETag, a file's its sha256: compare the bytes (a synced copy)
            if entry.get("sha256") is not None and entry["sha256"] == sha256_bytes(source.read()):
                continue
        except (OSError, ExplainError):
            continue  # unreadable now: its own failure is recorded when it is explained
        raise ConfigError(
            f"{out_dir} holds the explanation of image {source.key!r} from {entry['location']!r}; "
            f"{source.location!r} is another image with the same name and would replace it: choose another "
            f"--out, or {restart_advice(sharded)} to discard the earlier results", field="out_dir")


def _file_sizes(out_dir: Path, names: Sequence[str]) -> dict[str, int]:
    """Each output's size in bytes as written (the manifest's ``file_sizes``: resume finds a truncated file)."""
    return {name: (out_dir / name).stat().st_size for name in names}


def _damaged_outputs(entry: dict, out_dir: Path) -> list[str]:
    """The files an explained entry lists that are missing, or whose size differs from the ``file_sizes``
    it recorded (entries written before sizes were recorded: missing files only)."""
    sizes = entry.get("file_sizes") if isinstance(entry.get("file_sizes"), dict) else {}
    damaged = []
    for name in entry.get("files", []):
        path = out_dir / name
        if not path.is_file() or (name in sizes and path.stat().st_size != sizes[name]):
            damaged.append(name)
    return damaged


def without_earlier_outputs(sources: list[ImageSource], out_dir: Path) -> list[ImageSource]:
    """``sources`` without the files that earlier runs wrote into ``out_dir`` (their manifests or staging
    journals list them: figures found again when --out is the image folder or inside it) or left in its
    staging folders (a killed run's figures), with one warning saying how many were left out; the user's
    own images there stay."""
    listed = set()
    if Path(out_dir).is_dir():  # and those a run stopped while moving them in left named in a staging journal
        listed = _listed_names(read_manifests(out_dir)).union(*staged_outputs(out_dir).values())
    outputs = {os.path.realpath(Path(out_dir) / name) for name in listed}
    real_out = os.path.realpath(out_dir)

    def staged(location: str) -> bool:
        parent = os.path.dirname(os.path.realpath(location))
        return os.path.dirname(parent) == real_out and os.path.basename(parent).startswith(STAGING_PREFIX)

    kept = [source for source in sources if source.location.startswith("s3://")
            or (os.path.realpath(source.location) not in outputs and not staged(source.location))]
    if len(kept) < len(sources):
        logger.warning("%d image file(s) are outputs an earlier run wrote into --out %s, not images to "
                       "explain: left out", len(sources) - len(kept), str(out_dir))
    return kept


def _as_sources(images: Sequence) -> list[ImageSource]:
    """ImageSources as they are; image paths, folders and s3:// URLs through ``collect_sources``,
    without the clearsight output folders under those folders (``is_output_mark``)."""
    if getattr(images, "ndim", None) == 1 and getattr(images, "dtype", None) is not None and images.dtype.kind in "UOT":
        images = images.tolist()  # paths in a numpy array (pandas' .values; T: numpy 2's StringDType)
    if (isinstance(images, (str, os.PathLike, ImageSource, bytes, bytearray)) or hasattr(images, "shape")
            or not isinstance(images, Iterable)):  # one, an array, or None (not its bytes, not a TypeError)
        images = [images]
    images = list(images)
    if all(isinstance(image, ImageSource) for image in images):
        return images
    for image in images:
        if not isinstance(image, (str, os.PathLike)):
            shape = getattr(image, "shape", None)
            kind = (f"an array of shape {tuple(shape)}" if shape is not None
                    else "None" if image is None else f"a value of type {type(image).__name__}")
            raise ExplainError(f"a run's images are files, folders or s3:// prefixes (or ImageSources alone), got "
                               f"{kind}: to explain images in memory, call the Explainer on them and save each "
                               "Explanation (explanation.save(path))")
    arguments = [os.fspath(image) for image in images]
    missing = [argument for argument in arguments
               if not argument.startswith("s3://") and not Path(argument).exists()]
    if missing:
        raise ExplainError(f"image file(s) not found: {', '.join(missing)}")
    return collect_sources(arguments, output_mark=is_output_mark)


def run_explanations(images: Sequence[ImageSource | str | Path], predict: Predict, config: ExplainConfig,
                     out_dir: str | Path, options: RunOptions | None = None,
                     label_headers: Sequence[str] | None = None,
                     settings_source: Mapping | None = None) -> dict:
    """Explain this shard's images not finished yet; with ``options.merge`` write the report.

    images: ImageSources (``collect_sources``), or image files, folders and s3:// prefixes.
    predict: (N, H, W, 3) uint8 -> N arrays (a predictor or any callable). label_headers
    (class names) fill ``config.label_headers`` when it has none; by default the predictor's
    own ``class_names`` (a model's model.json). Names that do not match a predictor's own
    ``class_names`` in number raise ConfigError before any image is read (a classifier's
    answer, and the class ids of a detector's, are checked too, by ``explain_image``).
    settings_source: where the settings came from (the CLI's record of a Clarify config: its
    path, the options it set, the keys it holds that the run ignores), written as it is under
    analysis.json's ``settings_source`` and shown in the report.

    Per image, outputs are written first (each through a temporary file and os.replace)
    and its manifest line last, so an interrupted run restarted with the same arguments
    skips finished images and ends with the same files as an uninterrupted run. An image
    that fails (FAILURE_KINDS: it cannot be read or decoded, the endpoint rejects it, ...)
    is recorded in the manifest with its reason and the run goes on; the summary lists it
    under ``totals.failed``. What stops a run: an endpoint that stays unavailable after the
    retries, one that cannot be called from here at all (EndpointAccessError: no AWS credentials,
    no such SageMaker endpoint; at the first image, which is not recorded), a settings error, a
    write error, Ctrl-C; and before it starts, another run writing the same manifest in
    ``out_dir`` (OutDirBusyError). When no image of the run could be
    explained, the merge raises ExplainError instead of writing an empty report. Returns the
    merged analysis summary (``merge``, the same as analysis.json, with the predictor's
    request counters under ``predictor``) or this process's counts (``failed`` included).
    """
    if options is not None and not isinstance(options, RunOptions):
        raise ConfigError(f"options must be a RunOptions, got {type(options).__name__}", field="options")
    if not isinstance(config, ExplainConfig):  # review 44: an AttributeError after out_dir was made
        raise ConfigError(f"config must be an ExplainConfig, got {type(config).__name__}", field="config")
    if not isinstance(out_dir, (str, os.PathLike)):
        raise ConfigError(f"out_dir must be a folder path, got {type(out_dir).__name__}", field="out_dir")
    options = options or RunOptions()
    model_classes = model_class_names(predict)
    if label_headers is None:
        label_headers = model_classes
    if label_headers is not None and config.label_headers is None:
        config = replace(config, label_headers=tuple(label_headers))
    if model_classes:  # names that do not fit the model's own classes: refused before any image
        check_label_headers(config.label_headers, model_classes)
    out_dir = Path(out_dir)
    sources = without_earlier_outputs(_as_sources(images), out_dir)
    if not sources:
        raise ExplainError("no images to explain")
    started = time.perf_counter()
    tag = options.manifest_tag if options.manifest_tag is not None else options.shard.name
    claim_out_dir(out_dir, options.allow_non_empty_out)
    with OutDirLock(out_dir, tag):  # no other run of this manifest writes here meanwhile (OutDirBusyError)
        return _run_locked(sources, predict, config, out_dir, options, started, tag, settings_source)


def _run_locked(sources: list[ImageSource], predict: Predict, config: ExplainConfig, out_dir: Path,
                options: RunOptions, started: float, tag: str, settings_source: Mapping | None) -> dict:
    """run_explanations once --out is claimed and locked."""
    if options.shard.count == 1:  # a whole run: no shard of it starts meanwhile
        remove_stale_locks(out_dir)
    staged = staged_outputs(out_dir)  # before prepare_out_dir removes this host's killed runs' staging folders
    entries = prepare_out_dir(out_dir, config, options.restart, options.allow_non_empty_out,
                              sharded=options.shard.count > 1)
    settings = config.to_dict()
    digest = settings_digest(settings)
    latest = latest_entries(entries)
    mine = select_shard([source.key for source in sources], options.shard)
    todo = [position for position in mine
            if not _is_done(latest.get(sources[position].key), sources[position], out_dir,
                            options.retry_failed)]
    check_same_images([sources[position] for position in todo], entries, out_dir, options.shard.count > 1)
    earlier_files = _earlier_files(entries)
    for key, names in staged.items():
        earlier_files[key] = earlier_files.get(key, frozenset()) | names
    foreign = foreign_outputs(out_dir, {sources[position].stem for position in todo}, config.task,
                              {name for names in earlier_files.values() for name in names})
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(f"--out {out_dir} holds {len(foreign)} file(s) named as this run's outputs that no "
                          f"clearsight run there wrote ({shown}; Clarify writes the same names): the run "
                          "would write over them. Move them, or choose another --out (a clearsight older than "
                          "2026-12-02 stopped while moving an image's files in leaves them unlisted: delete "
                          "them then)", field="out_dir")
    logger.info("%d image(s) in shard %d/%d, %d already done, %d to explain",
                len(mine), options.shard.index, options.shard.count, len(mine) - len(todo), len(todo))
    writer = ManifestWriter(out_dir / manifest_name(tag))
    endpoint = (getattr(predict, "stats", None) or {}).get("endpoint")  # redacted; None for a bare callable
    explained = _explain_all(sources, todo, predict, config, out_dir, options, writer, digest, settings,
                             earlier_files, endpoint)
    if staged:  # killed runs' journals whose files this run listed again go now, not at the next run
        _tidy_staging(out_dir, _listed_names(read_manifests(out_dir)))
    stats = getattr(predict, "stats", None)
    if not options.merge:
        tried = [sources[position].key for position in todo]
        return {"images": len(mine), "explained": explained, "skipped": len(mine) - len(todo),
                "failed": _failures(read_manifests(out_dir), [sources[position].key for position in mine],
                                    set(tried), config.task, _local_file(out_dir)),
                "tried": tried,
                "seconds": time.perf_counter() - started,
                "label_headers": config.label_headers, "predictor": stats}
    return merge_outputs(out_dir, config, [source.key for source in sources],
                         seconds=time.perf_counter() - started,
                         explained_now=explained, predictor=stats,
                         tried_now={sources[position].key for position in todo}, settings_source=settings_source)


_CALLS_REFRESH_SECONDS = 1.0  # the least time between two redraws of the bar's model-call count within an image


def _failure(source: ImageSource, kind: str, reason: str) -> dict:
    logger.warning("%s failed (%s): %s", source.location, kind, reason)
    return {"kind": kind, "reason": reason}


def _explain_all(sources, todo, predict, config, out_dir, options, writer, digest, settings,
                 earlier_files, endpoint: str | None = None) -> int:
    """Explain ``todo`` (positions) with ``images_in_flight`` threads; record each as it ends.

    endpoint: the model explained, as each image's summary names it (``build_image_summary``).

    earlier_files: per image key, the files earlier manifest entries list (``_earlier_files``);
    an image explained again loses those of its outputs the new explanation does not write.

    An image that fails is recorded as failed (kind and reason) and the others go on; an
    endpoint outage, an endpoint this machine cannot call (EndpointAccessError), a settings error,
    a write error or Ctrl-C stops the run. Returns the number of images explained.
    """
    if not todo:
        return 0
    abort = threading.Event()
    explanation_warnings: dict[int, list[str]] = {}  # position -> what explaining it warned about
    # model calls of this run so far, shown beside the images bar: with a large --num-samples one image takes
    # minutes, and a bar counting images alone looked stuck (review 43)
    calls = {"count": 0, "shown": 0.0}
    calls_lock = threading.Lock()
    bar = None

    def check_abort(count: int) -> None:
        if abort.is_set():
            raise _Aborted()
        with calls_lock:
            calls["count"] += count
            now = time.monotonic()
            if bar is not None and now - calls["shown"] >= _CALLS_REFRESH_SECONDS:
                calls["shown"] = now
                bar.set_postfix_str(f"{calls['count']} model calls")

    def work(position: int):
        """(position, bytes or None, Explanation or failure dict) of one image."""
        source = sources[position]
        try:
            data = source.read()
        except OversizedImageError as error:  # listed with the bad images; checked again (its size only) on resume
            return position, None, _failure(source, "image", str(error))
        except ExplainError as error:
            return position, None, _failure(source, "read", str(error))
        try:
            with collect_image_warnings(source.location) as warnings:  # decoding's too (EXIF orientation)
                try:
                    image = decode_image(data, source.location)
                except ExplainError as error:
                    return position, data, _failure(source, "image", str(error))
                explanation = explain_image(image, predict, config, progress=check_abort)
            explanation_warnings[position] = warnings
            return position, data, explanation
        except (_Aborted, EndpointUnavailableError, EndpointAccessError, ConfigError, MemoryError):
            raise  # not this image's fault: the run stops (and can be resumed)
        except PredictorError as error:
            return position, data, _failure(source, "model", str(error))
        except ExplainError as error:
            return position, data, _failure(source, "image", f"cannot explain image {source.location!r}: {error}")
        except Exception as error:  # noqa: BLE001 - one image must not end a long run
            logger.debug("explaining %s", source.location, exc_info=True)
            return position, data, _failure(source, "error", f"explaining image {source.location!r} failed: "
                                            f"{type(error).__name__}: {error}")

    def _warn_kept(source: ImageSource) -> None:
        kept = _kept_from_earlier_run(source.stem, config.task, earlier_files.get(source.key, frozenset()),
                                      _local_file(out_dir))
        if kept:
            logger.warning("%s: the %d file(s) under its stem %s in %s (%s) are from an earlier run, not from "
                           "this one, which could not explain it", source.location, len(kept), source.stem, out_dir,
                           ", ".join(kept))

    def record(position: int, data: bytes | None, outcome) -> bool:
        """Write one image's outputs and manifest line; True when it was explained."""
        source = sources[position]
        entry = {"key": source.key, "stem": source.stem, "location": source.location,
                 "settings_digest": digest, "settings": settings}
        if data is not None:
            entry.update(sha256=sha256_bytes(data), fingerprint=source.fingerprint(data))
        if isinstance(outcome, dict):
            writer.append({**entry, "status": "failed", "failure": outcome})
            _warn_kept(source)
            return False
        try:
            files, staging = _write_outputs(outcome, source.key, source.stem, out_dir, config.label_headers,
                                            earlier_files.get(source.key, frozenset()))
        except (OSError, MemoryError):
            raise  # a full disk or a write error stops the run
        except Exception as error:  # noqa: BLE001 - a rendering failure is this image's
            logger.debug("rendering %s", source.location, exc_info=True)
            failure = _failure(source, "error", f"rendering image {source.location!r} failed: "
                               f"{type(error).__name__}: {error}")
            writer.append({**entry, "status": "failed", "failure": failure})
            _warn_kept(source)
            return False
        summary = build_image_summary(source.location, source.stem, outcome, files, config,
                                      explanation_warnings.pop(position, []), endpoint)
        writer.append({**entry, "status": "explained", "files": files, "file_sizes": _file_sizes(out_dir, files),
                       "summary": summary})
        shutil.rmtree(staging, ignore_errors=True)  # kept when the line was not written: its journal names the files
        return True

    if options.progress:
        bar = tqdm(total=len(todo), desc="images", unit="img", dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=options.images_in_flight, thread_name_prefix="explain-image")
    pending = set()
    queue = list(reversed(todo))
    explained = 0
    try:
        while queue or pending:
            while queue and len(pending) < options.images_in_flight:
                pending.add(pool.submit(work, queue.pop()))
            done, pending = wait(pending, timeout=WAKE_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                explained += record(*future.result())
                if bar is not None:
                    with calls_lock:
                        bar.set_postfix_str(f"{calls['count']} model calls", refresh=False)
                    bar.update(1)
    except BaseException:
        abort.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    pool.shutdown(wait=True)
    return explained


def _failures(entries: list[dict], keys: Sequence[str], tried_now: set[str] | None = None,
              task: str | None = None, exists: Callable[[str], bool] | None = None,
              other_entries: Sequence[dict] = ()) -> list[dict]:
    """The failed images among ``keys`` (latest entries), in key order: image, key, kind, reason, and
    ``earlier`` when an earlier run recorded the failure and this one did not try the image again.

    With ``task`` and ``exists`` (whether an output name is present), a failed image whose stem
    still has files of an earlier explanation (listed by ``entries`` or ``other_entries``, or
    with its exact output names) gets them as ``files_from_earlier_run``: they stay, and they are
    not this run's.
    """
    failed = failed_entries(entries)
    listed = _earlier_files([*other_entries, *entries]) if exists is not None else {}
    items = []
    for key in keys:
        entry = failed.get(key)
        if entry is None:
            continue
        item = {"image": entry.get("location", key), "key": key, "kind": entry["failure"].get("kind"),
                "reason": entry["failure"].get("reason")}
        if tried_now is not None and key not in tried_now:
            item["earlier"] = True
        if exists is not None and task is not None and isinstance(entry.get("stem"), str):
            kept = _kept_from_earlier_run(entry["stem"], task, listed.get(key, frozenset()), exists)
            if kept:
                item["files_from_earlier_run"] = kept
        items.append(item)
    return items


def _grouped_reasons(failed: Sequence[dict], shown: int = 5) -> str:
    """The failures' reasons, each once with how many images gave it, most frequent first (the first
    ``shown``): ``6 images: no AWS credentials found ...; 1 image: HTTP 400 ...``; without counts when no
    two images gave the same reason."""
    counts: dict[str, int] = {}
    for item in failed:
        reason = str(item.get("reason") or item.get("error") or "")
        counts[reason] = counts.get(reason, 0) + 1
    ranked = sorted(counts.items(), key=lambda pair: -pair[1])  # stable: first seen first among equals
    if len(ranked) == len(failed):
        text = "; ".join(reason for reason, _ in ranked[:shown])
    else:
        text = "; ".join(f"{count} image{'s' if count != 1 else ''}: {reason}" for reason, count in ranked[:shown])
    if len(ranked) > shown:
        text += f"; and {len(ranked) - shown} other reason(s) (the manifest*.jsonl in --out lists each image's)"
    return text


def _other_runs(other_runs: Mapping[str | None, Sequence[dict]], entries: list[dict],
                exists: Callable[[str], bool]) -> list[dict]:
    """Per other run: its name, the images it explained, how many of those this run did not explain, and
    its files that are still present and that this run did not write (over them)."""
    explained_here = set(explained_entries(entries))
    written_here = {name for names in _earlier_files(entries).values() for name in names}
    items = []
    for run in sorted(other_runs, key=lambda name: (name is None, name or "")):
        theirs = explained_entries(list(other_runs[run]))
        files = {name for names in _earlier_files(list(other_runs[run])).values() for name in names}
        items.append({"run": run, "images": len(theirs), "not_in_this_run": len(set(theirs) - explained_here),
                      "files": sorted(name for name in files - written_here if exists(name))})
    return items


def _predictor_not_applied(stats: dict | None) -> dict[str, str]:
    """The transport settings a run's predictors ignored (an in-process model's network settings), from their
    ``stats``: a predictor's own, and those of a router's endpoints or of the workers."""
    stats = stats or {}
    found = dict(stats.get("settings_not_applied") or {})
    for item in [*stats.get("workers", []), *stats.get("endpoints", [])]:
        found.update(_predictor_not_applied(item))
    return found


def merge_outputs(out_dir: str | Path, config: ExplainConfig | None = None,
                  keys: Sequence[str] | None = None, seconds: float | None = None,
                  explained_now: int | None = None, predictor: dict | None = None,
                  tried_now: set[str] | None = None, *, output_exists: Callable[[str], bool] | None = None,
                  other_runs: Mapping[str | None, Sequence[dict]] | None = None,
                  incomplete: Sequence[str] = (), settings_source: Mapping | None = None) -> dict:
    """Write analysis.json and report.html from every manifest in ``out_dir``; returns the summary.

    config: the run's settings (default: those recorded in the manifests). keys: the images
    of the run, in report order (default: every recorded image, sorted by key); images not
    finished yet are listed under ``totals.unfinished``, failed ones (with kind and reason)
    under ``totals.failed``. seconds: the run's wall-clock time (default: the sum of the
    images' own times). explained_now: images this run explained (``totals.explained_now``).
    predictor: the predictor's ``stats`` (analysis.json's ``predictor``). tried_now: the keys
    this run tried; a failure of another key is marked ``earlier``. A failed image whose stem
    still has the files of an earlier explanation lists them as ``files_from_earlier_run``
    (kept, and not this run's results); output_exists says whether an output name is present
    (default: a file in ``out_dir``). other_runs: the manifest entries of other runs that wrote
    to the same place (an S3 prefix's other Processing jobs), by run name (None: written
    without one); they are not merged, only consulted for those files and summed up under
    ``totals.other_runs`` (per run: ``images`` it explained, ``not_in_this_run``: how many of
    them this run did not explain, ``files``: its files still present that this run did not
    write over). incomplete: why the merged outputs are only part of the run (a Processing job that did
    not complete, hosts that wrote no manifest), listed under ``totals.incomplete`` and at the top of
    the report. settings_source: where the run's settings came from (``run_explanations``), under
    ``settings_source``. Raises ExplainError when no image of the run was explained (and some failed)
    instead of writing an empty report.
    """
    if isinstance(keys, str):  # one image's key, not its characters
        keys = [keys]
    elif keys is not None:  # read three times below: a generator would be empty after the first
        keys = list(keys)
    out_dir = Path(out_dir)
    entries = read_manifests(out_dir)
    if config is None:
        if not entries:
            raise ExplainError(f"no manifest*.jsonl with finished images in {out_dir}: nothing to merge")
        config = ExplainConfig(**entries[0]["settings"])
        # the manifests' own digest: the baseline image a worker read (an S3 object, a file of its
        # machine) need not be readable where the outputs are merged
        digest = entries[0].get("settings_digest")
    else:
        digest = settings_digest(config.to_dict())
    settings = config.to_dict()
    check_settings(entries, digest, settings, out_dir)
    explained = explained_entries(entries)
    if keys is None:
        keys = sorted(latest_entries(entries))
    other_runs = other_runs or {}
    other_entries = [entry for run_entries in other_runs.values() for entry in run_entries]
    exists = output_exists or _local_file(out_dir)
    failed = _failures(entries, keys, tried_now, config.task, exists, other_entries)
    summaries = [explained[key]["summary"] for key in keys if key in explained]
    if failed and not summaries:
        message = f"no image could be explained: {len(failed)} failed: " + _grouped_reasons(failed)
        kept = [item for item in failed if item.get("files_from_earlier_run")]
        names = [name for item in kept for name in item["files_from_earlier_run"]]
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            message += (f"; {out_dir} still holds {len(names)} file(s) of earlier explanations of {len(kept)} of "
                        f"them ({shown}): they are not this run's")
        raise ExplainError(message)
    if seconds is None:
        seconds = sum(item["timings"].get("total_s", 0.0) for item in summaries)
    summary = build_run_summary(config, summaries, seconds)
    summary["settings_not_applied"].update(_predictor_not_applied(predictor))
    if summary["endpoint"] is None and predictor is not None:  # images summed up before endpoints were recorded
        summary["endpoint"] = predictor.get("endpoint")
    failed_keys = {item["key"] for item in failed}
    unfinished = [key for key in keys if key not in explained and key not in failed_keys]
    if explained_now is not None:
        summary["totals"]["explained_now"] = explained_now
    summary["totals"]["failed"] = failed  # [] when nothing failed: the one place to look
    if unfinished:
        summary["totals"]["unfinished"] = unfinished
    if other_runs:
        summary["totals"]["other_runs"] = _other_runs(other_runs, entries, exists)
    if incomplete:
        summary["totals"]["incomplete"] = list(incomplete)
    if predictor is not None:
        summary["predictor"] = predictor
    if settings_source:
        summary["settings_source"] = dict(settings_source)
    # written in a staging folder, as an image's files are: what a run killed meanwhile leaves, the next removes;
    # both before either replaces its earlier copy, so a full disk leaves the two of one run (review 40, D7)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=_staging_prefix()) as staging:
        write_analysis(summary, Path(staging) / "analysis.json")
        write_report(summary, Path(staging) / "report.html", files_dir=out_dir)
        os.replace(Path(staging) / "analysis.json", out_dir / "analysis.json")
        os.replace(Path(staging) / "report.html", out_dir / "report.html")
    return summary
