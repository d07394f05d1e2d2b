"""Heatmap and object images with Clarify's file names (blue raises the score, red lowers it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .detection import class_name

__all__ = ["render_explanation", "heatmap_file_name", "objects_file_name",
           "classification_file_name"]

HEATMAP_COLORMAP = "bwr_r"  # blue = positive (raises the score), red = negative
_DPI = 100


def heatmap_file_name(stem: str, box_number: int) -> str:
    """Clarify's name for target ``box_number`` (1-based): shap_<stem>_box<k>_object.jpeg."""
    return f"shap_{stem}_box{box_number}_object.jpeg"


def objects_file_name(stem: str) -> str:
    return f"{stem}_objects.jpeg"


def classification_file_name(stem: str) -> str:
    return f"shap_{stem}.jpeg"


def _figure(image: np.ndarray, panels: int = 1):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    height, width = image.shape[:2]
    scale = 6.0 / max(width, height)  # long side 6 inches
    panel_width, panel_height = max(width * scale, 3.0), max(height * scale, 3.0)
    figure = Figure(figsize=(panel_width * panels + 1.2, panel_height + 0.6), dpi=_DPI)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for axis in axes:
        axis.set_axis_off()
    return figure, axes


def _box_pixels(box: np.ndarray, height: int, width: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = np.clip(np.asarray(box, dtype=np.float64), 0.0, 1.0)
    return x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height


def _draw_heatmap(axis, image: np.ndarray, segments: np.ndarray, values: np.ndarray,
                  box: np.ndarray | None, title: str):
    from matplotlib.patches import Rectangle
    from skimage.segmentation import find_boundaries

    height, width = image.shape[:2]
    gray = image.astype(np.float64).mean(axis=2)
    axis.imshow(gray, cmap="gray", vmin=0, vmax=255)
    limit = float(np.abs(values).max()) if values.size else 0.0
    limit = limit if limit > 0 else 1.0
    pixel_values = values[segments] if values.size else np.zeros(segments.shape)
    mappable = axis.imshow(pixel_values, cmap=HEATMAP_COLORMAP, vmin=-limit, vmax=limit,
                           alpha=0.55)
    outline = np.zeros((height, width, 4))
    outline[find_boundaries(segments, mode="inner")] = (1.0, 1.0, 0.0, 0.9)
    axis.imshow(outline)
    if box is not None:
        x, y, box_width, box_height = _box_pixels(box, height, width)
        axis.add_patch(Rectangle((x, y), box_width, box_height, fill=False, edgecolor="lime",
                                 linewidth=2.0))
    axis.set_title(title, fontsize=9)
    return mappable


def _save(figure, path: Path) -> None:
    figure.savefig(path, format="jpeg", dpi=_DPI, bbox_inches="tight",
                   pil_kwargs={"quality": 90})


def render_explanation(explanation, stem: str, out_dir: Path,
                       label_headers: tuple[str, ...] | None = None) -> list[str]:
    """Write the images of one explanation into ``out_dir``; returns the file names.

    Detection: one ``shap_<stem>_box<k>_object.jpeg`` per target (heatmap over the image,
    segment outlines, the target box) and ``<stem>_objects.jpeg`` (every target labelled
    with class name and score). Classification: ``shap_<stem>.jpeg`` with one panel per
    explained class. Colour scale symmetric around 0: blue raises the score, red lowers it.
    """
    out_dir = Path(out_dir)
    image, segments = explanation.image, explanation.segments
    written: list[str] = []
    if explanation.task == "detection":
        for index in range(explanation.num_targets):
            figure, axes = _figure(image)
            name = class_name(int(explanation.labels[index]), label_headers)
            title = (f"box {index + 1}: {name} {explanation.target_scores[index]:.2f}  "
                     f"(base {explanation.base_values[index]:.2f})")
            mappable = _draw_heatmap(axes[0], image, segments, explanation.shap_values[index],
                                     explanation.boxes[index], title)
            figure.colorbar(mappable, ax=axes[0], fraction=0.046, pad=0.02,
                            label="SHAP value (blue raises the score)")
            file_name = heatmap_file_name(stem, index + 1)
            _save(figure, out_dir / file_name)
            written.append(file_name)
        written.append(_render_objects(explanation, stem, out_dir, label_headers))
        return written
    panels = max(explanation.num_targets, 1)
    figure, axes = _figure(image, panels)
    for index in range(explanation.num_targets):
        name = class_name(int(explanation.labels[index]), label_headers)
        title = f"{name} {explanation.target_scores[index]:.2f}"
        mappable = _draw_heatmap(axes[index], image, segments, explanation.shap_values[index],
                                 None, title)
        figure.colorbar(mappable, ax=axes[index], fraction=0.046, pad=0.02)
    file_name = classification_file_name(stem)
    _save(figure, out_dir / file_name)
    written.append(file_name)
    return written


def _render_objects(explanation, stem: str, out_dir: Path,
                    label_headers: tuple[str, ...] | None) -> str:
    from matplotlib.patches import Rectangle

    image = explanation.image
    height, width = image.shape[:2]
    figure, axes = _figure(image)
    axis = axes[0]
    axis.imshow(image)
    for index in range(explanation.num_targets):
        x, y, box_width, box_height = _box_pixels(explanation.boxes[index], height, width)
        axis.add_patch(Rectangle((x, y), box_width, box_height, fill=False, edgecolor="lime",
                                 linewidth=2.0))
        name = class_name(int(explanation.labels[index]), label_headers)
        axis.text(x, max(y - 2, 0), f"{index + 1}: {name} {explanation.target_scores[index]:.2f}",
                  color="black", fontsize=8, va="bottom",
                  bbox={"facecolor": "lime", "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    if explanation.num_targets == 0:
        axis.set_title("no object above the probability threshold", fontsize=9)
    file_name = objects_file_name(stem)
    _save(figure, out_dir / file_name)
    return file_name
