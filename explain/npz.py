"""An explanation's .npz file: every array, the image included, written and read back without pickle.

Arrays (T targets, S segments, image H x W): ``image`` (H, W, 3) uint8, ``segments`` (H, W)
int32, ``shap_values`` and ``standard_errors`` (T, S) float64, ``base_values``,
``predictions`` and ``target_scores`` (T,) float64, ``labels`` (T,) int64, ``boxes`` (T, 4)
float64 (detection only), ``model_calls`` int64, ``task`` str, ``exact`` bool, ``converged``
(T,) bool, ``timings`` a JSON string, ``segment_levels`` (S,) int64 (how many times each
segment's ancestors were split by refinement, 0 for a coarse segment), ``coarse_segments``
int64 (segments before refinement), ``refinement`` a JSON string (the rounds of splits:
``[{"split": [labels], "segments_after": n}, ...]``), ``best_detection`` (2,) float64
[class id, score] (detection, when the model detected anything), ``label_headers`` (C,) str
when known, and with metrics ``deletion_curves`` / ``insertion_curves`` (T, S + 1) float64.
Files written before the image was stored (no ``image``, ``task`` ...) still load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import ExplainError
from .metrics import area_under_curve
from .refinement import RefinementStep

__all__ = ["write_npz", "read_npz"]


def write_npz(explanation, path: str | Path) -> Path:
    """Write ``explanation`` (an ``explain.explainer.Explanation``) to ``path``; returns the path.

    numpy appends ``.npz`` to a path without that suffix; the returned path is the real one.
    Raises ExplainError when ``path`` is a folder, or text ending in a separator (name the file inside it).
    """
    given = os.fspath(path)
    path = Path(path)
    if path.is_dir() or given.endswith(("/", os.sep)):  # "out/" would become a sibling file "out.npz"
        raise ExplainError(f"cannot write the explanation to {given!r}: it names a folder; "
                           "give a file path, e.g. folder/name.npz")
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays = {
        "segments": np.asarray(explanation.segments).astype(np.int32),
        "shap_values": np.asarray(explanation.shap_values, dtype=np.float64),
        "standard_errors": np.asarray(explanation.standard_errors, dtype=np.float64),
        "base_values": np.asarray(explanation.base_values, dtype=np.float64),
        "predictions": np.asarray(explanation.predictions, dtype=np.float64),
        "labels": np.asarray(explanation.labels).astype(np.int64),
        "target_scores": np.asarray(explanation.target_scores, dtype=np.float64),
        "model_calls": np.int64(explanation.model_calls),
        "task": np.array(explanation.task),
        "exact": np.bool_(explanation.exact),
        "converged": np.asarray(explanation.converged, dtype=bool),
        "timings": np.array(json.dumps({key: float(value) for key, value in explanation.timings.items()})),
        "segment_levels": np.asarray(explanation.levels, dtype=np.int64),
        "coarse_segments": np.int64(explanation.coarse_segments),
        "refinement": np.array(json.dumps([{"split": [int(label) for label in step.split],
                                            "segments_after": int(step.segments_after)}
                                           for step in explanation.refinement])),
    }
    if explanation.best_detection is not None:
        arrays["best_detection"] = np.array(explanation.best_detection, dtype=np.float64)
    if explanation.image is not None:
        arrays["image"] = np.asarray(explanation.image, dtype=np.uint8)
    if explanation.boxes is not None:
        arrays["boxes"] = np.asarray(explanation.boxes, dtype=np.float64)
    if explanation.label_headers is not None:
        arrays["label_headers"] = np.array(list(explanation.label_headers), dtype=str)
    metrics = explanation.metrics
    if metrics and all(item is not None for item in metrics):
        arrays["deletion_curves"] = np.array([item["deletion_curve"] for item in metrics], dtype=np.float64)
        arrays["insertion_curves"] = np.array([item["insertion_curve"] for item in metrics], dtype=np.float64)
    np.savez_compressed(path, **arrays)
    return path


def _metrics(deletion_curves: np.ndarray, insertion_curves: np.ndarray) -> list[dict]:
    return [{"deletion_auc": area_under_curve(deletion), "insertion_auc": area_under_curve(insertion),
             "deletion_curve": deletion.tolist(), "insertion_curve": insertion.tolist(),
             "model_calls": int(len(deletion) + len(insertion))}
            for deletion, insertion in zip(deletion_curves, insertion_curves, strict=True)]


def read_npz(path: Path, image: np.ndarray | None = None) -> dict:
    """The fields of the Explanation stored in ``path``, as keyword arguments.

    image: (H, W, 3) uint8 for a file without one (an older file); it must match the
    segment map's size. Raises ExplainError for a missing or unreadable file. A path without the .npz
    suffix that does not exist is read with it, as ``write_npz`` wrote it (review 36).
    """
    path = Path(path)
    if path.suffix != ".npz" and not path.exists() and path.with_name(path.name + ".npz").is_file():
        path = path.with_name(path.name + ".npz")
    try:
        with open(path, "rb") as file:
            if file.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):  # numpy: "pickled data" for a text file
                raise ExplainError(f"{str(path)!r} is not an explanation file: not an .npz archive (an "
                                   "explanation file is the .npz that explain or Explanation.save writes)")
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except ExplainError:
        raise
    except Exception as error:  # cut short or damaged: BadZipFile, zlib.error, EOFError, numpy's header parse
        reason = f"{type(error).__name__}: {error}" if not isinstance(error, (OSError, ValueError)) else str(error)
        raise ExplainError(f"cannot read explanation file {str(path)!r}: {reason}") from None
    missing = {"segments", "shap_values", "standard_errors", "base_values", "predictions",
               "labels"} - set(arrays)
    if missing:
        raise ExplainError(f"{str(path)!r} is not an explanation file: no {', '.join(sorted(missing))}")
    segments = arrays["segments"].astype(np.int32)
    stored_image = arrays.get("image")
    if image is not None:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.shape != (*segments.shape, 3):
            raise ExplainError(f"image must be an {(*segments.shape, 3)} uint8 array (the size of the "
                               f"explained image), got {image.shape} {image.dtype}")
    elif stored_image is not None:
        image = stored_image
    boxes = arrays.get("boxes")
    task = str(arrays["task"]) if "task" in arrays else ("detection" if boxes is not None else "classification")
    num_targets = arrays["shap_values"].shape[0]
    metrics = None
    if "deletion_curves" in arrays and "insertion_curves" in arrays:
        metrics = _metrics(arrays["deletion_curves"], arrays["insertion_curves"])
    label_headers = arrays.get("label_headers")
    best = arrays.get("best_detection")
    try:
        steps = json.loads(str(arrays["refinement"])) if "refinement" in arrays else []
        refinement = tuple(RefinementStep(tuple(step["split"]), step["segments_after"]) for step in steps)
        best_detection = None if best is None else (int(best[0]), float(best[1]))
        timings = json.loads(str(arrays["timings"])) if "timings" in arrays else {}
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise ExplainError(f"{str(path)!r} is a damaged explanation file: its timings, refinement or "
                           f"best_detection cannot be read ({type(error).__name__}: {error})") from None
    return {
        "image": image,
        "segments": segments,
        "shap_values": arrays["shap_values"],
        "standard_errors": arrays["standard_errors"],
        "base_values": arrays["base_values"],
        "predictions": arrays["predictions"],
        "labels": arrays["labels"].astype(np.int64),
        "boxes": boxes,
        "target_scores": arrays.get("target_scores", arrays["predictions"]),
        "model_calls": int(arrays.get("model_calls", 0)),
        "num_segments_used": int(segments.max()) + 1,
        "timings": timings,
        "task": task,
        "exact": bool(arrays.get("exact", False)),
        "converged": arrays.get("converged", np.zeros(num_targets, dtype=bool)).astype(bool),
        "metrics": metrics,
        "label_headers": None if label_headers is None else tuple(str(name) for name in label_headers),
        "coarse_segments": int(arrays.get("coarse_segments", int(segments.max()) + 1)),
        "refinement": refinement,
        "best_detection": best_detection,
        "levels": arrays.get("segment_levels", np.zeros(int(segments.max()) + 1, dtype=np.int64)).astype(np.int64),
    }
