"""Run outputs for people and programs: report.html (offline, one page) and analysis.json."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from .detection import class_name
from .manifest import atomic_write_bytes

__all__ = ["build_image_summary", "build_run_summary", "write_analysis", "write_report", "TOP_SEGMENTS"]

TOP_SEGMENTS = 5


def _top_segments(values: np.ndarray, errors: np.ndarray, count: int) -> list[dict]:
    order = np.argsort(-np.abs(values), kind="stable")[:count]
    return [{"segment": int(index), "value": float(values[index]),
             "standard_error": float(errors[index])} for index in order]


def build_image_summary(path: Path, stem: str, explanation, files: list[str], config) -> dict:
    """JSON-serialisable summary of one explained image (an entry of analysis.json)."""
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
            "max_standard_error": float(errors.max()) if errors.size else 0.0,
            "top_segments": _top_segments(values, errors, TOP_SEGMENTS),
        }
        if config.target_error is not None:
            target["converged"] = bool(explanation.converged[index])
        if explanation.metrics is not None and explanation.metrics[index] is not None:
            target["deletion_auc"] = explanation.metrics[index]["deletion_auc"]
            target["insertion_auc"] = explanation.metrics[index]["insertion_auc"]
        targets.append(target)
    height, width = explanation.image.shape[:2]
    return {
        "image": str(path),
        "stem": stem,
        "width": int(width),
        "height": int(height),
        "num_segments_requested": int(config.num_segments),
        "num_segments_used": int(explanation.num_segments_used),
        "model_calls": int(explanation.model_calls),
        "exact": bool(explanation.exact),
        "timings": {key: round(float(value), 4) for key, value in explanation.timings.items()},
        "files": files,
        "targets": targets,
    }


ESTIMATOR = {
    "method": "kernel_shap",
    "sampling": "paired, stratified by coalition size; small sizes enumerated",
    "constraint": "values sum to prediction - base_value",
    "control_variate": "one- or two-index sigmoid surrogates, bootstrap-weighted",
    "standard_errors": "paired bootstrap",
    "num_samples_counts_anchors": True,
}

SEGMENTATIONS = {
    "merged": "SLICO over-segmentation (about 4 x num_segments, grid seeds), adjacent superpixels "
              "merged by Ward's criterion on mean CIELAB colour down to num_segments",
    "slico": "SLICO (slic_zero) with k-means seeds",
}


def build_run_summary(config, image_summaries: list[dict], seconds: float) -> dict:
    """The analysis.json document of a run: settings, estimator, one entry per image, totals."""
    return {
        "version": 1,
        "tool": "clearsight.explain",
        "task": config.task,
        "settings": config.to_dict(),
        "estimator": {**ESTIMATOR, "segmentation": SEGMENTATIONS[config.segmentation]},
        "images": image_summaries,
        "totals": {
            "images": len(image_summaries),
            "targets": sum(len(item["targets"]) for item in image_summaries),
            "model_calls": sum(item["model_calls"] for item in image_summaries),
            "seconds": seconds,
        },
    }


def write_analysis(summary: dict, path: Path) -> None:
    """Write analysis.json (UTF-8, indented) through a temporary file and os.replace."""
    atomic_write_bytes(Path(path), (json.dumps(summary, indent=2) + "\n").encode("utf-8"))


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
.images { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; } img { max-width: 480px; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; } .note { color: #555; font-size: 0.9em; }
"""


def _table(header: list[str], rows: list[list], text_columns: int = 0) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = []
    for row in rows:
        cells = "".join(
            f"<td{' class=text' if column < text_columns else ''}>{html.escape(str(cell))}</td>"
            for column, cell in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _image_section(item: dict) -> str:
    parts = [f"<h2>{html.escape(item['stem'])}</h2>",
             f"<p class=note>{html.escape(item['image'])}: {item['width']}x{item['height']} px, "
             f"{item['num_segments_used']} segments (asked {item['num_segments_requested']}), "
             f"{item['model_calls']} model calls, {item['timings'].get('total_s', 0):.1f} s"
             f"{', exact Shapley values' if item['exact'] else ''}</p>"]
    images = [name for name in item["files"] if name.endswith(".jpeg")]
    figures = "".join(
        f"<figure><img src=\"{html.escape(name)}\" alt=\"{html.escape(name)}\">"
        f"<figcaption>{html.escape(name)}</figcaption></figure>" for name in images)
    parts.append(f"<div class=images>{figures}</div>")
    if not item["targets"]:
        parts.append("<p>No target: nothing scored above the probability threshold.</p>")
        return "\n".join(parts)
    has_metrics = any("deletion_auc" in target for target in item["targets"])
    header = ["#", "label", "score", "base value", "prediction", "sum of values",
              "max std. error", "box"]
    if has_metrics:
        header += ["deletion AUC", "insertion AUC"]
    rows = []
    for target in item["targets"]:
        box = "" if target["box"] is None else ", ".join(f"{v:.3f}" for v in target["box"])
        row = [target["index"], target["label"], f"{target['score']:.3f}",
               f"{target['base_value']:.3f}", f"{target['prediction']:.3f}",
               f"{target['sum_of_values']:.3f}", f"{target['max_standard_error']:.4f}", box]
        if has_metrics:
            row += [f"{target.get('deletion_auc', float('nan')):.3f}",
                    f"{target.get('insertion_auc', float('nan')):.3f}"]
        rows.append(row)
    parts.append(_table(header, rows, text_columns=2))
    top_rows = [[target["index"], target["label"], segment["segment"],
                 f"{segment['value']:+.4f}", f"{segment['standard_error']:.4f}"]
                for target in item["targets"] for segment in target["top_segments"]]
    parts.append("<p class=note>Top segments by |SHAP value| (positive raises the score).</p>")
    parts.append(_table(["#", "label", "segment", "SHAP value", "std. error"], top_rows, 2))
    return "\n".join(parts)


def _missing_notes(totals: dict) -> list[str]:
    """Paragraphs naming images that failed (with why) or are not finished yet (resumable runs)."""
    notes = []
    if totals.get("failed"):
        rows = [[item["image"], item["kind"], item["reason"]] for item in totals["failed"]]
        notes.append(f"<p class=note>{len(rows)} image(s) failed and are not in this report:</p>"
                     + _table(["image", "kind", "reason"], rows, text_columns=3))
    if totals.get("unfinished"):
        notes.append(f"<p class=note>{len(totals['unfinished'])} image(s) not explained yet (run the "
                     "same command again to finish them).</p>")
    return notes


def write_report(summary: dict, path: Path) -> None:
    """Write report.html: one self-contained page linking the JPEGs in the same directory."""
    settings = summary["settings"]
    settings_rows = [[key, json.dumps(value)] for key, value in settings.items()]
    totals = summary["totals"]
    body = [
        "<h1>clearsight explanation report</h1>",
        f"<p>{totals['images']} image(s), {totals['targets']} target(s), "
        f"{totals['model_calls']} model calls, {totals['seconds']:.1f} s. "
        "Kernel SHAP over SLIC superpixels; blue segments raise the target's score, red "
        "segments lower it. Values of a target sum to prediction - base value; standard "
        "errors are paired-bootstrap estimates.</p>",
        *_missing_notes(totals),
        "<details><summary>Settings</summary>",
        _table(["setting", "value"], settings_rows, text_columns=2),
        "</details>",
        *(_image_section(item) for item in summary["images"]),
    ]
    page = ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<title>clearsight explanation report</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    Path(path).write_text(page, encoding="utf-8")
