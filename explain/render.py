"""Figures of explanations: heatmaps with numbered segments, Clarify's file names (blue raises the score)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .detection import class_name
from .errors import ExplainError
from .metrics import smallest_sets

__all__ = ["render_explanation", "plot_explanation", "segment_label_positions", "heatmap_file_name",
           "heatmap_box_number", "objects_file_name", "classification_file_name"]

HEATMAP_COLORMAP = "bwr_r"  # blue = positive (raises the score), red = negative
_DPI = 100


def heatmap_file_name(stem: str, box_number: int) -> str:
    """Clarify's name for target ``box_number`` (1-based): shap_<stem>_box<k>_object.jpeg."""
    return f"shap_{stem}_box{box_number}_object.jpeg"


def heatmap_box_number(stem: str, name: str) -> int | None:
    """k when ``name`` is ``heatmap_file_name(stem, k)`` exactly, else None.

    Only names this module writes match (k >= 1 in decimal, no leading zero): for stem
    ``x.png``, ``shap_x.png_box2_object.jpeg`` gives 2; ``shap_x.png2_box2_object.jpeg``,
    ``shap_xx.png_box2_object.jpeg`` and ``shap_x.png_box02_object.jpeg`` give None.
    """
    prefix, suffix = f"shap_{stem}_box", "_object.jpeg"
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    digits = name[len(prefix):len(name) - len(suffix)]
    if not (digits.isascii() and digits.isdecimal()) or digits.startswith("0"):
        return None
    return int(digits)


def objects_file_name(stem: str) -> str:
    return f"{stem}_objects.jpeg"


def classification_file_name(stem: str) -> str:
    return f"shap_{stem}.jpeg"


def _figure(image: np.ndarray):
    """One panel sized to the image (long side 6 inches), axes off. A bare Figure: no pyplot state,
    no backend switched (savefig draws it with Agg), so notebooks keep their own backend."""
    from matplotlib.figure import Figure

    height, width = image.shape[:2]
    scale = 6.0 / max(width, height)
    panel_width, panel_height = max(width * scale, 3.0), max(height * scale, 3.0)
    figure = Figure(figsize=(panel_width + 1.2, panel_height + 0.6), dpi=_DPI)
    axis = figure.subplots()
    axis.set_axis_off()
    return figure, axis


