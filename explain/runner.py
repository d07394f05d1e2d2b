"""The one pipeline for many images: manifest, several images in flight, shards, the merged report.

Files, folders, s3:// prefixes or ImageSources in, per image ``<stem>_shap.npz`` and the
rendered JPEGs out, then analysis.json and report.html for the run. Every front end (the CLI,
its worker processes, the Processing job, the demo) runs images through ``run_explanations``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from .config import ExplainConfig
from .errors import ConfigError, ExplainError
from .explainer import Predict, explain_image, save_npz
from .images import decode_image
from .manifest import (
    ManifestWriter,
    check_settings,
    finished_entries,
    manifest_name,
    read_manifests,
    remove_manifests,
    settings_digest,
    sha256_bytes,
)
from .render import render_explanation
from .report import build_image_summary, build_run_summary, write_analysis, write_report
from .sharding import Shard, select_shard
from .sources import ImageSource, assign_stems, collect_sources

__all__ = ["RunOptions", "check_some_readable", "merge_outputs", "prepare_out_dir", "run_explanations"]

logger = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out (never what it computes: results do not depend on these).

    images_in_flight: images explained at once (threads sharing the predictor and its
    concurrency budget). shard: the part of the image list this process explains.
    manifest_tag: names this process's manifest file (default: the shard's name).
    restart: discard the manifests of earlier runs. merge: write analysis.json and
    report.html from every finished image at the end. progress: a bar on stderr.
    """

    images_in_flight: int = 2
    shard: Shard = field(default_factory=Shard)
    manifest_tag: str | None = None
    restart: bool = False
    merge: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        value = self.images_in_flight
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
            raise ConfigError(f"images_in_flight must be an integer in [1, 256], got {value!r}",
                              field="images_in_flight")
        if self.manifest_tag is not None and (not self.manifest_tag or "/" in self.manifest_tag):
            raise ConfigError(f"manifest_tag must be a non-empty name without '/', got {self.manifest_tag!r}",
                              field="manifest_tag")


class _Aborted(Exception):
    """Raised inside an image's thread once the run is stopping."""


def prepare_out_dir(out_dir: Path, config: ExplainConfig, restart: bool) -> list[dict]:
    """Create ``out_dir``, drop stale staging folders, apply --restart, check the settings.

    Returns the manifest entries that stay valid. Raises SettingsChangedError when the
    directory holds results of other settings and ``restart`` is false.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for staging in out_dir.glob(STAGING_PREFIX + "*"):
        if not _process_alive(staging.name[len(STAGING_PREFIX):].split("-", 1)[0]):
            shutil.rmtree(staging, ignore_errors=True)  # left by a killed run
    if restart:
        removed = remove_manifests(out_dir)
        if removed:
            logger.info("--restart: removed %d manifest(s) in %s", removed, out_dir)
        return []
    entries = read_manifests(out_dir)
    settings = config.to_dict()
    check_settings(entries, settings_digest(settings), settings, out_dir)
    return entries


def _process_alive(pid_text: str) -> bool:
    """Whether the process that named a staging folder still runs (workers share ``out_dir``)."""
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_outputs(explanation, stem: str, out_dir: Path, label_headers) -> list[str]:
    """Render into a staging folder, then os.replace each file into ``out_dir``."""
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out_dir))
    try:
        files = save_npz(explanation, staging / f"{stem}_shap.npz")
        phase = time.perf_counter()
        files += render_explanation(explanation, stem, staging, label_headers)
        explanation.timings["render_s"] = time.perf_counter() - phase
        for name in files:
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files


def _is_finished(entry: dict | None, source: ImageSource, stem: str, out_dir: Path) -> bool:
    if entry is None or entry.get("stem") != stem:
        return False
    if not all((out_dir / name).is_file() for name in entry.get("files", [])):
        return False
    try:
        return entry.get("fingerprint") == source.fingerprint()
    except ExplainError:
        return False


def _as_sources(images: Sequence) -> list[ImageSource]:
    """ImageSources as they are; image paths, folders and s3:// URLs through ``collect_sources``."""
    images = list(images)
    if all(isinstance(image, ImageSource) for image in images):
        return images
    arguments = [str(image) for image in images]
    missing = [argument for argument in arguments
               if not argument.startswith("s3://") and not Path(argument).exists()]
    if missing:
        raise ExplainError(f"image file(s) not found: {', '.join(missing)}")
    return collect_sources(arguments)


def check_some_readable(unreadable: Sequence[dict], num_images: int) -> None:
    """Raise ExplainError when every one of the run's ``num_images`` images was unreadable."""
    if unreadable and len(unreadable) == num_images:
        raise ExplainError("no image could be read: " + "; ".join(item["error"] for item in unreadable[:5]))


