"""Evaluate the shipped shapes models on fresh scenes and print a markdown table."""
from __future__ import annotations

import io
import json
import logging
import os
import sys
import time

import click
import numpy as np

from examples.shapes.dataset import CLASSES, generate_classification_batch, generate_scene
from examples.shapes.metrics import detection_average_precisions
from serving.handler import model_fn, transform_fn

logger = logging.getLogger(__name__)

DETECTOR_DIR = os.path.join("models", "shapes-detector")
CLASSIFIER_DIR = os.path.join("models", "shapes-classifier")
DETECTION_SEED = 2026_1125  # never used in training
CLASSIFICATION_SEED = 2026_1126  # never used in training
IMAGE_SIZE = 320


def load_predictor(model_dir: str):
    """Return ``predict((N, H, W, 3) uint8) -> decoded JSON response`` for a model directory.

    Runs the serving handler in-process: ``model_fn`` once, then ``transform_fn`` with an
    ``application/x-npy`` body and a JSON response, exactly as the endpoint would.
    """
    model = model_fn(model_dir)

    def predict(images: np.ndarray) -> list:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(images, dtype=np.uint8))
        body, _ = transform_fn(model, buffer.getvalue(), "application/x-npy", "application/json")
        return json.loads(body)

    return predict


def evaluate_detector(predict, image_count: int = 500, seed: int = DETECTION_SEED,
                      batch_size: int = 16) -> np.ndarray:
    """Return ``(C,)`` per-class AP@0.5 on ``image_count`` fresh scenes (boxes compared normalised)."""
    rng = np.random.default_rng(seed)
    scenes = [generate_scene(rng, IMAGE_SIZE, IMAGE_SIZE) for _ in range(image_count)]
    predictions = []
    for start in range(0, image_count, batch_size):
        images = np.stack([scene.image for scene in scenes[start:start + batch_size]])
        for rows in predict(images):
            rows = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
            predictions.append((rows[:, 0].astype(np.int64), rows[:, 1], rows[:, 2:6]))
    truths = [(scene.class_ids, scene.boxes / float(IMAGE_SIZE)) for scene in scenes]
    return detection_average_precisions(predictions, truths, len(CLASSES))


def evaluate_classifier(predict, image_count: int = 1000, seed: int = CLASSIFICATION_SEED,
                        batch_size: int = 16) -> float:
    """Return the accuracy on ``image_count`` fresh one-object images."""
    rng = np.random.default_rng(seed)
    images, labels = generate_classification_batch(rng, image_count)
    predicted = [np.argmax(probabilities) for start in range(0, image_count, batch_size)
                 for probabilities in predict(images[start:start + batch_size])]
    return float(np.mean(np.array(predicted) == labels))


def measure_latency(predict, batch_size: int, repeats: int = 10, seed: int = DETECTION_SEED) -> tuple:
    """Return ``(median seconds per call, images per second)`` for one 320 px image repeated."""
    image = generate_scene(np.random.default_rng(seed)).image
    batch = np.repeat(image[None], batch_size, axis=0)
    predict(batch)  # warm-up
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(batch)
        durations.append(time.perf_counter() - start)
    median = float(np.median(durations))
    return median, batch_size / median


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--detector", "detector_dir", default=DETECTOR_DIR, show_default=True,
              type=click.Path(exists=True, file_okay=False))
@click.option("--classifier", "classifier_dir", default=CLASSIFIER_DIR, show_default=True,
              type=click.Path(exists=True, file_okay=False))
@click.option("--detection-images", default=500, show_default=True, type=click.IntRange(1))
@click.option("--classification-images", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--repeats", default=10, show_default=True, type=click.IntRange(1),
              help="Timed calls per latency figure (median reported).")
def main(detector_dir, classifier_dir, detection_images, classification_images, repeats):
    """Print detector mAP@0.5, classifier accuracy and in-process latency as a markdown table."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("serving").setLevel(logging.WARNING)  # one INFO line per request otherwise
    detector = load_predictor(detector_dir)
    classifier = load_predictor(classifier_dir)
    logger.info("evaluating the detector on %d images", detection_images)
    aps = evaluate_detector(detector, detection_images)
    logger.info("evaluating the classifier on %d images", classification_images)
    accuracy = evaluate_classifier(classifier, classification_images)
    rows = [("detector", "mAP@0.5 (%d images, seed %d)" % (detection_images, DETECTION_SEED),
             "%.4f" % np.nanmean(aps))]
    rows += [("detector", "AP@0.5 %s" % name, "%.4f" % ap) for name, ap in zip(CLASSES, aps)]
    rows.append(("classifier", "accuracy (%d images, seed %d)" % (classification_images, CLASSIFICATION_SEED),
                 "%.4f" % accuracy))
    for name, predict in (("detector", detector), ("classifier", classifier)):
        for batch_size in (1, 16):
            seconds, images_per_second = measure_latency(predict, batch_size, repeats)
            rows.append((name, "latency, batch %d of 320x320" % batch_size,
                         "%.1f ms/request, %.1f images/s" % (seconds * 1000, images_per_second)))
    click.echo("| model | metric | value |")
    click.echo("|---|---|---|")
    for row in rows:
        click.echo("| %s | %s | %s |" % row)
    click.echo("\nIn-process via serving.handler (model_fn + transform_fn, application/x-npy in, JSON out); OMP_NUM_THREADS=%s, MXNET_CPU_WORKER_NTHREADS=%s, %d CPU cores."
               % (os.environ.get("OMP_NUM_THREADS", "unset"),
                  os.environ.get("MXNET_CPU_WORKER_NTHREADS", "unset"), os.cpu_count() or 0))


if __name__ == "__main__":
    main()
