"""Run outputs for people and programs: report.html (one portable page) and analysis.json."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np

from serving import __version__

from .detection import class_name
from .manifest import atomic_open, atomic_write_bytes
from .metrics import KEEP_FRACTION, REMOVE_FRACTION, smallest_sets
from .render import (
    TOP_SEGMENTS,
    classification_file_name,
    heatmap_file_name,
    objects_file_name,
    set_as_named,
    top_segments,
)
from .terminal import printable

__all__ = ["build_image_summary", "build_run_summary", "write_analysis", "write_report", "TOP_SEGMENTS",
           "SEGMENTATIONS"]


def _standard_error(error: float) -> float | None:
    """A standard error for JSON: None when unknown (NaN: too few model calls for the segments)."""
    return None if np.isnan(error) else float(error)


def _error_text(error: float | None) -> str:
    if error is None:
        return "unknown"
    return f"{error:.4f}" if error == 0 or error >= 5e-5 else f"{error:.1e}"  # not 0.0000: it is not exact


def _top_segments(values: np.ndarray, errors: np.ndarray, count: int) -> list[dict]:
    return [{"segment": index, "value": float(values[index]),
             "standard_error": _standard_error(errors[index])} for index in top_segments(values, count)]


def build_image_summary(path: Path, stem: str, explanation, files: list[str], config,
                        warnings: Sequence[str] = (), endpoint: str | None = None) -> dict:
    """JSON-serialisable summary of one explained image (an entry of analysis.json).

    endpoint: the model that answered (the predictor's ``stats["endpoint"]``, credentials and
    query values redacted), or None when unknown (a Python callable). A detection image also
    carries ``best_detection``: {class_id, label, score} of the model's highest-scoring
    detection at any score (None when it detected nothing), which says what the model saw
    when nothing reached the probability threshold.

    warnings: what explaining the image warned about (``explain.image_warnings``), e.g. a
    segmentation that gave far fewer segments than asked; listed under ``warnings``.

    With metrics, each target also carries its ``deletion_curve`` and ``insertion_curve``
    ((S+1,) scores) and ``keeps_score`` / ``removes_score`` (``explain.metrics.smallest_sets``:
    segment ids in rank order and the score reached; None when the segments do not raise
    the score).
    """
    targets = []
    for index in range(explanation.num_targets):
        values = explanation.shap_values[index]
        errors = explanation.standard_errors[index]
        class_id = int(explanation.labels[index])
        target = {
            "index": index + 1,
            "class_id": class_id,
            "label": class_name(class_id, config.label_headers),
            "score": float(explanation.target_scores[index]),
            "box": (None if explanation.boxes is None
                    else [float(v) for v in explanation.boxes[index]]),
            "base_value": float(explanation.base_values[index]),
            "prediction": float(explanation.predictions[index]),
            "sum_of_values": float(values.sum()),
            "max_standard_error": _standard_error(errors.max()) if errors.size else 0.0,
            "top_segments": _top_segments(values, errors, TOP_SEGMENTS),
        }
        if config.target_error is not None:
            target["converged"] = bool(explanation.converged[index])
        metrics = explanation.metrics[index] if explanation.metrics is not None else None
        if metrics is not None:
            target["deletion_auc"] = metrics["deletion_auc"]
            target["insertion_auc"] = metrics["insertion_auc"]
            target["deletion_curve"] = [float(v) for v in metrics["deletion_curve"]]
            target["insertion_curve"] = [float(v) for v in metrics["insertion_curve"]]
            sets = smallest_sets(values, metrics["deletion_curve"], metrics["insertion_curve"],
                                 explanation.base_values[index], explanation.predictions[index])
            target["keeps_score"] = None if sets is None else sets["keep"]
            target["removes_score"] = None if sets is None else sets["remove"]
        targets.append(target)
    height, width = explanation.image.shape[:2]
    summary = {
        "image": str(path),
        "stem": stem,
        "endpoint": endpoint,
        "width": int(width),
        "height": int(height),
        "num_segments_requested": int(config.num_segments),
        "num_segments_used": int(explanation.num_segments_used),
        "num_segments_coarse": int(explanation.coarse_segments or explanation.num_segments_used),
        "refinement_rounds": len(explanation.refinement),
        "segments_per_level": np.bincount(explanation.levels).tolist() if len(explanation.levels) else [],
        "model_calls": int(explanation.model_calls),
        "exact": bool(explanation.exact),
        "timings": {key: round(float(value), 4) for key, value in explanation.timings.items()},
        "files": files,
        "warnings": list(warnings),
        "targets": targets,
    }
    if config.task == "detection":
        best = getattr(explanation, "best_detection", None)
        summary["best_detection"] = None if best is None else {
            "class_id": int(best[0]), "label": class_name(int(best[0]), config.label_headers), "score": float(best[1])}
    return summary


ESTIMATOR = {
    "method": "kernel_shap",
    "sampling": "complementary pairs without replacement, the same number of coalitions per "
                "size (leverage allocation); small sizes enumerated",
    "regression": "paired, efficiency-constrained, with coalition-size indicators and odd "
                  "higher-order parity terms kept when the leave-one-pair-out error drops",
    "constraint": "values sum to prediction - base_value",
    "standard_errors": "sandwich (HC3 residuals, finite-population corrected per size), for this run's "
                       "baseline image: they leave out the randomness of a noise baseline",
    "num_samples_counts_anchors": True,
}

SEGMENTATIONS = {
    "merged": "SLICO over-segmentation (about 4 x num_segments, grid seeds), adjacent superpixels "
              "merged by Ward's criterion on mean CIELAB colour down to num_segments",
    "slico": "SLICO (slic_zero) with k-means seeds",
    "slic": "plain SLIC superpixels (scikit-image slic at segment_compactness, Clarify's segmentation)",
}

FOCUS = {
    "boxes": "the targets' boxes cut the image into box, ring and far regions; no segment crosses a box "
             "border; segments shared box 0.6, ring 0.15, far 0.25",
    "none": "segments ignore the targets",
}


def baseline_description(baseline: str, seed: int) -> str:
    """What replaced a hidden segment, and whether another run draws it again (analysis.json's
    ``estimator.baseline``): the noise baseline is drawn from ``seed``, the others are fixed."""
    if baseline == "noise":
        return (f"uniform white noise drawn from seed {seed}: another seed draws other noise, which changes "
                "the values and the base values; the standard errors are for this noise image only")
    if baseline in ("mean", "blur", "black"):
        return f"{baseline} (the same image in every run: a fixed game)"
    return f"the image file {baseline} (the same image in every run: a fixed game)"


def build_run_summary(config, image_summaries: list[dict], seconds: float, endpoint: str | None = None) -> dict:
    """The analysis.json document of a run: settings, estimator, one entry per image, totals.

    Which model, when and by what: ``endpoint`` (the model explained, redacted; default: the
    images' own endpoints, distinct, comma-separated; None when unknown), ``created_utc`` (when
    this document was written, ISO 8601 UTC) and ``tool_version`` (clearsight's version).

    ``totals.seconds`` is this run's wall-clock time; ``totals.explain_seconds`` the images' own
    explaining times summed, whichever run explained them (a run that only merged, or resumed
    everything, took a moment; the values took ``explain_seconds``).
    """
    if endpoint is None:
        endpoints = [item.get("endpoint") for item in image_summaries]
        endpoint = ", ".join(dict.fromkeys(name for name in endpoints if name)) or None
    return {
        "version": 1,
        "tool": "clearsight.explain",
        "tool_version": __version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),  # noqa: UP017 - runs on 3.10
        "endpoint": endpoint,
        "task": config.task,
        "settings": config.to_dict(),
        "settings_not_applied": config.not_applied(),
        "estimator": {**ESTIMATOR, "baseline": baseline_description(config.baseline, config.seed),
                      "segmentation": SEGMENTATIONS.get(config.segmentation, config.segmentation),
                      "focus": FOCUS[config.focus] if config.task == "detection" else FOCUS["none"],
                      "refinement": (f"{config.refine_fraction:g} of num_samples: the segment holding the "
                                     "largest share of a target's absolute value is cut in two, best first, "
                                     f"up to {config.max_segments} segments; its value is split by the halves' "
                                     "Shapley values with the rest of the image shown and hidden, plus what these "
                                     "leave of the parent's value in proportion to their magnitudes" if config.refine_fraction > 0 else "none")},
        "images": image_summaries,
        "totals": {
            "images": len(image_summaries),
            "targets": sum(len(item["targets"]) for item in image_summaries),
            "model_calls": sum(item["model_calls"] for item in image_summaries),
            "seconds": seconds,
            "explain_seconds": sum(float(item.get("timings", {}).get("total_s", 0.0)) for item in image_summaries),
        },
    }


def _time_sentence(totals: dict) -> str:
    """How long the values took, and how much of it this run: ``12.3 s`` or ``12.3 s of explaining, by
    earlier runs (this run merged them in 0.0 s)``."""
    seconds = float(totals.get("seconds", 0.0))
    explain_seconds = float(totals.get("explain_seconds", seconds))
    explained_now = totals.get("explained_now", totals.get("images", 0))
    if explained_now >= totals.get("images", 0):
        return f"{seconds:.1f} s"
    if explained_now == 0:
        return f"{explain_seconds:.1f} s of explaining, all by earlier runs (this run merged them in {seconds:.1f} s)"
    return (f"{explain_seconds:.1f} s of explaining; {explained_now} image(s) by this run, in {seconds:.1f} s, "
            "the others by earlier runs")


def write_analysis(summary: dict, path: Path) -> None:
    """Write analysis.json (UTF-8, indented) through a temporary file and os.replace."""
    atomic_write_bytes(Path(path), (json.dumps(summary, indent=2) + "\n").encode("utf-8"))


# The images' files a report embeds at most, in bytes (base64 makes the page a third larger): about
# 240 targets with the metrics, 540 without (the shapes demo's figures); later images' are linked.
REPORT_EMBED_BYTES = 64 * 2**20

# Phone widths included: nothing is wider than the viewport (tables scroll inside their box).
_STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 12px; max-width: 1280px;
       color: #222; line-height: 1.4; overflow-wrap: anywhere; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 2em; border-top: 1px solid #ddd;
       padding-top: 0.8em; } h3 { font-size: 1.05em; margin-bottom: 0.3em; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; overflow-wrap: normal; }
th { background: #f3f3f3; } td.text { text-align: left; overflow-wrap: break-word; }
figure { margin: 0 0 0.8em 0; max-width: 100%; min-width: 0; }
img { display: block; max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
.note { color: #555; font-size: 0.9em; }
.target { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.target figure { flex: 1 1 480px; max-width: 920px; }
.target .facts { flex: 1 1 300px; min-width: 0; }
.overview { max-width: 480px; }
svg.curves { display: block; width: 100%; max-width: 360px; height: auto; }
.warning { background: #fff4e5; border-left: 4px solid #e69500; padding: 4px 10px; }
.provenance th { text-align: left; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; font-size: 0.9em; margin: 0.5em 0; }
dt { font-weight: bold; } dd { margin: 0; }
"""


def _escape(value) -> str:
    """Text for the page: HTML-escaped, a lone surrogate (a file name's byte that is not UTF-8, as Python
    decodes it) written as ``\\udcff``, which UTF-8 cannot encode, and a control character written as the
    terminal shows it (``printable``: ``\\n``, ``\\x1b``, ``\\u202e``): a bidirectional control, obeyed,
    would reverse the text after it (a name would read as another), a newline would show as a space."""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return html.escape(printable(text), quote=True)


def _href(name: str) -> str:
    """A relative link to a file beside the report: URL-encoded, then escaped for the attribute."""
    return _escape(quote(name))


def _table(header: list[str], rows: list[list], text_columns: int = 0) -> str:
    head = "".join(f"<th>{_escape(cell)}</th>" for cell in header)
    body = []
    for row in rows:
        cells = "".join(
            f"<td{' class=text' if column < text_columns else ''}>{_escape(cell)}</td>"
            for column, cell in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<div class=scroll><table><tr>{head}</tr>{''.join(body)}</table></div>"


def _data_uri(path: Path) -> str | None:
    """The file as a data: URI (JPEG or PNG), or None when it cannot be read."""
    media_type = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _figure(files_dir: Path | None, name: str, alt: str, css_class: str = "") -> str:
    """An image embedded as a data: URI, linking to its file beside the report.

    A file not in ``files_dir`` (a report merged from manifests alone, its images in S3), and
    every file when ``files_dir`` is None (past the report's embedding budget), is referenced by
    its relative URL instead, as the link is.
    """
    source = (_data_uri(files_dir / name) if files_dir is not None else None) or _href(name)
    caption = f"<figcaption><a href=\"{_href(name)}\">{_escape(name)}</a></figcaption>"
    opening = f"<figure class={css_class}>" if css_class else "<figure>"
    return f"{opening}<img src=\"{source}\" alt=\"{_escape(alt)}\">{caption}</figure>"


def _curves_svg(deletion: Sequence[float], insertion: Sequence[float], keep_count: int | None,
                remove_count: int | None) -> str:
    """Deletion (red) and insertion (blue) curves as a small inline SVG chart.

    deletion, insertion: (S+1,) scores after removing / keeping the k top-ranked segments.
    keep_count, remove_count: k marked on the insertion / deletion curve (None: no mark).
    """
    width, height, left, right, top, bottom = 320, 180, 42, 12, 12, 52
    count = max(len(deletion) - 1, 1)
    every = list(deletion) + list(insertion)
    high, low = max(1.0, max(every)), min(0.0, min(every))
    span = (high - low) or 1.0

    def x(step: float) -> float:
        return left + (width - left - right) * step / count

    def y(score: float) -> float:
        return top + (height - top - bottom) * (high - score) / span

    def line(curve: Sequence[float]) -> str:
        return " ".join(f"{x(step):.1f},{y(score):.1f}" for step, score in enumerate(curve))

    parts = [f"<svg class=curves viewBox=\"0 0 {width} {height}\" role=img "
             "aria-label=\"deletion and insertion curves\">",
             "<title>Score after removing (red) or keeping only (blue) the top-ranked segments</title>",
             f"<line x1={left} y1={y(low):.1f} x2={width - right} y2={y(low):.1f} stroke=#999 />",
             f"<line x1={left} y1={top} x2={left} y2={y(low):.1f} stroke=#999 />",
             f"<text x={left - 4} y={y(high) + 4:.1f} font-size=10 text-anchor=end>{high:.2f}</text>",
             f"<text x={left - 4} y={y(low) + 4:.1f} font-size=10 text-anchor=end>{low:.2f}</text>",
             f"<text x={left} y={y(low) + 13:.1f} font-size=10 text-anchor=middle>0</text>",
             f"<text x={width - right} y={y(low) + 13:.1f} font-size=10 text-anchor=middle>{count}</text>",
             f"<text x={(left + width - right) / 2:.1f} y={y(low) + 13:.1f} font-size=10 "
             "text-anchor=middle>top-ranked segments</text>",
             f"<polyline points=\"{line(insertion)}\" fill=none stroke=#1f5fbf stroke-width=2 />",
             f"<polyline points=\"{line(deletion)}\" fill=none stroke=#c62828 stroke-width=2 />"]
    if keep_count is not None:
        parts.append(f"<circle cx={x(keep_count):.1f} cy={y(insertion[keep_count]):.1f} r=4 fill=#1f5fbf />")
    if remove_count is not None:
        parts.append(f"<circle cx={x(remove_count):.1f} cy={y(deletion[remove_count]):.1f} r=4 fill=#c62828 />")
    legend_y = height - 14
    parts += [f"<line x1={left} y1={legend_y - 4} x2={left + 18} y2={legend_y - 4} stroke=#1f5fbf stroke-width=2 />",
              f"<text x={left + 22} y={legend_y} font-size=10>kept alone (insertion)</text>",
              f"<line x1={left + 150} y1={legend_y - 4} x2={left + 168} y2={legend_y - 4} stroke=#c62828 "
              "stroke-width=2 />",
              f"<text x={left + 172} y={legend_y} font-size=10>removed (deletion)</text>",
              "</svg>"]
    return "".join(parts)


def _segment_list(segments: list[int], total: int, numbered: Sequence[int]) -> str:
    """A set as the heatmap numbers it (``set_as_named``; ``numbered``: the table's top segments): its
    segments, or every segment but those it leaves out."""
    listed, left_out = set_as_named(segments, total, numbered)
    if not left_out:
        return f"segment{'s' if len(segments) != 1 else ''} {', '.join(map(str, listed))} ({len(segments)} of {total})"
    if not listed:
        return f"all {total} segments"
    return f"every segment but {', '.join(map(str, listed))} ({len(segments)} of {total})"


def _sets_block(target: dict, num_segments: int) -> str:
    """The smallest keeping / removing sets and the curves of one target (needs metrics)."""
    if "deletion_curve" not in target:
        return ("<p class=note>The smallest sets of segments that keep or remove the score, and the "
                "deletion and insertion curves, need the metrics (--metrics, or metrics=True: 2 S + 2 more "
                "model calls per target, counted in model calls).</p>")
    keep, remove = target.get("keeps_score"), target.get("removes_score")
    numbered = [item["segment"] for item in target["top_segments"]]
    parts = []
    if keep is None or remove is None:
        parts.append("<p class=note>The segments together do not raise this score above the base value: "
                     "no set keeps or removes it.</p>")
    else:
        parts.append(
            f"<p><b>Keeps the score</b>: {_escape(_segment_list(keep['segments'], num_segments, numbered))}, shown "
            f"alone (the rest replaced by the baseline), score {keep['score']:.3f} of "
            f"{target['prediction']:.3f}: the fewest top-ranked segments that keep "
            f"{KEEP_FRACTION:.0%} of the score's rise over the base value {target['base_value']:.3f}.</p>")
        parts.append(
            f"<p><b>Removes it</b>: {_escape(_segment_list(remove['segments'], num_segments, numbered))} replaced by "
            f"the baseline leave {remove['score']:.3f}: the fewest top-ranked segments whose removal "
            f"leaves at most {REMOVE_FRACTION:.0%} of that rise.</p>")
    parts.append(_curves_svg(target["deletion_curve"], target["insertion_curve"],
                             None if keep is None else len(keep["segments"]),
                             None if remove is None else len(remove["segments"])))
    parts.append(f"<p class=note>Deletion AUC {target['deletion_auc']:.3f} (lower is better), insertion AUC "
                 f"{target['insertion_auc']:.3f} (higher is better).</p>")
    return "".join(parts)


def _target_block(item: dict, target: dict, files_dir: Path | None, detection: bool) -> str:
    title = f"{'box ' if detection else ''}{target['index']}: {target['label']} {target['score']:.3f}"
    figure = ""
    if detection:
        name = heatmap_file_name(item["stem"], target["index"])
        figure = _figure(files_dir, name, f"{item['stem']}, {title}: the image with the box and the heatmap")
    top = _table(["segment", "SHAP value", "std. error"],
                 [[segment["segment"], f"{segment['value']:+.4f}", _error_text(segment["standard_error"])]
                  for segment in target["top_segments"]])
    facts = (f"<div class=facts>{_sets_block(target, item['num_segments_used'])}"
             f"<p class=note>Segments with the largest |SHAP value| (numbered on the heatmap, as are the "
             f"segments the sets above name):</p>{top}</div>")
    return f"<h3>{_escape(title)}</h3><div class=target>{figure}{facts}</div>"


def _no_target_sentence(item: dict, settings: dict) -> str:
    """Why a detection image has no target: the threshold, and the best score the model gave below it."""
    threshold = settings.get("probability_threshold")
    sentence = "nothing scored at or above the probability threshold" + (f" {threshold:g}" if threshold is not None else "")
    if "best_detection" not in item:  # written before the best detection was recorded
        return sentence + "."
    best = item["best_detection"]
    if best is None:
        return sentence + "; the model detected nothing at all."
    return f"{sentence}; the best was {best['label']} {best['score']:.3f}."


def _image_section(number: int, item: dict, files_dir: Path | None, task: str, settings: dict) -> str:
    """One image's section; its figures embedded from ``files_dir``, or linked when it is None."""
    detection = task == "detection"
    npz_name = f"{item['stem']}_shap.npz"
    parts = [f"<section id=image-{number}><h2>{_escape(item['stem'])}</h2>",
             f"<p class=note>{_escape(item['image'])}: {item['width']}x{item['height']} px, "
             f"{item['num_segments_used']} segments ({item.get('num_segments_coarse', item['num_segments_used'])} "
             f"coarse, asked {item['num_segments_requested']}; {item.get('refinement_rounds', 0)} rounds of "
             "refinement), "
             f"{item['model_calls']} model calls, {item['timings'].get('total_s', 0):.1f} s"
             f"{', exact Shapley values' if item['exact'] else ''}. Data: "
             f"<a href=\"{_href(npz_name)}\">{_escape(npz_name)}</a></p>"]
    parts += [f"<p class=note><strong>Warning:</strong> {_escape(warning)}</p>" for warning in item.get("warnings", [])]
    overview = objects_file_name(item["stem"]) if detection else classification_file_name(item["stem"])
    if overview in item["files"]:
        if detection:
            parts.append(_figure(files_dir, overview, f"{item['stem']}: every explained object", "overview"))
        else:
            parts.append(_figure(files_dir, overview, f"{item['stem']}: the explained classes"))
    if not item["targets"]:
        parts.append(f"<p>No target: {_escape(_no_target_sentence(item, settings))}</p></section>")
        return "\n".join(parts)
    header = ["#", "label", "score", "base value", "prediction", "sum of values", "max std. error"]
    header += ["box"] if detection else []
    rows = []
    for target in item["targets"]:
        row = [target["index"], target["label"], f"{target['score']:.3f}", f"{target['base_value']:.3f}",
               f"{target['prediction']:.3f}", f"{target['sum_of_values']:.3f}",
               _error_text(target["max_standard_error"])]
        if detection:
            row.append("" if target["box"] is None else ", ".join(f"{v:.3f}" for v in target["box"]))
        rows.append(row)
    parts.append(_table(header, rows, text_columns=2))
    parts += [_target_block(item, target, files_dir, detection) for target in item["targets"]]
    parts.append("</section>")
    return "\n".join(parts)


def _failure_notes(totals: dict) -> list[str]:
    """Images that could not be explained and images not finished yet.

    Failed images are {image, key, kind, reason} (``totals.failed``, explain.runner) or
    {image, error} (older summaries and callers: ``totals.unreadable``); one whose stem still has
    an earlier explanation's files names them (``files_from_earlier_run``), as not this run's.
    """
    notes = []
    failed = list(totals.get("unreadable") or []) + list(totals.get("failed") or [])
    if failed:
        kept = [item for item in failed if item.get("files_from_earlier_run")]
        header = ["image", "error", "kind"] + (["files from an earlier run"] if kept else [])
        rows = []
        for item in failed:
            row = [item.get("image", item.get("key", "")), item.get("reason") or item.get("error", ""),
                   item.get("kind", "")]
            if kept:
                row.append(", ".join(item.get("files_from_earlier_run") or []))
            rows.append(row)
        note = f"<div class=warning><p>{len(failed)} image(s) could not be explained and were skipped:</p>"
        note += _table(header, rows, text_columns=len(header))
        if kept:
            note += (f"<p>{len(kept)} of them were explained by an earlier run: the files of that explanation "
                     "are still in the output folder under the image's stem (listed above). They are not this "
                     "run's results and this report does not show them.</p>")
        notes.append(note + "</div>")
    if totals.get("unfinished"):
        notes.append(f"<p class=warning>{len(totals['unfinished'])} image(s) not explained yet (run the "
                     "same command again to finish them).</p>")
    return notes


def _incomplete_notes(totals: dict) -> list[str]:
    """Why the report shows only part of the run (explain-merge --allow-partial of a job that did not
    complete, or whose hosts did not all write their outputs)."""
    problems = totals.get("incomplete") or []
    if not problems:
        return []
    return ["<div class=warning><p><strong>This report is of part of the run only:</strong></p><ul>"
            + "".join(f"<li>{_escape(problem)}</li>" for problem in problems) + "</ul></div>"]


def _other_run_notes(totals: dict) -> list[str]:
    """Other runs that wrote to the same place (an S3 prefix's other Processing jobs): not in this report."""
    runs = totals.get("other_runs") or []
    if not runs:
        return []
    rows = [[run.get("run") or "(no job name)", run.get("images", 0), run.get("not_in_this_run", 0),
             len(run.get("files") or [])] for run in runs]
    return ["<div class=warning><p>The output location also holds outputs of other runs. This report does not "
            "include them, and their files that are still there (analysis.json: totals.other_runs) are not this "
            "run's:</p>" + _table(["run", "images it explained", "not explained by this run", "its files still there"],
                                  rows, text_columns=1) + "</div>"]


def _segmentation_sentence(summary: dict) -> str:
    settings = summary["settings"]
    method = settings.get("segmentation", "")
    description = summary.get("estimator", {}).get("segmentation") or SEGMENTATIONS.get(method, method)
    return (f"Kernel SHAP over superpixels ({settings.get('num_segments', '?')} segments asked per image), "
            f"segmentation <b>{_escape(method)}</b>: {_escape(description)}; baseline "
            f"{_escape(settings.get('baseline', ''))}{_sharpening_sentence(summary)}.")


def _baseline_error_sentence(summary: dict) -> str:
    """What the standard errors leave out: the standard errors hold for this run's baseline image; a noise
    baseline is drawn from the seed, so another seed is another game."""
    settings = summary["settings"]
    if settings.get("baseline") == "noise":
        return (f"The standard errors and true values are for this run's baseline image: random noise drawn from "
                f"seed {settings.get('seed', '?')}. Another --seed draws other noise, and the values and base "
                "values change, often by more than these standard errors; a fixed baseline (an image file, or "
                "black, mean or blur) gives the same game in every run.")
    return ("The standard errors and true values are for this run's baseline image "
            f"({settings.get('baseline', '')}), the same in every run.")


def _sharpening_sentence(summary: dict) -> str:
    """'; focus ...; refinement ...' from the estimator block (empty for older summaries)."""
    estimator = summary.get("estimator", {})
    parts = [f"; {name} {_escape(estimator[name])}" for name in ("focus", "refinement") if name in estimator]
    return "".join(parts)


def _provenance(summary: dict) -> str:
    """The header's table of which model, when, and by what: endpoint, time (UTC), tool version."""
    predictor = summary.get("predictor") or {}
    endpoint = summary.get("endpoint") or predictor.get("endpoint")
    model = endpoint or "not recorded (explained through a Python callable, or by an older version)"
    if endpoint and predictor.get("transport") and predictor.get("endpoint") == endpoint:
        model = f"{endpoint} ({predictor['transport']})"
    created = summary.get("created_utc")
    rows = [["Model (endpoint)", model],
            ["Report written", f"{created.replace('T', ' ').rstrip('Z')} UTC" if created else "not recorded"],
            ["Tool", f"clearsight {summary.get('tool_version') or '(version not recorded)'}"],
            ["Task", summary.get("task", "detection")]]
    source = summary.get("settings_source") or {}
    if source.get("clarify_config"):
        rows.append(["Settings from", _clarify_sentence(source)])
    body = "".join(f"<tr><th scope=row>{_escape(name)}</th><td class=text>{_escape(value)}</td></tr>"
                   for name, value in rows)
    return f"<div class=\"scroll provenance\"><table>{body}</table></div>"


def _clarify_sentence(source: dict) -> str:
    """The provenance row of a run given a Clarify config: the file, the keys whose values the run took,
    those an option overrode, and the keys it ignored with the reason."""
    taken = [key or name for name, key in (source.get("options_from_config") or {}).items()]
    parts = [f"Clarify config {source['clarify_config']}"
             + (f" ({source['schema_check']})" if source.get("schema_check") else ""),
             "values taken from it: " + (", ".join(taken) or "none")]
    if source.get("options_overridden"):
        parts.append("set there but overridden by options or their variables: "
                     + ", ".join("--" + name.replace("_", "-") for name in source["options_overridden"]))
    if source.get("dataset_uri"):
        parts.append(f"images {'from' if source.get('images_from_dataset_uri') else 'given instead of'} its "
                     f"dataset_uri {source['dataset_uri']}")
    ignored = source.get("config_keys_ignored") or {}
    if ignored:
        parts.append("keys accepted but ignored: " + "; ".join(f"{key} ({why})" for key, why in ignored.items()))
    return "; ".join(parts)


# What the columns of an image's table mean, for a reader who is not an engineer.
_LEGEND = [
    ("score", "how sure the model is of this object or class on the whole image (0 to 1)"),
    ("prediction", "the score the explanation accounts for: the model's score with every segment shown"),
    ("base value", "the score with every segment hidden (replaced by the baseline); the SHAP values of "
                   "the segments add up to prediction minus base value"),
    ("sum of values", "that sum, as computed"),
    ("max std. error", "the largest standard error of the target's SHAP values: how far a value may be off "
                       "from sampling alone"),
]
_BOX_LEGEND = ("box", "where the object is: left, top, right, bottom edges as fractions of the image's width "
                      "and height (0 = left or top edge, 1 = right or bottom edge)")


def _legend(task: str) -> str:
    """One short definition list of the per-image table's columns."""
    entries = _LEGEND + ([_BOX_LEGEND] if task == "detection" else [])
    items = "".join(f"<dt>{_escape(name)}</dt><dd>{_escape(text)}</dd>" for name, text in entries)
    return f"<details open class=legend><summary>What the table columns mean</summary><dl>{items}</dl></details>"


def write_report(summary: dict, path: Path, files_dir: Path | None = None,
                 embed_bytes: int = REPORT_EMBED_BYTES) -> None:
    """Write report.html: one portable page, the images embedded (data: URIs) up to ``embed_bytes``.

    files_dir: where the run's JPEGs are (default: the report's folder); each embedded image
    also links to its file there (a file missing there is referenced by its relative URL). Per target: the image with the box and the heatmap with
    numbered segments, the smallest sets of segments that keep and that remove the score,
    and the deletion/insertion curves (with metrics); images that failed are listed.
    embed_bytes: the images' files are embedded whole image by image, in the report's order, while
    their sizes sum to at most this; the later images' figures are linked to their files, and the
    page says so at its top (a run of thousands of images would otherwise make a page of gigabytes
    that no browser opens, built in memory). Links (the figures' captions, linked figures, the npz
    files) are relative: the page belongs in ``files_dir``. The page is written section by section
    into a temporary file beside ``path``, which replaces ``path`` only when it is whole.
    """
    if embed_bytes < 0:
        raise ValueError(f"embed_bytes must be >= 0, got {embed_bytes}")
    path = Path(path)
    files_dir = Path(files_dir) if files_dir is not None else path.parent
    not_applied = summary.get("settings_not_applied") or {}
    settings_rows = [[key, json.dumps(value) + (f" (not applied: {not_applied[key]})" if key in not_applied else "")]
                     for key, value in summary["settings"].items()]
    totals = summary["totals"]
    images = summary["images"]
    embedded = _images_within(images, files_dir, embed_bytes)
    contents = "".join(f"<li><a href=\"#image-{number}\">{_escape(item['stem'])}</a> "
                       f"({len(item['targets'])} target(s))</li>"
                       for number, item in enumerate(images, start=1))
    head = [
        "<h1>clearsight explanation report</h1>",
        *_incomplete_notes(totals),
        *_linked_figures_note(images, embedded, embed_bytes),
        _provenance(summary),
        f"<p>{totals['images']} image(s), {totals['targets']} target(s), "
        f"{totals['model_calls']} model calls, {_time_sentence(totals)}.</p>",
        f"<p>{_segmentation_sentence(summary)} Blue segments raise the target's score, red segments "
        "lower it (a segment that refinement split off shows its share of its parent's value); the heatmaps number the segments the tables and sets name (a number too big for its "
        "segment sits beside it, with a line to it). Values of a "
        "target sum to prediction - base value; standard errors are sandwich estimates (about 95% of true values lie within 1.96 standard errors of them; "
        "unknown where the model calls were too few to estimate them, about 2 per segment + 4 or fewer, or the drawn "
        "coalitions did not tell some segments apart: the image's warnings say so). "
        f"{_escape(_baseline_error_sentence(summary))}</p>",
        _legend(summary.get("task", "detection")),
        *_failure_notes(totals),
        *_other_run_notes(totals),
        "<details open><summary>Settings</summary>",
        _table(["setting", "value"], settings_rows, text_columns=2),
        "</details>",
        f"<nav><ul>{contents}</ul></nav>" if len(images) > 1 else "",
    ]
    with atomic_open(path, text=True) as page:
        _write_page(page, head, images, embedded, files_dir, summary)


def _write_page(page, head: list[str], images: list[dict], embedded: int, files_dir: Path, summary: dict) -> None:
    """The page's head, then one section per image (the first ``embedded`` with their figures embedded)."""
    page.write("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
               "<meta name=viewport content=\"width=device-width, initial-scale=1\">"
               "<title>clearsight explanation report</title>"
               f"<style>{_STYLE}</style></head><body>\n" + "\n".join(head))
    for number, item in enumerate(images, start=1):
        page.write("\n" + _image_section(number, item, files_dir if number <= embedded else None,
                                          summary.get("task", "detection"), summary["settings"]))
    page.write("\n</body></html>\n")


def _images_within(images: list[dict], files_dir: Path, budget: int) -> int:
    """How many of ``images``, from the first, have figures (their JPEGs in ``files_dir``) whose
    sizes sum to at most ``budget`` bytes."""
    total = 0
    for count, item in enumerate(images):
        for name in item.get("files", []):
            if name.endswith(".jpeg"):
                try:
                    total += (files_dir / name).stat().st_size
                except OSError:
                    pass  # not there: linked in any case
        if total > budget:
            return count
    return len(images)


def _linked_figures_note(images: list[dict], embedded: int, budget: int) -> list[str]:
    """Which images' figures are links, not embedded (past the embedding budget); nothing when all are embedded."""
    if embedded >= len(images):
        return []
    limit = f"{budget / 2**20:g} MiB"
    linked = _image_range(embedded + 1, len(images))
    if embedded == 0:
        told = (f"The figures of {linked} are links to their files beside this page (the first image's files "
                f"alone are over the {limit} a page embeds at most)")
    else:
        told = (f"This page embeds the figures of {_image_range(1, embedded)} of {len(images)} (their files, up to "
                f"{limit} in all); those of {linked} are links to their files beside this page")
    return [f"<div class=warning><p>{_escape(told)}: keep the page in its folder.</p></div>"]


def _image_range(first: int, last: int) -> str:
    """'image 3' or 'images 3 to 7' (1-based, in the page's order)."""
    return f"image {first}" if first == last else f"images {first} to {last}"