def run_explanations(images: Sequence[ImageSource | str | Path], predict: Predict, config: ExplainConfig,
                     out_dir: str | Path, options: RunOptions | None = None,
                     label_headers: Sequence[str] | None = None) -> dict:
    """Explain this shard's images not finished yet; with ``options.merge`` write the report.

    images: ImageSources (``collect_sources``), or image files, folders and s3:// prefixes.
    predict: (N, H, W, 3) uint8 -> N arrays (a predictor or any callable). label_headers
    (class names) fill ``config.label_headers`` when it has none; by default the predictor's
    own ``class_names`` (a model's model.json).

    Per image, outputs are written first (each through a temporary file and os.replace)
    and its manifest line last, so an interrupted run restarted with the same arguments
    skips finished images and ends with the same files as an uninterrupted run. An image
    that cannot be read is skipped and named in the totals; when no image of the run can be
    read, the merge raises ExplainError instead of writing an empty report. Returns the merged analysis summary (``merge``, the same
    as analysis.json, with the predictor's request counters under ``predictor``) or this
    process's counts.
    """
    options = options or RunOptions()
    if label_headers is None:
        label_headers = getattr(predict, "class_names", None)
    if label_headers is not None and config.label_headers is None:
        config = replace(config, label_headers=tuple(label_headers))
    sources = _as_sources(images)
    if not sources:
        raise ExplainError("no images to explain")
    out_dir = Path(out_dir)
    started = time.perf_counter()
    entries = prepare_out_dir(out_dir, config, options.restart)
    settings = config.to_dict()
    digest = settings_digest(settings)
    finished = finished_entries(entries)
    stems = assign_stems(sources)
    mine = select_shard([source.key for source in sources], options.shard)
    todo = [position for position in mine
            if not _is_finished(finished.get(sources[position].key), sources[position],
                                stems[position], out_dir)]
    logger.info("%d image(s) in shard %d/%d, %d already finished, %d to explain",
                len(mine), options.shard.index, options.shard.count, len(mine) - len(todo), len(todo))
    tag = options.manifest_tag if options.manifest_tag is not None else options.shard.name
    writer = ManifestWriter(out_dir / manifest_name(tag))
    unreadable: list[dict] = []
    explained = _explain_all(sources, stems, todo, predict, config, out_dir, options, writer, digest, settings,
                             unreadable)
    stats = getattr(predict, "stats", None)
    if not options.merge:
        return {"images": len(mine), "explained": explained, "skipped": len(mine) - len(todo),
                "unreadable": unreadable, "seconds": time.perf_counter() - started,
                "label_headers": config.label_headers, "predictor": stats}
    check_some_readable(unreadable, len(sources))
    return merge_outputs(out_dir, config, [source.key for source in sources],
                         seconds=time.perf_counter() - started, unreadable=unreadable,
                         explained_now=explained, predictor=stats)


def _explain_all(sources, stems, todo, predict, config, out_dir, options, writer, digest,
                 settings, unreadable: list) -> int:
    """Explain ``todo`` (positions) with ``images_in_flight`` threads; record each as it ends.

    Images that cannot be read are appended to ``unreadable`` ({image, error}) and skipped.
    """
    if not todo:
        return 0
    abort = threading.Event()

    def check_abort(_count: int) -> None:
        if abort.is_set():
            raise _Aborted()

    def work(position: int):
        source = sources[position]
        try:
            data = source.read()
            image = decode_image(data, source.location)
        except ExplainError as error:  # one bad file must not stop (or block the resumption of) the run
            return position, None, error
        explanation = explain_image(image, predict, config, progress=check_abort)
        return position, data, explanation

    bar = None
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
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                position, data, explanation = future.result()
                source, stem = sources[position], stems[position]
                if data is None:
                    logger.warning("skipping %s", explanation)
                    unreadable.append({"image": source.location, "key": source.key, "error": str(explanation)})
                    if bar is not None:
                        bar.update(1)
                    continue
                files = _write_outputs(explanation, stem, out_dir, config.label_headers)
                summary = build_image_summary(source.location, stem, explanation, files, config)
                writer.append({"key": source.key, "stem": stem, "location": source.location,
                               "sha256": sha256_bytes(data), "fingerprint": source.fingerprint(data),
                               "settings_digest": digest, "settings": settings, "files": files,
                               "summary": summary})
                explained += 1
                if bar is not None:
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


def merge_outputs(out_dir: str | Path, config: ExplainConfig | None = None,
                  keys: Sequence[str] | None = None, seconds: float | None = None,
                  unreadable: Sequence[dict] = (), explained_now: int | None = None,
                  predictor: dict | None = None) -> dict:
    """Write analysis.json and report.html from every manifest in ``out_dir``; returns the summary.

    config: the run's settings (default: those recorded in the manifests). keys: the images
    of the run, in report order (default: every recorded image, sorted by key); images not
    finished yet are listed under ``totals.unfinished``. seconds: the run's wall-clock time
    (default: the sum of the images' own times). unreadable: images skipped because they
    could not be read, listed under ``totals.unreadable``. explained_now: images this run
    explained (``totals.explained_now``). predictor: the predictor's ``stats`` (analysis.json's
    ``predictor``).
    """
    out_dir = Path(out_dir)
    entries = read_manifests(out_dir)
    if config is None:
        if not entries:
            raise ExplainError(f"no manifest*.jsonl with finished images in {out_dir}: nothing to merge")
        config = ExplainConfig(**entries[0]["settings"])
    settings = config.to_dict()
    check_settings(entries, settings_digest(settings), settings, out_dir)
    finished = finished_entries(entries)
    if keys is None:
        keys = sorted(finished)
    summaries = [finished[key]["summary"] for key in keys if key in finished]
    if seconds is None:
        seconds = sum(item["timings"].get("total_s", 0.0) for item in summaries)
    summary = build_run_summary(config, summaries, seconds)
    unreadable = list(unreadable)
    unreadable_keys = {item["key"] for item in unreadable}
    unfinished = [key for key in keys if key not in finished and key not in unreadable_keys]
    if explained_now is not None:
        summary["totals"]["explained_now"] = explained_now
    if unreadable:
        summary["totals"]["unreadable"] = unreadable
    if unfinished:
        summary["totals"]["unfinished"] = unfinished
    if predictor is not None:
        summary["predictor"] = predictor
    write_analysis(summary, out_dir / "analysis.json")
    report = out_dir / "report.html"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f"{STAGING_PREFIX}{os.getpid()}-") as staging:
        write_report(summary, Path(staging) / "report.html", files_dir=out_dir)
        os.replace(Path(staging) / "report.html", report)
    return summary
