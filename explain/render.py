"""Figures of explanations: heatmaps with numbered segments, Clarify's file names (blue raises the score)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .detection import class_name
from .errors import ExplainError
from .fonts import class_name_fonts, drawable_name
from .metrics import smallest_sets

__all__ = ["render_explanation", "plot_explanation", "save_jpeg", "figure_class_name", "FIGURE_NAME_CHARACTERS",
           "segment_label_positions", "top_segments", "named_segments", "set_as_named",
           "place_segment_labels", "SegmentLabel", "TOP_SEGMENTS", "heatmap_file_name", "heatmap_box_number",
           "objects_file_name", "classification_file_name"]

HEATMAP_COLORMAP = "bwr_r"  # blue = positive (raises the score), red = negative
TOP_SEGMENTS = 5  # segments per target in the report's table (largest |SHAP value|), numbered on its heatmap
_DPI = 100
_LABEL_FONT_SIZE = 8
# characters of a class name a figure shows (the report and analysis.json have it whole): a longer one made
# the figure as wide as its title, past what a JPEG can hold at ~9,000 characters
FIGURE_NAME_CHARACTERS = 40
_LABEL_MARGIN = 3.0  # display pixels around a label's text kept free (its outline stroke and some air)
# A number may hide at most this share of the segments' pixels (each segment's share, summed); a
# segment too small for its number gets it beside it, with a line to it, so its colour stays visible.
_MAX_COVER = 0.25
_CHUNK = 256  # candidate places checked at once for a number's first free place


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
    no backend switched (savefig draws it with Agg), so notebooks keep their own backend; no layout
    engine whatever the user's matplotlibrc says (``figure.autolayout``), so the file is the same."""
    from matplotlib.figure import Figure

    height, width = image.shape[:2]
    scale = 6.0 / max(width, height)
    panel_width, panel_height = max(width * scale, 3.0), max(height * scale, 3.0)
    figure = Figure(figsize=(panel_width + 1.2, panel_height + 0.6), dpi=_DPI, layout="none")
    axis = figure.subplots()
    _hide_axes(axis)
    return figure, axis


def _hide_axes(axis) -> None:
    """No frame, ticks or labels on an image panel. The axes get no ticks either, not only left
    undrawn (``set_axis_off``): the layout and the titles' placement then skip computing ticks that
    are never drawn (in a profile of the demo's figures, most of their layout time). A user who turns
    the axes back on (``set_axis_on``) gets the frame and labels, and ticks where a locator is set."""
    from matplotlib.ticker import NullLocator

    axis.set_axis_off()
    axis.xaxis.set_major_locator(NullLocator())
    axis.yaxis.set_major_locator(NullLocator())


