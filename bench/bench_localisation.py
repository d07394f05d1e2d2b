"""Localisation: share of positive SHAP mass inside the explained object's ground-truth mask.

Reproduce (the shipped detector must exist in models/shapes-detector):

    .venv/bin/python -m bench.bench_localisation --images 100

Fresh shapes scenes (``examples/shapes/dataset.py``, seed 777001, never used in training
or evaluation) are explained with the shipped shapes detector run in-process through the
serving handler, at the explainer's default settings (Clarify's, plus merged superpixels;
``--segmentation`` and ``--baseline`` change them) and 500 samples. For each explained
detection that matches a ground-truth object (box IoU >= 0.5, the best match), each
segment's positive SHAP value is spread evenly over its pixels and the share of that
positive mass lying inside the object's pixel mask is computed. A per image figure is
the mean over its matched targets; the headline is the mean over images. Beside it, the
segmentation ceiling: the share an ideal attribution reaches over the same superpixels
(a segment that straddles the outline, or a small object inside a larger segment, caps
it below 1 whatever the estimator does). Deletion and insertion AUCs
(``explain.metrics``) come with every target (2 S + 2 extra model calls).

``--compare`` also runs, on the same images, targets and baseline: shap's
KernelExplainer at the same budget over the same superpixels (``l1_reg=False``),
clearsight's estimator over SLICO superpixels (``--segmentation slico``), and over plain
SLIC at compactness 5 (what Clarify's settings give with scikit-image's ``slic``). Prints a markdown table on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from examples.shapes.dataset import CLASSES, generate_scene
from explain.baselines import make_baseline
from explain.config import ExplainConfig
from explain.detection import box_iou, match_scores
from explain.explainer import explain_image
from explain.kernel_shap import kernel_shap
from explain.masking import mask_images
from explain.metrics import deletion_insertion
from explain.predictors import NPY, InProcessPredictor, images_per_request
from explain.segmentation import relabel_contiguous, segment_image

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "models/shapes-detector"
IMAGE_SEED = 777_001  # never used by train_detector (2026_0001/2) nor evaluate (2026_1125)
IMAGE_SIZE = 320
MATCH_IOU = 0.5
TARGET_SHARE = 0.85

VARIANT_NAMES = {
    "clearsight": "clearsight (the settings given on the command line)",
    "shap": "shap KernelExplainer, same segments (l1_reg=False)",
    "slico": "clearsight estimator on SLICO segments (--segmentation slico)",
    "clarify-slic": "clearsight estimator on plain SLIC, compactness 5",
}


def positive_share_inside(segment_map: np.ndarray, values: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive attribution mass that lies inside ``mask``.

    segment_map: (H, W) int labels 0..S-1; values: (S,) SHAP values of one target;
    mask: (H, W) bool ground truth. Each segment's positive value is spread evenly over its
    pixels. Returns a float in [0, 1], or nan when no value is positive.
    """
    num_segments = len(values)
    labels = segment_map.ravel()
    pixels = np.bincount(labels, minlength=num_segments).astype(np.float64)
    inside = np.bincount(labels, weights=mask.ravel().astype(np.float64), minlength=num_segments)
    positive = np.clip(np.asarray(values, dtype=np.float64), 0.0, None)
    total = positive.sum()
    if total <= 0:
        return float("nan")
    fraction_inside = np.divide(inside, pixels, out=np.zeros_like(inside), where=pixels > 0)
    return float((positive * fraction_inside).sum() / total)


def segmentation_ceiling(segment_map: np.ndarray, mask: np.ndarray) -> float:
    """The share an ideal attribution reaches with these superpixels.

    Ideal: each segment's positive value proportional to the object pixels it holds (what
    a model that looks only at the object earns each segment). segment_map: (H, W) int,
    mask: (H, W) bool. Returns a float in [0, 1]; below 1 wherever segments straddle the
    object's outline or a small object sits inside a larger segment.
    """
    num_segments = int(segment_map.max()) + 1
    inside = np.bincount(segment_map.ravel(), weights=mask.ravel().astype(np.float64),
                         minlength=num_segments)
    return positive_share_inside(segment_map, inside, mask)


def best_match(box: np.ndarray, truth_boxes: np.ndarray) -> tuple[int, float]:
    """Index and IoU of the ground-truth box (K, 4) that overlaps ``box`` (4,) most; all normalised."""
    ious = box_iou(box[None], truth_boxes)[0]
    index = int(np.argmax(ious))
    return index, float(ious[index])


