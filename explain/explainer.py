"""The explanation workflow: segment, mask, call the predictor in batches, estimate, write outputs."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .baselines import make_baseline
from .config import ExplainConfig
from .detection import (
    check_class_count,
    check_detection_classes,
    check_target_boxes,
    class_name,
    match_scores,
    model_class_names,
    select_classification_targets,
    select_detection_targets,
)
from .errors import ConfigError, ExplainError, PredictorError
from .feature_masks import check_segment_map
from .image_warnings import warn_about_image
from .kernel_shap import determining_samples, kernel_shap, meets_target_error, samples_with_errors
from .masking import context_foreground
from .metrics import deletion_insertion
from .model_calls import ModelCalls
from .refinement import SPLIT_CALLS, SPLIT_SIGNIFICANCE, CachedGame, refine_values, worth_splitting
from .segmentation import segment_image
from .target_segments import segment_with_boxes

__all__ = ["Explanation", "Predict", "explain_image", "save_npz"]

logger = logging.getLogger(__name__)

# A detection target whose matched score on the unmasked image differs from its own score by
# more than this share of it gets a warning (batched forward passes may differ by far less).
UNMATCHED_TOLERANCE = 0.01
# An Explanation's repr names this many targets, each with this many of its largest values.
REPR_TARGETS = 10
REPR_VALUES = 3

Predict = Callable[[np.ndarray], Sequence[np.ndarray]]


@dataclass(frozen=True)
class Explanation:
    """Kernel SHAP explanation of T targets of one image over S superpixels.

    image: (H, W, 3) uint8, the image explained (after ``resize``).
    segments: (H, W) int32, labels 0..S-1.
    shap_values, standard_errors: (T, S) float64 (sandwich standard errors of the estimate,
        see explain.shap_regression; 0 when exact; NaN when the model calls were too few
        to estimate them: fewer than 2 S + 2 determine no values, and at about 2 S + 4 or fewer
        too little is left over for the errors, see ``kernel_shap.small_sample_factor``).
    base_values: (T,) score with every segment replaced by the baseline.
    predictions: (T,) score with every segment kept; per target
        ``shap_values.sum(1) == predictions - base_values`` (equals the unmasked score
        when context == 1).
    labels: (T,) int class ids. boxes: (T, 4) normalised [x0, y0, x1, y1] (detection) or None.
    target_scores: (T,) the targets' scores on the unmasked image.
    model_calls: images sent to the predictor (the unmasked image, every coalition of
        every target group, and the metric curves).
    num_segments_used: S, the segments of the final partition (after refinement).
    timings: seconds per phase. metrics: one dict per target or None.
    exact: the values are exact Shapley values of the segments written (every coalition was
        evaluated and no segment was split afterwards: a split segment's value is a share of its
        parent's, see ``levels``, even when the coarse values were exact).
    converged: per target, the values meet target_error (every standard error below target_error times the
    spread of that target's values; with segments split by refinement, judged on the final segments), or are exact.
    label_headers: class names by class id (the settings' ``label_headers``), or None.
    coarse_segments: segments before refinement; levels: (S,) int, how many times each
    segment's ancestors were split (0: a coarse segment, whose value is its Shapley value
    among the coarse segments; k > 0: its share of its parent's value, see
    ``explain.refinement``). refinement: the rounds of splits (``RefinementStep``).
    best_detection: (class id, score) of the unmasked
    image's highest-scoring detection at any score (detection; None when the model detected
    nothing, for classification, and in files written before it was recorded): what the
    model saw when nothing reached ``probability_threshold``.

    ``plot()`` draws it, ``save(path)`` / ``Explanation.load(path)`` keep it in an .npz file
    (image included), ``to_shap()`` converts it to a ``shap.Explanation``.
    """

    image: np.ndarray
    segments: np.ndarray
    shap_values: np.ndarray
    standard_errors: np.ndarray
    base_values: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray | None
    target_scores: np.ndarray
    model_calls: int
    num_segments_used: int
    timings: dict
    task: str = "detection"
    exact: bool = False
    converged: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    metrics: list | None = None
    label_headers: tuple[str, ...] | None = None
    coarse_segments: int = 0
    refinement: tuple = ()
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    best_detection: tuple[int, float] | None = None

    @property
    def num_targets(self) -> int:
        return int(self.shap_values.shape[0])

    def __repr__(self) -> str:
        """A summary a person can read (what a notebook prints), not the arrays: the image, the
        segments, the model calls and per target its class, score, box, the values' sum and its
        largest values with their standard errors. The fields hold the rest."""
        image = "no image" if self.image is None else f"{self.image.shape[1]}x{self.image.shape[0]} image"
        head = (f"Explanation({self.task}, {image}, {self.num_segments_used} segments, "
                f"{self.num_targets} target{'' if self.num_targets == 1 else 's'}, {self.model_calls} model calls, "
                f"{'nothing to explain' if not self.num_targets else 'exact' if self.exact else 'estimated'})")
        lines = [head] + [_target_summary(self, index) for index in range(min(self.num_targets, REPR_TARGETS))]
        if self.num_targets > REPR_TARGETS:
            lines.append(f"  ... {self.num_targets - REPR_TARGETS} more targets")
        return "\n".join(lines)

    def _repr_jpeg_(self) -> bytes | None:
        """Jupyter's inline display: ``plot()`` as a JPEG, as the report's figures are (about 130 KB for a
        320 px image and one target, a PNG 5 times that); None without an image to draw on."""
        if self.image is None:
            return None
        import io

        from .render import save_jpeg

        buffer = io.BytesIO()
        save_jpeg(self.plot(), buffer)
        return buffer.getvalue()

    def plot(self, targets: Sequence[int] | None = None):
        """A matplotlib Figure, one row per target: the image with the box, the heatmap with
        numbered segments and, when metrics were computed, the smallest sets of segments that
        keep and that remove the score (``explain.render.plot_explanation``).

        targets: 0-based target indices (default: every target).
        """
        from .render import plot_explanation

        if isinstance(targets, Iterable) and not isinstance(targets, (str, bytes, np.ndarray)):
            targets = list(targets)  # a generator or a set, read once here
        if isinstance(targets, (list, np.ndarray)) and len(targets) == 0:  # review 44: drew every target
            raise ExplainError("targets is empty: give target indices, or leave targets out to plot every target")
        return plot_explanation(self, targets)

    def save(self, path: str | Path) -> Path:
        """Write every field, the image included, to an .npz file; returns its path. Raises ExplainError when
        its folder does not exist."""
        from .npz import write_npz

        folder = Path(path).parent if isinstance(path, (str, os.PathLike)) else None
        if folder is not None and not folder.is_dir():  # review 44: a bare FileNotFoundError from numpy
            raise ExplainError(f"cannot write the explanation to {os.fspath(path)!r}: there is no folder "
                               f"{str(folder)!r}; make it first")
        return write_npz(self, path)  # as given: "new/" names a folder, Path("new/") a file "new"

    @classmethod
    def load(cls, path: str | Path, image: np.ndarray | None = None) -> Explanation:
        """Read an .npz file that ``save`` (or an explanation run) wrote.

        image: (H, W, 3) uint8, the explained image, for files written before the image was
        stored in them (their ``image`` is None otherwise).
        """
        from .npz import read_npz

        return cls(**read_npz(Path(path), image))

    def to_shap(self, pixels: bool = False):
        """A ``shap.Explanation`` (needs the shap package; ``explain.shap_export.to_shap``).

        Default: one row per segment, one output per target, values (S, T). pixels=True:
        values (1, H, W, 3, T) spread evenly over each segment's pixels and channels, for
        ``shap.plots.image``.
        """
        from .shap_export import to_shap

        return to_shap(self, pixels=pixels)


def _fit_errors(result) -> np.ndarray:
    """A kernel_shap result's own standard errors (T, S), by which refinement tells values from noise."""
    return result.standard_errors if result.fit_errors is None else result.fit_errors


def _resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    from PIL import Image

    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    if scale == 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR), dtype=np.uint8)