def _box_pixels(box: np.ndarray, height: int, width: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = np.clip(np.asarray(box, dtype=np.float64), 0.0, 1.0)
    return x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height


def segment_label_positions(segments: np.ndarray) -> np.ndarray:
    """Where to write each segment's number: (S, 2) float (x, y) pixel coordinates.

    segments: (H, W) int labels 0..S-1. Each position is the segment's pixel farthest from
    its border (and the image's edge), so it lies inside the segment even when the segment
    is not convex, where its centroid may not.
    """
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    segments = np.asarray(segments)
    num_segments = int(segments.max()) + 1
    interior = np.pad(~find_boundaries(segments, mode="thick"), 1, constant_values=False)
    distance = ndimage.distance_transform_edt(interior)[1:-1, 1:-1]
    positions = ndimage.maximum_position(distance, labels=segments + 1,
                                         index=np.arange(1, num_segments + 1))
    return np.array([(col, row) for row, col in positions], dtype=np.float64).reshape(-1, 2)


def _draw_segment_numbers(axis, segments: np.ndarray) -> None:
    from matplotlib import patheffects

    num_segments = int(segments.max()) + 1
    fontsize = 8 if num_segments <= 40 else 6
    outline = [patheffects.withStroke(linewidth=2.2, foreground="black")]
    for number, (x, y) in enumerate(segment_label_positions(segments)):
        axis.text(x, y, str(number), color="white", fontsize=fontsize, fontweight="bold",
                  ha="center", va="center", path_effects=outline)


def _draw_heatmap(axis, image: np.ndarray, segments: np.ndarray, values: np.ndarray,
                  box: np.ndarray | None, title: str, numbers: bool = True):
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
        _draw_box(axis, box, height, width)
    if numbers:
        _draw_segment_numbers(axis, segments)
    axis.set_title(title, fontsize=9)
    return mappable


def _draw_box(axis, box: np.ndarray, height: int, width: int) -> None:
    from matplotlib.patches import Rectangle

    x, y, box_width, box_height = _box_pixels(box, height, width)
    axis.add_patch(Rectangle((x, y), box_width, box_height, fill=False, edgecolor="lime",
                             linewidth=2.0))


def _draw_subset(axis, image: np.ndarray, segments: np.ndarray, faded: np.ndarray,
                 box: np.ndarray | None, title: str) -> None:
    """The image with the segments in ``faded`` ((S,) bool) washed out toward white."""
    from skimage.segmentation import find_boundaries

    height, width = image.shape[:2]
    pixels_faded = faded[segments]
    shown = image.astype(np.float64)
    shown[pixels_faded] = 0.25 * shown[pixels_faded] + 0.75 * 235.0
    axis.imshow(shown.astype(np.uint8))
    outline = np.zeros((height, width, 4))
    outline[find_boundaries(segments, mode="inner")] = (0.3, 0.3, 0.3, 0.6)
    axis.imshow(outline)
    if box is not None:
        _draw_box(axis, box, height, width)
    axis.set_title(title, fontsize=9)


def _target_title(explanation, index: int, label_headers) -> str:
    name = class_name(int(explanation.labels[index]), label_headers)
    score = float(explanation.target_scores[index])
    if explanation.task == "detection":
        return f"box {index + 1}: {name} {score:.2f}"
    return f"{name} {score:.2f}"


def _target_sets(explanation, index: int) -> dict | None:
    metrics = explanation.metrics[index] if explanation.metrics is not None else None
    if metrics is None:
        return None
    return smallest_sets(explanation.shap_values[index], metrics["deletion_curve"],
                         metrics["insertion_curve"], explanation.base_values[index],
                         explanation.predictions[index])


def plot_explanation(explanation, targets: Sequence[int] | None = None,
                     label_headers: Sequence[str] | None = None):
    """A matplotlib Figure (no pyplot state) of an explanation, one block per target.

    Each block: the image with the target's box, the heatmap of its SHAP values over the
    segment outlines with every segment numbered (blue raises the score, red lowers it) and,
    when metrics were computed (``ExplainConfig(metrics=True)``), the smallest set of
    top-ranked segments that keeps the score and the one whose removal removes it
    (``explain.metrics.smallest_sets``; the other segments washed out). targets: 0-based
    indices (default every target). label_headers: class names (default the explanation's).
    """
    from matplotlib.figure import Figure

    image = explanation.image
    if image is None:
        raise ExplainError("this explanation has no image (read from an older .npz file): load it with "
                           "Explanation.load(path, image=load_image(original_file))")
    if label_headers is None:
        label_headers = explanation.label_headers
    if targets is None:
        targets = range(explanation.num_targets)
    targets = [int(index) for index in targets]
    for index in targets:
        if not 0 <= index < explanation.num_targets:
            raise ExplainError(f"target index {index} out of range: this explanation has "
                               f"{explanation.num_targets} target(s), 0..{explanation.num_targets - 1}")
    segments = explanation.segments
    blocks = [(index, _target_sets(explanation, index)) for index in targets]
    rows = sum(2 if sets is not None else 1 for _, sets in blocks) or 1
    height, width = image.shape[:2]
    scale = 4.0 / max(width, height)  # long side of a panel: 4 inches
    panel_width, panel_height = max(width * scale, 2.5), max(height * scale, 2.5)
    figure = Figure(figsize=(2 * panel_width + 1.0, rows * (panel_height + 0.45)), dpi=_DPI,
                    layout="constrained")
    axes = figure.subplots(rows, 2, squeeze=False)
    for axis in axes.ravel():
        axis.set_axis_off()
    if not blocks:
        axes[0, 0].imshow(image)
        axes[0, 0].set_title("no target above the probability threshold", fontsize=9)
        return figure
    row = 0
    for index, sets in blocks:
        box = explanation.boxes[index] if explanation.boxes is not None else None
        axes[row, 0].imshow(image)
        if box is not None:
            _draw_box(axes[row, 0], box, height, width)
        axes[row, 0].set_title(_target_title(explanation, index, label_headers), fontsize=9)
        title = (f"SHAP values: base {explanation.base_values[index]:.2f}, "
                 f"prediction {explanation.predictions[index]:.2f}")
        mappable = _draw_heatmap(axes[row, 1], image, segments, explanation.shap_values[index], box, title)
        figure.colorbar(mappable, ax=axes[row, 1], fraction=0.046, pad=0.02,
                        label="blue raises the score")
        if sets is not None:
            num_segments = explanation.shap_values.shape[1]
            keep, remove = sets["keep"], sets["remove"]
            kept = np.ones(num_segments, dtype=bool)
            kept[keep["segments"]] = False
            _draw_subset(axes[row + 1, 0], image, segments, kept, box,
                         f"keeps the score: {len(keep['segments'])} of {num_segments} segments "
                         f"(score {keep['score']:.2f})")
            removed = np.zeros(num_segments, dtype=bool)
            removed[remove["segments"]] = True
            _draw_subset(axes[row + 1, 1], image, segments, removed, box,
                         f"removes it: {len(remove['segments'])} of {num_segments} segments "
                         f"(score {remove['score']:.2f} without)")
        row += 2 if sets is not None else 1
    return figure


def _save(figure, path: Path) -> None:
    figure.savefig(path, format="jpeg", dpi=_DPI, bbox_inches="tight", pil_kwargs={"quality": 90})


def render_explanation(explanation, stem: str, out_dir: Path,
                       label_headers: tuple[str, ...] | None = None) -> list[str]:
    """Write the images of one explanation into ``out_dir``; returns the file names.

    Detection: one ``shap_<stem>_box<k>_object.jpeg`` per target (``plot_explanation`` of
    that target: the image with its box, the heatmap with numbered segments and, with
    metrics, the smallest sets that keep and remove the score) and ``<stem>_objects.jpeg``
    (every target labelled with class name and score). Classification: ``shap_<stem>.jpeg``
    with one block per explained class. Colour scale symmetric around 0: blue raises the
    score, red lowers it.
    """
    out_dir = Path(out_dir)
    written: list[str] = []
    if explanation.task == "detection":
        for index in range(explanation.num_targets):
            file_name = heatmap_file_name(stem, index + 1)
            _save(plot_explanation(explanation, [index], label_headers), out_dir / file_name)
            written.append(file_name)
        written.append(_render_objects(explanation, stem, out_dir, label_headers))
        return written
    file_name = classification_file_name(stem)
    _save(plot_explanation(explanation, None, label_headers), out_dir / file_name)
    written.append(file_name)
    return written


def _render_objects(explanation, stem: str, out_dir: Path,
                    label_headers: tuple[str, ...] | None) -> str:
    from matplotlib.patches import Rectangle

    image = explanation.image
    height, width = image.shape[:2]
    figure, axis = _figure(image)
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