@dataclass
class TargetRecord:
    """One explained detection: its match to the ground truth and its localisation figures."""

    image: int
    target: int
    label: str
    score: float
    iou: float
    same_class: bool
    share: float | None = None
    ceiling: float | None = None
    deletion_auc: float | None = None
    insertion_auc: float | None = None


@dataclass
class VariantResult:
    """Per-variant records and costs over all images."""

    records: list[TargetRecord] = field(default_factory=list)
    seconds: float = 0.0
    model_calls: int = 0
    segments_used: list[int] = field(default_factory=list)


def _game(image: np.ndarray, baseline: np.ndarray, segment_map: np.ndarray, targets: np.ndarray,
          predict: Callable, iou_threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    """Coalitions (M, S) {0,1} -> target scores (M, T) on the masked images (the explainer's game)."""

    def evaluate(coalitions: np.ndarray) -> np.ndarray:
        coalitions = np.asarray(coalitions) > 0.5
        rows = []
        for start in range(0, len(coalitions), 128):
            masked = mask_images(image, baseline, segment_map, coalitions[start:start + 128])
            rows.extend(match_scores(targets, output, iou_threshold) for output in predict(masked))
        return np.array(rows, dtype=np.float64).reshape(len(coalitions), len(targets))

    return evaluate


def shap_kernel_values(evaluate: Callable, num_segments: int, num_samples: int, seed: int) -> np.ndarray:
    """shap.KernelExplainer on the game: (T, S) values at ``num_samples`` evaluations (anchors included)."""
    import shap

    np.random.seed(seed)  # KernelExplainer draws from numpy's global generator
    explainer = shap.KernelExplainer(evaluate, np.zeros((1, num_segments)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = explainer.shap_values(np.ones((1, num_segments)), nsamples=num_samples - 2,
                                       l1_reg=False, silent=True)
    values = np.asarray(values)
    # shap returns (1, S, T) for multi-output models (a list of T (1, S) arrays in old versions)
    return values.reshape(num_segments, -1).T if values.ndim == 3 else values.reshape(-1, num_segments)


def clarify_segments(image: np.ndarray, num_segments: int, compactness: float) -> np.ndarray:
    """Plain scikit-image SLIC as Clarify's settings name it: (H, W) int32 labels 0..S-1."""
    from skimage.segmentation import slic

    return relabel_contiguous(slic(image, n_segments=num_segments, compactness=compactness,
                                   start_label=0, channel_axis=-1))


def _record_targets(result: VariantResult, image_index: int, segment_map: np.ndarray,
                    values: np.ndarray, targets: np.ndarray, sample, metrics: list | None) -> None:
    truth_boxes = sample.boxes / float(IMAGE_SIZE)
    for target_index, row in enumerate(targets):
        match, iou = best_match(row[2:6], truth_boxes)
        record = TargetRecord(image_index, target_index, CLASSES[int(row[0])], float(row[1]), iou,
                              int(row[0]) == int(sample.class_ids[match]))
        if iou >= MATCH_IOU:
            record.share = positive_share_inside(segment_map, values[target_index], sample.masks[match])
            record.ceiling = segmentation_ceiling(segment_map, sample.masks[match])
        if metrics is not None and metrics[target_index] is not None:
            record.deletion_auc = metrics[target_index]["deletion_auc"]
            record.insertion_auc = metrics[target_index]["insertion_auc"]
        result.records.append(record)


def run(model_dir: str, image_count: int, seed: int, num_samples: int, with_metrics: bool,
        variants: list[str], compare_images: int, num_segments: int, segmentation: str = "merged",
        baseline: str = "noise", focus: str = "boxes", refine_fraction: float = 0.4,
        max_segments: int = 64) -> dict[str, VariantResult]:
    """Explain ``image_count`` fresh scenes with every variant; returns the records per variant."""
    per_request = images_per_request((IMAGE_SIZE, IMAGE_SIZE, 3), NPY, 6_291_456)
    predictor = InProcessPredictor(model_dir, "detection", batch_size=per_request)
    config = ExplainConfig(task="detection", num_samples=num_samples, num_segments=num_segments,
                           metrics=with_metrics, segmentation=segmentation, baseline=baseline,
                           focus=focus, refine_fraction=refine_fraction, max_segments=max_segments)
    results = {name: VariantResult() for name in variants}
    rng = np.random.default_rng(seed)
    for image_index in range(image_count):
        sample = generate_scene(rng, IMAGE_SIZE, IMAGE_SIZE)
        started = time.perf_counter()
        explanation = explain_image(sample.image, predictor, config)
        main = results["clearsight"]
        main.seconds += time.perf_counter() - started
        main.model_calls += explanation.model_calls
        main.segments_used.append(explanation.num_segments_used)
        targets = np.column_stack([explanation.labels, explanation.target_scores, explanation.boxes]) \
            if explanation.num_targets else np.zeros((0, 6))
        _record_targets(main, image_index, explanation.segments, explanation.shap_values, targets,
                        sample, explanation.metrics)
        logger.info("image %d: %d target(s), shares %s, %.1f s", image_index, len(targets),
                    [None if r.share is None else round(r.share, 3)
                     for r in main.records if r.image == image_index],
                    time.perf_counter() - started)
        if image_index >= compare_images or not len(targets):
            continue
        baseline_seed, shap_seed = np.random.SeedSequence(config.seed).spawn(2)
        baseline = make_baseline(sample.image, config.baseline, np.random.default_rng(baseline_seed))
        for name in variants[1:]:
            started = time.perf_counter()
            calls = [0]

            def counted(batch, calls=calls):
                calls[0] += len(batch)
                return predictor(batch)

            if name == "shap":
                segment_map = explanation.segments
                evaluate = _game(sample.image, baseline, segment_map, targets, counted, config.iou_threshold)
                values = shap_kernel_values(evaluate, int(segment_map.max()) + 1, num_samples, config.seed)
            else:
                segment_map = (segment_image(sample.image, config.num_segments, config.segment_compactness,
                                             method="slico") if name == "slico" else
                               clarify_segments(sample.image, config.num_segments, config.segment_compactness))
                evaluate = _game(sample.image, baseline, segment_map, targets, counted, config.iou_threshold)
                values = kernel_shap(evaluate, int(segment_map.max()) + 1, num_samples,
                                     np.random.default_rng(shap_seed)).values
            metrics = None
            if with_metrics:
                metrics = [deletion_insertion(lambda z, t=t, evaluate=evaluate: evaluate(z)[:, t], values[t])
                           for t in range(len(targets))]
            result = results[name]
            result.seconds += time.perf_counter() - started
            result.model_calls += calls[0]
            result.segments_used.append(int(segment_map.max()) + 1)
            _record_targets(result, image_index, segment_map, values, targets, sample, metrics)
    predictor.close()
    return results


def summarise(result: VariantResult) -> dict:
    """Mean share per image (over matched targets), counts, AUCs and costs of one variant."""
    records = result.records
    matched = [r for r in records if r.share is not None and np.isfinite(r.share)]
    per_image: dict[int, list[tuple[float, float]]] = {}
    for record in matched:
        per_image.setdefault(record.image, []).append((record.share, record.ceiling))
    image_shares = np.array([np.mean([share for share, _ in pairs]) for pairs in per_image.values()])
    image_ceilings = np.array([np.mean([ceiling for _, ceiling in pairs]) for pairs in per_image.values()])
    target_shares = np.array([r.share for r in matched])
    images_done = len(result.segments_used)

    def mean_of(name: str) -> float:
        values = [getattr(r, name) for r in matched if getattr(r, name) is not None]
        return float(np.mean(values)) if values else float("nan")

    return {
        "images": images_done,
        "images_scored": len(per_image),
        "targets": len(records),
        "targets_matched": len(matched),
        "targets_same_class": sum(r.same_class for r in matched),
        "mean_share_per_image": float(image_shares.mean()) if len(image_shares) else float("nan"),
        "mean_ceiling_per_image": float(image_ceilings.mean()) if len(image_ceilings) else float("nan"),
        "median_share_per_target": float(np.median(target_shares)) if len(target_shares) else float("nan"),
        "targets_at_or_above_target": float((target_shares >= TARGET_SHARE).mean()) if len(target_shares)
        else float("nan"),
        "deletion_auc": mean_of("deletion_auc"),
        "insertion_auc": mean_of("insertion_auc"),
        "mean_target_score": mean_of("score"),
        "mean_segments": float(np.mean(result.segments_used)) if result.segments_used else float("nan"),
        "seconds_per_image": result.seconds / images_done if images_done else float("nan"),
        "model_calls_per_image": result.model_calls / images_done if images_done else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=DEFAULT_MODEL)
    parser.add_argument("--images", type=int, default=100, help="fresh scenes to explain (default 100)")
    parser.add_argument("--seed", type=int, default=IMAGE_SEED, help=f"scene seed (default {IMAGE_SEED})")
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--num-segments", type=int, default=20)
    parser.add_argument("--segmentation", default="merged", choices=("merged", "slico", "slic"))
    parser.add_argument("--baseline", default="noise", help="noise, mean, blur, black or an image path")
    parser.add_argument("--focus", default="boxes", choices=("boxes", "none"))
    parser.add_argument("--refine-fraction", type=float, default=0.4)
    parser.add_argument("--max-segments", type=int, default=64)
    parser.add_argument("--no-metrics", action="store_true", help="skip deletion/insertion AUCs")
    parser.add_argument("--compare", action="store_true",
                        help="also run shap's KernelExplainer and plain-SLIC segments on the same images")
    parser.add_argument("--compare-images", type=int, default=None,
                        help="run the comparisons on the first N images only (default: all)")
    parser.add_argument("--json", default=None, help="also write every target's record to this file")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every image on stderr")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(message)s")
    logging.getLogger("shap").setLevel(logging.WARNING)  # it logs every explained row at INFO

    variants = ["clearsight"] + (["shap", "slico", "clarify-slic"] if args.compare else [])
    compare_images = args.images if args.compare_images is None else args.compare_images
    started = time.perf_counter()
    results = run(args.model_dir, args.images, args.seed, args.num_samples, not args.no_metrics,
                  variants, compare_images, args.num_segments, args.segmentation, args.baseline,
                  args.focus, args.refine_fraction, args.max_segments)
    elapsed = time.perf_counter() - started
    summaries = {name: summarise(result) for name, result in results.items()}

    command = (f".venv/bin/python -m bench.bench_localisation --images {args.images} --seed {args.seed}"
               f" --num-samples {args.num_samples} --num-segments {args.num_segments}"
               f" --segmentation {args.segmentation} --baseline {args.baseline}"
               f"{' --no-metrics' if args.no_metrics else ''}{' --compare' if args.compare else ''}"
               f"{'' if args.compare_images is None else f' --compare-images {args.compare_images}'}")
    print(f"<!-- {command} -->")
    print(f"Shapes detector `{args.model_dir}`, in-process; {args.images} fresh 320 px scenes (seed "
          f"{args.seed}); {args.num_samples} samples, {args.segmentation} segments, {args.baseline} baseline, other settings at their defaults; {elapsed:.0f} s "
          f"on {_cores()} cores. Share = positive SHAP mass inside the matched object's mask (IoU >= "
          f"{MATCH_IOU}), mean over each image's matched targets, then over images. Target >= {TARGET_SHARE}. "
          "Segmentation ceiling = the share of an ideal attribution over the same superpixels (each "
          "segment credited in proportion to the object pixels it holds).\n")
    header = ["method", "images", "targets matched / explained", "mean share per image",
              "segmentation ceiling",
              "median share per target", f"targets with share >= {TARGET_SHARE}",
              "deletion AUC (lower better)", "insertion AUC (higher better)", "segments", "s / image",
              "model calls / image"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for name, summary in summaries.items():
        print("| " + " | ".join([
            VARIANT_NAMES[name], str(summary["images"]),
            f"{summary['targets_matched']} / {summary['targets']}",
            f"**{summary['mean_share_per_image']:.3f}**" if name == "clearsight"
            else f"{summary['mean_share_per_image']:.3f}",
            f"{summary['mean_ceiling_per_image']:.3f}",
            f"{summary['median_share_per_target']:.3f}", f"{summary['targets_at_or_above_target']:.0%}",
            f"{summary['deletion_auc']:.3f}", f"{summary['insertion_auc']:.3f}",
            f"{summary['mean_segments']:.1f}", f"{summary['seconds_per_image']:.1f}",
            f"{summary['model_calls_per_image']:.0f}"]) + " |")
    main_summary = summaries["clearsight"]
    print(f"\nMean target score on the unmasked image: {main_summary['mean_target_score']:.3f}; "
          f"matched targets of the same class as their object: {main_summary['targets_same_class']}"
          f" / {main_summary['targets_matched']}. AUCs are in detection-score units, curves over "
          "the fraction of segments deleted / inserted in order of decreasing SHAP value.")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({name: {"summary": summaries[name],
                              "targets": [record.__dict__ for record in result.records]}
                       for name, result in results.items()}, handle, indent=1)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