def _check_image(image: np.ndarray) -> np.ndarray:
    """``image`` checked (the caller's array: ``explain_image`` copies what it keeps)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ExplainError(f"image must be an (H, W, 3) uint8 array, got {image.shape} "
                           f"{image.dtype}{conversion_hint(image)}")
    if min(image.shape[:2]) < 2:
        raise ExplainError(f"image is too small to segment: {image.shape[1]}x{image.shape[0]}")
    return image


def conversion_hint(image: np.ndarray, batch: bool = False) -> str:
    """How to turn a common other layout or type into (H, W, 3) uint8 RGB, or (N, H, W, 3) for a ``batch``,
    as a suffix for an error message ('' when none fits)."""
    name = "batch" if batch else "image"
    shape, hints = image.shape[1:] if batch else image.shape, []
    if len(shape) < 2 or not image.size or image.dtype.kind not in "biuf":  # strings, objects, nothing
        return ""
    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
        hints.append(f"if its channels come first: {name}.transpose({'0, 2, 3, 1' if batch else '1, 2, 0'})")
        shape = (*shape[1:], shape[0])
    if (len(shape) == 2 and not batch) or (len(shape) == 3 and shape[2] == 1):
        hints.append("grey: np.concatenate([batch] * 3, axis=-1)" if batch else "grey: np.dstack([image] * 3)")
    elif len(shape) == 3 and shape[2] == 4:
        hints.append(f"RGBA: drop the alpha channel with {name}[..., :3]")
    if image.dtype == np.bool_:
        hints.append(f"a mask: {name}.astype(np.uint8) * 255")
    elif np.issubdtype(image.dtype, np.floating):
        hints.append(_float_hint(image, name))
    elif np.issubdtype(image.dtype, np.integer) and image.dtype != np.uint8:
        hints.append(f"integers: {name}.astype(np.uint8) when they are 0..255, ({name} // 257).astype(np.uint8) "
                     "for 16 bits")
    return f" ({'; '.join(hints)})" if hints else ""


def _float_hint(image: np.ndarray, name: str) -> str:
    finite = image[np.isfinite(image)]
    if not finite.size:
        return "floats, none of them finite"
    low, high = float(finite.min()), float(finite.max())
    if low < 0.0:  # mean/std-normalised, or [-1, 1]: no cast makes these pixels
        return (f"floats from {low:.3g} to {high:.3g}, normalised: undo the normalisation back to 0..255 before "
                f".astype(np.uint8)")
    if high <= 1.0:
        return f"floats in [0, 1]: ({name} * 255).round().astype(np.uint8)"
    return f"floats: np.clip({name}, 0, 255).round().astype(np.uint8)"


def _warn_unless_probabilities(scores: np.ndarray, task: str = "classification") -> None:
    """Warn, once per process, when a classifier's (C,) scores or a detector's (D,) scores leave [0, 1]: logits,
    explained as they are (review 44: a detector's were explained silently, against a probability threshold)."""
    if not len(scores):
        return
    low, high = float(scores.min()), float(scores.max())
    if (low >= -1e-4 and high <= 1.0 + 1e-4) or _WARNED_SCORES:  # float32 rounding of a probability is no logit
        return
    _WARNED_SCORES.append(True)
    if task == "detection":
        logger.warning("the detector's scores lie outside [0, 1] (from %.6g to %.6g on an image): they are explained "
                       "as they are, and --probability-threshold (probability_threshold) is compared with them as "
                       "they are; this is said once per process", low, high)
        return
    logger.warning("the model's class scores lie outside [0, 1] (from %.6g to %.6g on an image): logits, say; they "
                   "are explained as they are, so each value is a share of the score, not of a probability (serve "
                   "softmax probabilities for that); this is said once per process", low, high)


_WARNED_SCORES: list[bool] = []


def explain_image(image: np.ndarray, predict: Predict, config: ExplainConfig,
                  progress: Callable[[int], None] | None = None,
                  segments: np.ndarray | None = None) -> Explanation:
    """Explain one image's targets with Kernel SHAP over superpixels.

    image: (H, W, 3) uint8 RGB. predict: (N, H, W, 3) uint8 -> N arrays, (D_i, 6) detections
    [class_id, score, x0/w, y0/h, x1/w, y1/h] or (C,) class probabilities. progress:
    optional callable receiving the number of model calls just completed (tqdm's update).
    segments: your own feature mask instead of the configured segmentation, (H, W) integer
    labels 0..S-1, each used, S >= 2, of the image's size after ``resize``
    (``explain.feature_masks.check_segment_map``); its segments are explained as they are
    (``focus`` and refinement leave a given mask alone).

    Segments: with ``focus == "boxes"`` (detection) the targets' boxes are segment borders
    and they and their surroundings get more, smaller segments
    (``explain.target_segments``); with ``refine_fraction > 0`` that share of the budget
    splits the segments holding the most value (``explain.refinement``).

    Detection targets are the top ``max_objects`` detections with score >=
    ``probability_threshold``; with ``context == 1`` all targets share one set of masked
    images. With ``context < 1`` each target's background is blended toward the baseline
    outside its own box, so each target gets its own set (T times the model calls). With
    ``label_headers``, a detection of the unmasked image (at any score) whose class id they
    cannot name raises ConfigError (``explain.detection.check_detection_classes``).
    """
    if not isinstance(config, ExplainConfig):
        raise ConfigError(f"config must be an ExplainConfig, got {type(config).__name__}: "
                          "ExplainConfig(num_samples=..., ...)", field="config")
    if not callable(predict):
        raise ConfigError(f"predict must be a function predict(batch) or a predictor, got {type(predict).__name__}",
                          field="predict")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    given = image = _check_image(image)
    if config.resize is not None:
        image = _resize_long_side(image, config.resize)
    if np.shares_memory(image, given):  # the Explanation keeps its own: a caller's frame buffer or batch changed
        image = image.copy()           # afterwards must not change an earlier explanation's picture (review 36)
    baseline_seed, shap_seed = np.random.SeedSequence(config.seed).spawn(2)
    counter = ModelCalls(predict, config.batch_size, config.task, progress)
    if segments is not None:
        segments = check_segment_map(segments, image.shape[:2])

    phase = time.perf_counter()
    baseline = make_baseline(image, config.baseline, np.random.default_rng(baseline_seed))
    timings["baseline_s"] = time.perf_counter() - phase

    phase = time.perf_counter()
    try:
        unmasked = counter(image[None])[0]
    except PredictorError as error:  # review 44: the answer checks say "a masked image"; this one is not
        if type(error) is not PredictorError or "a masked image" not in str(error):
            raise
        raise PredictorError(str(error).replace("a masked image", "the image itself, unmasked")) from None
    if config.task == "detection":
        model_classes = model_class_names(predict)  # a model folder's model.json
        check_detection_classes(unmasked, config.label_headers,
                                model_names=model_classes is not None and model_classes == config.label_headers)
        _warn_unless_probabilities(unmasked[:, 1], "detection")
        targets = select_detection_targets(unmasked, config.max_objects,
                                           config.probability_threshold)
        check_target_boxes(targets)
        labels = targets[:, 0].astype(np.int64)
        boxes = targets[:, 2:6].copy()
        target_scores = targets[:, 1].copy()
        best_detection = _best_detection(unmasked)

        def score_fn_for(rows):
            return lambda output: match_scores(rows, output, config.iou_threshold)

        if config.context >= 1.0:
            groups = [(np.arange(len(targets)), image)]
        else:
            groups = [(np.array([index]),
                       context_foreground(image, baseline, targets[index, 2:6], config.context))
                      for index in range(len(targets))]
        group_score_fns = [score_fn_for(targets[indices]) for indices, _ in groups]
    else:
        labels = select_classification_targets(unmasked, config.labels, config.label_headers)
        _warn_unless_probabilities(unmasked)
        best_detection = None
        boxes = None
        target_scores = unmasked[labels].copy()
        groups = [(np.arange(len(labels)), image)]
        group_score_fns = [lambda output: check_class_count(output, len(unmasked))[labels]]
    timings["targets_s"] = time.perf_counter() - phase

    phase = time.perf_counter()
    own_segments = segments is not None  # the caller's mask: neither focus nor refinement changes it
    if not own_segments and boxes is not None and len(boxes) and config.focus == "boxes":
        segments = segment_with_boxes(image, boxes, config.num_segments,
                                      config.segment_compactness, method=config.segmentation)
    elif not own_segments:
        segments = segment_image(image, config.num_segments, config.segment_compactness,
                                 method=config.segmentation)
    timings["segmentation_s"] = time.perf_counter() - phase

    num_targets = len(labels)
    coarse_segments = int(segments.max()) + 1
    games = []
    for (indices, foreground), score_fn in zip(groups, group_score_fns, strict=True):
        if len(indices) == 0:
            continue

        def evaluate_masks(segment_map, coalitions, foreground=foreground, score_fn=score_fn):
            return counter.scores(foreground, baseline, segment_map, coalitions, score_fn)

        games.append((indices, CachedGame(evaluate_masks, segments)))

    coarse_budget = config.num_samples
    if config.refine_fraction > 0 and not own_segments:
        if coarse_segments < config.max_segments:
            coarse_budget = max(4, config.num_samples - int(round(config.refine_fraction * config.num_samples)))
            needed = samples_with_errors(coarse_segments)
            # the coarse values and their errors first: with fewer than 2S + 4 calls the errors are unknown,
            # and a split value's error is a share of its parent's
            if coarse_budget < needed:
                logger.info("the coarse fit of %d segments needs %d model calls and --refine-fraction %g "
                            "left it %d: it gets %d of the %d, refinement %d", coarse_segments, needed,
                            config.refine_fraction, coarse_budget, min(needed, config.num_samples),
                            config.num_samples, max(0, config.num_samples - needed))
                coarse_budget = min(needed, config.num_samples)
            if config.num_samples - coarse_budget < SPLIT_CALLS:  # too few left for one split: all to the coarse fit
                coarse_budget = config.num_samples
        else:  # nothing may be split: the refinement's share would go unspent
            # an image's warning: in its summary (analysis.json, the report) too, not only on the terminal
            warn_about_image(logger, f"the segmentation gave {coarse_segments} segments, max_segments is "
                             f"{config.max_segments}: no refinement, all {config.num_samples} samples go to the "
                             "segments as they are")
    shap_values = np.zeros((num_targets, coarse_segments))
    standard_errors = np.zeros((num_targets, coarse_segments))
    fit_errors = np.zeros((num_targets, coarse_segments))
    base_values = np.zeros(num_targets)
    predictions = np.zeros(num_targets)
    converged = np.zeros(num_targets, dtype=bool)
    exact = num_targets > 0
    phase = time.perf_counter()
    # One game (every target shares the masked images) whose coarse values hold nothing worth splitting, or
    # whose errors are unknown, gets refinement's calls for them instead (with several, a split is made for
    # all games or none).
    refine_calls = config.num_samples - coarse_budget
    more_samples = refine_calls if len(games) == 1 else 0
    reasons: list[str] = []

    def spend_more(partial) -> bool:
        if not np.isfinite(partial.standard_errors).all():
            reasons.append("the coarse values' standard errors were unknown (the drawn coalitions did not tell some "
                           "segments apart, or left fewer than 2 pairs to estimate them)")
        elif not worth_splitting(partial.values, _fit_errors(partial)):
            reasons.append(f"no coarse value was {SPLIT_SIGNIFICANCE:g} standard errors from 0, so nothing was "
                           "worth splitting")
        return bool(reasons)

    for indices, game in games:
        result = kernel_shap(game, coarse_segments, coarse_budget, np.random.default_rng(shap_seed),
                             config.target_error, more_samples=more_samples, spend_more=spend_more,
                             warn_underdetermined=False)  # the image's warning below says it
        if result.num_evaluations > coarse_budget:
            refine_calls = 0
            warn_about_image(logger, f"{reasons[-1]} after {coarse_budget} model calls: all {config.num_samples} "
                             f"samples went to the {coarse_segments} coarse segments")
        shap_values[indices] = result.values
        standard_errors[indices] = result.standard_errors
        fit_errors[indices] = _fit_errors(result)
        base_values[indices] = result.base_values
        predictions[indices] = result.full_values
        converged[indices] = result.converged
        exact = exact and result.exact
    timings["shap_s"] = time.perf_counter() - phase
    if not np.isfinite(standard_errors).all():
        unknown = int((~np.isfinite(standard_errors).all(axis=1)).sum())
        if coarse_budget < determining_samples(coarse_segments):
            warn_about_image(logger, f"{coarse_budget} model calls cannot determine the values of {coarse_segments} "
                             f"segments (2 x {coarse_segments} + 2 = {determining_samples(coarse_segments)} can): "
                             f"the {unknown} target(s)' values are the minimum-norm fit and their standard errors "
                             "unknown; raise --num-samples or lower --num-segments (num_samples, num_segments from Python)")
        else:
            warn_about_image(logger, f"the standard errors of {unknown} target(s) are unknown: {coarse_budget} model "
                             f"calls for {coarse_segments} segments left fewer than 2 coalition pairs to estimate "
                             "them, or the drawn coalitions did not tell some segments apart; raise --num-samples")
    if config.task == "detection" and config.context >= 1.0:
        _warn_about_unmatched_targets(target_scores, predictions, labels, config.label_headers)

    refinement: list = []
    levels = np.zeros(coarse_segments, dtype=np.int64)
    if games and refine_calls > 0:
        phase = time.perf_counter()
        segments, refined_values, refined_errors, levels, refinement = refine_values(
            image, segments, [game for _, game in games],
            [shap_values[indices] for indices, _ in games],
            [standard_errors[indices] for indices, _ in games],
            [(base_values[indices], predictions[indices]) for indices, _ in games],
            [game.model_calls + refine_calls for _, game in games], config.max_segments,
            config.segment_compactness, [fit_errors[indices] for indices, _ in games])
        shap_values = np.zeros((num_targets, int(segments.max()) + 1))
        standard_errors = np.zeros_like(shap_values)
        for (indices, _), values, errors in zip(games, refined_values, refined_errors, strict=True):
            shap_values[indices], standard_errors[indices] = values, errors
        # a split segment's value is a share of its parent's, no Shapley value among the final segments: an
        # explanation with splits is not exact even when every coalition of the coarse segments was evaluated
        exact = exact and not refinement
        if not refinement:
            warn_about_image(logger, f"refinement split no segment (none held a value {SPLIT_SIGNIFICANCE:g} standard "
                             f"errors from 0 that could be cut in two): {refine_calls} of the "
                             f"{config.num_samples} samples were not spent")
        else:  # the coarse fit's target_error says nothing of the values written (review 44)
            converged = (meets_target_error(shap_values, standard_errors, config.target_error)
                         if config.target_error is not None else np.zeros(num_targets, dtype=bool))
            left = max(config.num_samples - game.model_calls for _, game in games)
            if left >= SPLIT_CALLS and int(segments.max()) + 1 >= config.max_segments:
                logger.info("refinement reached --max-segments %d with %d of the %d samples left: not spent (a "
                            "higher --max-segments would split further)", config.max_segments, left,
                            config.num_samples)
            elif min(config.num_samples - game.model_calls for _, game in games) >= SPLIT_CALLS:
                logger.info("refinement stopped after %d split(s) with %d of the %d samples left: not spent (no "
                            "segment left held a value %g standard errors from 0 that could be cut in two)",
                            sum(len(step.split) for step in refinement), left, config.num_samples,
                            SPLIT_SIGNIFICANCE)
        timings["refinement_s"] = time.perf_counter() - phase
    num_segments = int(segments.max()) + 1

    metrics = None
    if config.metrics and num_targets:
        phase = time.perf_counter()
        metrics = [None] * num_targets
        for indices, game in games:
            for position, target in enumerate(indices):
                metrics[target] = deletion_insertion(
                    lambda coalitions, game=game, position=position: game(coalitions)[:, position],
                    shap_values[target])
        timings["metrics_s"] = time.perf_counter() - phase
    timings["predict_s"] = counter.seconds
    timings["total_s"] = time.perf_counter() - started
    logger.info("explained %d targets over %d segments with %d model calls in %.1f s",
                num_targets, num_segments, counter.model_calls, timings["total_s"])
    return Explanation(
        image=image, segments=segments, shap_values=shap_values,
        standard_errors=standard_errors, base_values=base_values, predictions=predictions,
        labels=labels, boxes=boxes, target_scores=target_scores,
        model_calls=counter.model_calls, num_segments_used=num_segments, timings=timings,
        task=config.task, exact=bool(exact), converged=converged, metrics=metrics,
        coarse_segments=coarse_segments, refinement=tuple(refinement), levels=levels,
        label_headers=config.label_headers, best_detection=best_detection)


def _warn_about_unmatched_targets(target_scores: np.ndarray, predictions: np.ndarray,
                                  labels: np.ndarray, label_headers: tuple[str, ...] | None) -> None:
    """Warn (per image) about a detection target whose score on the unmasked image, by the
    explainer's own rule (same class, IoU >= iou_threshold with its box), is not the score it
    was chosen with: its values explain the matched score, not the one shown beside it."""
    for index, (score, prediction) in enumerate(zip(target_scores, predictions)):
        if abs(prediction - score) > UNMATCHED_TOLERANCE * max(abs(score), 1e-12):
            warn_about_image(logger, (
                f"target {index} ({class_name(int(labels[index]), label_headers)}, score {score:.3f}) "
                f"scores {prediction:.3f} on the same image when matched by class and IoU with its own "
                "box: its values explain that score (another detection of its class overlaps its box, "
                "the model answers the same image differently from call to call, or its boxes are not "
                "[x0/w, y0/h, x1/w, y1/h])"))


def _best_detection(detections: np.ndarray) -> tuple[int, float] | None:
    """(class id, score) of the highest-scoring detection of (D, 6) rows at any score, or None."""
    rows = select_detection_targets(detections, max_objects=1, probability_threshold=-np.inf)
    return (int(rows[0, 0]), float(rows[0, 1])) if len(rows) else None


def _target_summary(explanation: Explanation, index: int) -> str:
    """One target in a line: ``box 1: circle 0.97 at [x0, y0, x1, y1], prediction 0.95 = base 0.02 + 0.93;
    largest: segment 7 +0.41 ± 0.03, ...`` (the box and ± only where they exist)."""
    name = class_name(int(explanation.labels[index]), explanation.label_headers)
    what = f"box {index + 1}: {name}" if explanation.task == "detection" else name
    line = f"  {what} {float(explanation.target_scores[index]):.3g}"
    if explanation.boxes is not None:
        line += " at [" + ", ".join(f"{float(edge):.2f}" for edge in explanation.boxes[index]) + "]"
    prediction, base = float(explanation.predictions[index]), float(explanation.base_values[index])
    line += f", prediction {prediction:.3g} = base {base:.3g} {'+' if prediction >= base else '-'} {abs(prediction - base):.3g}"
    values, errors = explanation.shap_values[index], explanation.standard_errors[index]
    largest = np.argsort(-np.abs(values), kind="stable")[:REPR_VALUES]
    parts = []
    for segment in largest:
        part = f"segment {segment} {values[segment]:+.3g}"
        if not np.isfinite(errors[segment]):
            part += " ± unknown"
        elif errors[segment] > 0:
            part += f" ± {errors[segment]:.2g}"
        parts.append(part)
    return line + "; largest: " + ", ".join(parts)


def save_npz(explanation: Explanation, path: Path) -> list[str]:
    """Write one explanation's .npz file (``explain.npz.write_npz``); returns [file name]."""
    from .npz import write_npz

    return [write_npz(explanation, Path(path)).name]