def _box_pixels(box: np.ndarray, height: int, width: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = np.clip(np.asarray(box, dtype=np.float64), 0.0, 1.0)
    return x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height


def segment_label_positions(segments: np.ndarray) -> np.ndarray:
    """Where to write each segment's number: (S, 2) float (x, y) pixel coordinates.

    segments: (H, W) int labels 0..S-1. Each position is the segment's pixel farthest from
    its border (and the image's edge), so it lies inside the segment even when the segment
    is not convex, where its centroid may not.
    """
    segments = np.asarray(segments)
    return _deepest_pixels(segments, _border_distance(segments))


def _border_distance(segments: np.ndarray) -> np.ndarray:
    """(H, W) float: each pixel's distance to its segment's border or the image's edge."""
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    interior = np.pad(~find_boundaries(segments, mode="thick"), 1, constant_values=False)
    return ndimage.distance_transform_edt(interior)[1:-1, 1:-1]


def _deepest_pixels(segments: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """(S, 2) float (x, y): each segment's pixel of largest ``distance`` (``_border_distance``)."""
    from scipy import ndimage

    num_segments = int(segments.max()) + 1
    positions = ndimage.maximum_position(distance, labels=segments + 1,
                                         index=np.arange(1, num_segments + 1))
    return np.array([(col, row) for row, col in positions], dtype=np.float64).reshape(-1, 2)


def top_segments(values: np.ndarray, count: int = TOP_SEGMENTS) -> list[int]:
    """The ``count`` segments of largest |value| (values: (S,)), ties in segment order: the report's
    table and the first numbers on the heatmap, one rule for both."""
    order = np.argsort(-np.abs(np.asarray(values, dtype=np.float64)), kind="stable")[:count]
    return [int(segment) for segment in order]


def set_as_named(segments: Sequence[int], total: int, numbered: Sequence[int] = ()) -> tuple[list[int], bool]:
    """How the report names a set of ``segments`` out of ``total``: the set itself (in its order), or the
    segments it leaves out (ascending; second item True) when naming those puts fewer numbers on the
    heatmap than ``numbered`` (the table's top segments) already has. A keep set of 63 of 64 segments
    is "every segment but 17", and 17 is numbered; a set of 11 of 18 that holds the top 5 is itself."""
    inside = {int(segment) for segment in segments}
    left_out = [segment for segment in range(total) if segment not in inside]
    already = {int(segment) for segment in numbered}
    if len(set(left_out) - already) < len(inside - already):
        return left_out, True
    return [int(segment) for segment in segments], False


def named_segments(values: np.ndarray, sets: dict | None = None, count: int = TOP_SEGMENTS) -> list[int]:
    """The segments the report names for one target, in labelling order.

    values: (S,) SHAP values. ``top_segments`` (the report's table), then the segments of the smallest
    sets that keep and remove the score (``explain.metrics.smallest_sets``), when given, each as the
    report names it (``set_as_named``: by the segments it leaves out when they are fewer to number).
    """
    top = top_segments(values, count)
    named = list(top)
    for key in ("keep", "remove"):
        listed, _ = set_as_named((sets or {}).get(key, {}).get("segments", []), len(values), top)
        named += [segment for segment in listed if segment not in named]
    return named


@dataclass(frozen=True)
class SegmentLabel:
    """Where one segment's number goes, in image pixels.

    box: (x0, y0, x1, y1) of the number with its margin; anchor: the point of the segment a
    line from the box leads to, or None when the number sits inside its segment.
    """

    segment: int
    box: tuple[float, float, float, float]
    anchor: tuple[float, float] | None

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def _covered(integral: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Pixels of a mask inside each box: integral (H+1, W+1) summed mask, boxes (N, 4) -> (N,)."""
    height, width = integral.shape[0] - 1, integral.shape[1] - 1
    x0 = np.clip(np.floor(boxes[:, 0]).astype(np.int64), 0, width)
    y0 = np.clip(np.floor(boxes[:, 1]).astype(np.int64), 0, height)
    x1 = np.clip(np.ceil(boxes[:, 2]).astype(np.int64), 0, width)
    y1 = np.clip(np.ceil(boxes[:, 3]).astype(np.int64), 0, height)
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def _first_free(centres: np.ndarray, size: tuple[float, float], placed: list, hidden: np.ndarray,
                width: int, height: int) -> np.ndarray | None:
    """The first of ``centres`` ((N, 2) x, y) whose box lies in the image, meets no placed box and
    hides at most ``_MAX_COVER`` of the segments' pixels (``hidden``: the summed-area table of each
    pixel's 1 / its segment's size, so a box sums the shares it hides); None when there is none.
    Checked a chunk of centres at a time: the first free one is usually among the first few."""
    half_width, half_height = size[0] / 2, size[1] / 2
    others = np.asarray(placed, dtype=np.float64).reshape(-1, 4)
    for start in range(0, len(centres), _CHUNK):
        chunk = centres[start:start + _CHUNK]
        boxes = np.stack([chunk[:, 0] - half_width, chunk[:, 1] - half_height,
                          chunk[:, 0] + half_width, chunk[:, 1] + half_height], axis=1)
        ok = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= width) & (boxes[:, 3] <= height)
        ok &= _covered(hidden, boxes) <= _MAX_COVER
        meets = ((boxes[:, None, 0] < others[None, :, 2]) & (others[None, :, 0] < boxes[:, None, 2])
                 & (boxes[:, None, 1] < others[None, :, 3]) & (others[None, :, 1] < boxes[:, None, 3]))
        ok &= ~meets.any(axis=1)
        found = np.flatnonzero(ok)
        if found.size:
            return boxes[found[0]]
    return None


def place_segment_labels(segments: np.ndarray, numbers: Sequence[int],
                         label_size: Callable[[str], tuple[float, float]]) -> list[SegmentLabel]:
    """Non-overlapping places for the numbers of segments ``numbers``, in that order of priority.

    segments: (H, W) int labels 0..S-1. label_size: a number's text -> (width, height) in
    image pixels, margin included. Each number goes inside its segment, as deep inside as a
    free place allows, where its box hides at most a quarter of the segments' pixels (the
    shares of each segment it covers, summed: small segments keep their colour visible);
    else beside it, at the nearest such free place, with a line to the segment (``anchor``). A box never meets an
    earlier one; only when the image has no free place left at all does a number go on its
    segment regardless (then it may overlap).
    """
    segments = np.asarray(segments)
    height, width = segments.shape
    distance = _border_distance(segments)
    anchors = _deepest_pixels(segments, distance)
    sizes = np.bincount(segments.ravel(), minlength=int(segments.max()) + 1)
    hidden = np.zeros((height + 1, width + 1), dtype=np.float64)
    hidden[1:, 1:] = (1.0 / sizes[segments]).cumsum(axis=0).cumsum(axis=1)
    by_segment = np.argsort(segments.ravel(), kind="stable")  # each segment's pixels, in row-major order
    first_pixel = np.concatenate([[0], np.cumsum(sizes)])
    placed: list[tuple[float, float, float, float]] = []
    labels = []
    for number in numbers:
        size = label_size(str(number))
        rows, cols = np.divmod(by_segment[first_pixel[number]:first_pixel[number + 1]], width)
        order = np.argsort(-distance[rows, cols], kind="stable")
        order = order[::max(1, len(order) // 400)]  # a few hundred candidates, deepest first
        inside = np.stack([cols[order] + 0.5, rows[order] + 0.5], axis=1).astype(np.float64)
        anchor = anchors[number] + 0.5
        box = _first_free(inside, size, placed, hidden, width, height)
        lead = None
        if box is None:  # beside the segment: grid points nearest its anchor first
            step = max(2.0, min(size) / 3)
            grid_x, grid_y = np.meshgrid(np.arange(size[0] / 2, width - size[0] / 2 + 1e-9, step),
                                         np.arange(size[1] / 2, height - size[1] / 2 + 1e-9, step))
            beside = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
            beside = beside[np.argsort(np.hypot(*(beside - anchor).T), kind="stable")]
            box = _first_free(beside, size, placed, hidden, width, height)
            lead = (float(anchor[0]), float(anchor[1]))
        if box is None:  # no free place anywhere: on the segment regardless
            box = np.array([anchor[0] - size[0] / 2, anchor[1] - size[1] / 2,
                            anchor[0] + size[0] / 2, anchor[1] + size[1] / 2])
            lead = None
        placed.append(tuple(float(v) for v in box))
        labels.append(SegmentLabel(int(number), placed[-1], lead))
    return labels


def _draw_segment_numbers(axis, segments: np.ndarray, numbers: Sequence[int]) -> list:
    """Write ``numbers`` on the heatmap in ``axis`` (laid out already: its scale is final); the Text artists."""
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.font_manager import FontProperties

    figure = axis.figure
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    renderer = figure.canvas.get_renderer()
    origin, unit = axis.transData.transform([[0.0, 0.0], [1.0, 1.0]])
    pixels_per_unit = abs(unit[0] - origin[0])  # display pixels per image pixel (aspect equal)
    font = FontProperties(size=_LABEL_FONT_SIZE, weight="bold")

    def label_size(text: str) -> tuple[float, float]:
        text_width, text_height, _ = renderer.get_text_width_height_descent(text, font, ismath=False)
        return ((text_width + 2 * _LABEL_MARGIN) / pixels_per_unit,
                (text_height + 2 * _LABEL_MARGIN) / pixels_per_unit)

    outline = [patheffects.withStroke(linewidth=2.2, foreground="black")]
    artists = []
    for label in place_segment_labels(segments, numbers, label_size):
        x, y = label.centre
        if label.anchor is not None:
            corner_x = min(max(label.anchor[0], label.box[0]), label.box[2])
            corner_y = min(max(label.anchor[1], label.box[1]), label.box[3])
            line, = axis.plot([corner_x, label.anchor[0]], [corner_y, label.anchor[1]], color="white",
                              linewidth=0.7, path_effects=[patheffects.withStroke(linewidth=1.8, foreground="black")],
                              scalex=False, scaley=False, gid=f"segment-{label.segment}-line")
            line.set_in_layout(False)
        text = axis.text(x, y, str(label.segment), color="white", fontsize=_LABEL_FONT_SIZE, fontweight="bold",
                         ha="center", va="center", path_effects=outline, gid=f"segment-{label.segment}")
        text.set_in_layout(False)
        artists.append(text)
    return artists


def _draw_heatmap(axis, image: np.ndarray, segments: np.ndarray, values: np.ndarray,
                  box: np.ndarray | None, title: str):
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


def figure_class_name(class_id: int, label_headers) -> str:
    """A class's name as the figures write it (with ``class_name_fonts``): at most FIGURE_NAME_CHARACTERS, a
    longer one cut with '…'; a character none of the fonts has is '�' (``drawable_name``)."""
    name = class_name(class_id, label_headers)
    if len(name) > FIGURE_NAME_CHARACTERS:
        name = name[:FIGURE_NAME_CHARACTERS - 1] + "…"
    return drawable_name(name)  # a character no font has: '�', said once


def _target_title(explanation, index: int, label_headers) -> str:
    name = figure_class_name(int(explanation.labels[index]), label_headers)
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
    segment outlines (blue raises the score, red lowers it) with the numbers of the segments
    the report names (``named_segments``: the table's largest |value|, the smallest sets),
    placed so that no two meet (``place_segment_labels``) and,
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
    elif isinstance(targets, (int, np.integer)):  # one target: plot(0)
        targets = [targets]
    elif isinstance(targets, (str, bytes)) or not isinstance(targets, Iterable):
        raise ExplainError(f"targets must be target indices (an int or a list of ints), got {targets!r}")
    targets = list(targets)  # a generator is read once: here, not by the check and then again below
    for index in targets:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ExplainError(f"targets must be target indices (an int or a list of ints), got {index!r} "
                               f"in {targets!r}")
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
        _hide_axes(axis)
    if not blocks:
        axes[0, 0].imshow(image)
        axes[0, 0].set_title("no target at or above the probability threshold", fontsize=9)
        figure.get_layout_engine().execute(figure)  # as below: a figure leaves here laid out
        return figure
    row = 0
    heatmaps = []
    for index, sets in blocks:
        box = explanation.boxes[index] if explanation.boxes is not None else None
        axes[row, 0].imshow(image)
        if box is not None:
            _draw_box(axes[row, 0], box, height, width)
        # a class name is text: '$' in it is no mathtext
        axes[row, 0].set_title(_target_title(explanation, index, label_headers), fontsize=9, parse_math=False,
                               fontfamily=class_name_fonts())
        title = (f"SHAP values: base {explanation.base_values[index]:.2f}, "
                 f"prediction {explanation.predictions[index]:.2f}")
        mappable = _draw_heatmap(axes[row, 1], image, segments, explanation.shap_values[index], box, title)
        heatmaps.append((axes[row, 1], named_segments(explanation.shap_values[index], sets)))
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
    # The layout fixes each panel's scale, which the numbers' sizes need: run it (and each image
    # panel's aspect) without drawing the figure, so its images are resampled only when it is drawn.
    figure.get_layout_engine().execute(figure)
    for axis, _ in heatmaps:
        axis.apply_aspect()
    for axis, numbers in heatmaps:
        _draw_segment_numbers(axis, segments, numbers)
    return figure


def save_jpeg(figure, path: Path | BinaryIO) -> None:
    """Write ``figure`` as a JPEG cropped to what it draws (``savefig(bbox_inches="tight")``), drawn once.

    savefig draws a figure an extra time before printing it when it has a layout engine or is to
    be cropped "tight", and a constrained layout runs at each draw. The layout is final here
    (``plot_explanation`` ran it; the segment numbers added since take no part in it), so the
    figure keeps it without an engine, and the crop is measured without drawing.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with matplotlib.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
        figure.set_layout_engine(None)  # no engine: the axes stay where the layout put them
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    crop = figure.get_tightbbox(canvas.get_renderer()).padded(matplotlib.rcParams["savefig.pad_inches"])
    figure.savefig(path, format="jpeg", dpi=_DPI, bbox_inches=crop, pil_kwargs={"quality": 90})


def render_explanation(explanation, stem: str, out_dir: Path,
                       label_headers: tuple[str, ...] | None = None) -> list[str]:
    """Write the images of one explanation into ``out_dir``; returns the file names.

    Detection: one ``shap_<stem>_box<k>_object.jpeg`` per target (``plot_explanation`` of
    that target: the image with its box, the heatmap with the report's segments numbered and, with
    metrics, the smallest sets that keep and remove the score) and ``<stem>_objects.jpeg``
    (every target labelled with class name and score). Classification: ``shap_<stem>.jpeg``
    with one block per explained class. Colour scale symmetric around 0: blue raises the
    score, red lowers it. label_headers: class names (default the explanation's), in every figure.
    """
    out_dir = Path(out_dir)
    written: list[str] = []
    if label_headers is None:  # the objects figure too, not only plot_explanation's (it showed class ids)
        label_headers = explanation.label_headers
    if explanation.task == "detection":
        for index in range(explanation.num_targets):
            file_name = heatmap_file_name(stem, index + 1)
            save_jpeg(plot_explanation(explanation, [index], label_headers), out_dir / file_name)
            written.append(file_name)
        written.append(_render_objects(explanation, stem, out_dir, label_headers))
        return written
    file_name = classification_file_name(stem)
    save_jpeg(plot_explanation(explanation, None, label_headers), out_dir / file_name)
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
        name = figure_class_name(int(explanation.labels[index]), label_headers)
        axis.text(x, max(y - 2, 0), f"{index + 1}: {name} {explanation.target_scores[index]:.2f}",
                  color="black", fontsize=8, va="bottom", parse_math=False, fontfamily=class_name_fonts(),
                  bbox={"facecolor": "lime", "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    if explanation.num_targets == 0:
        axis.set_title("no object at or above the probability threshold", fontsize=9)
    file_name = objects_file_name(stem)
    save_jpeg(figure, out_dir / file_name)
    return file_name
