"""Train the shapes detector (from scratch, or fine-tune one with --init) and export it with its model.json.

The shipped detector is trained in two steps (``make demo-models``): 30 minutes from scratch
on clean scenes, then 15 minutes from those weights with ``--noise-background 0.5``: half the
scenes get random background cells of uniform noise, what the explainer's noise baseline puts
in masked images, so the detector's scores stop depending on intact background around an
object (localisation of its explanations: 0.79 before, 0.88 after; BENCHMARKS.md).

Input size: ``short_side=160`` halves the 320 px scenes, so objects are 24-64 px on the
network input (3-8 stride-8 cells) - still easy to localise - while a training step costs a
quarter of a 320 px one on 2 shared CPU cores.
"""
from __future__ import annotations

import logging
import os
import sys

import click
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from examples.shapes.centernet_loss import build_targets, centernet_loss
from examples.shapes.dataset import CLASSES, generate_scene
from examples.shapes.detector_net import STRIDE, build_detector
from examples.shapes.metrics import detection_average_precisions
from examples.shapes.training_utils import (
    ScenePool,
    TrainingClock,
    resize_for_network,
    seed_everything,
    training_options,
)
from serving.model_spec import ModelSpec, Preprocess, load_model_spec
from serving.preprocess import preprocess_batch

logger = logging.getLogger(__name__)

DEFAULT_OUT = os.path.join("models", "shapes-detector")
SHORT_SIDE = 160
MAX_SIZE = 512
TRAIN_SEED = 2026_0001
VALIDATION_SEED = 2026_0002
SCORE_THRESHOLD = 0.3
TOP_K = 100


def predict(net, images: np.ndarray, preprocess: Preprocess, batch_size: int = 32) -> list:
    """Run the decoding net on ``(N, H, W, 3)`` uint8 images; return per image (ids, scores, boxes)."""
    results = []
    for start in range(0, len(images), batch_size):
        class_ids, scores, boxes = net(preprocess_batch(images[start:start + batch_size], preprocess))
        for ids_row, scores_row, boxes_row in zip(class_ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()):
            keep = ids_row[:, 0] >= 0
            results.append((ids_row[keep, 0].astype(np.int64), scores_row[keep, 0], boxes_row[keep]))
    return results


def validation_map(net, preprocess: Preprocess, count: int, seed: int = VALIDATION_SEED) -> np.ndarray:
    """Per-class AP@0.5 of the decoding net on ``count`` fresh 320 px scenes."""
    rng = np.random.default_rng(seed)
    scenes = [generate_scene(rng) for _ in range(count)]
    images = resize_for_network(np.stack([scene.image for scene in scenes]), preprocess)
    scale = images.shape[2] / 320.0
    predictions = predict(net, images, preprocess)
    truths = [(scene.class_ids, scene.boxes * scale) for scene in scenes]
    return detection_average_precisions(predictions, truths, len(CLASSES))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@training_options(DEFAULT_OUT, minutes=30.0, validation_images=300, seed=TRAIN_SEED, pool_items="Scenes")
@click.option("--noise-background", "noise_probability", default=0.0, show_default=True,
              type=click.FloatRange(0, 1),
              help="Share of training scenes whose background is partly replaced by uniform noise, as "
                   "the explainer's masking does (0 turns it off).")
@click.option("--init", "init_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Start from this exported detector (model.json + params) instead of from scratch.")
def main(out_dir, minutes, steps, batch_size, base_lr, pool_size, refresh, validation_images, seed,
         noise_probability, init_dir):
    """Train the tiny CenterNet shapes detector and export it (set OMP_NUM_THREADS to bound CPU use)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    rng = seed_everything(seed)
    preprocess = Preprocess(short_side=SHORT_SIDE, max_size=MAX_SIZE)
    pool = ScenePool(rng, pool_size, preprocess, noise_probability=noise_probability)
    net = build_detector(len(CLASSES), top_k=TOP_K)
    if init_dir is not None:
        spec = load_model_spec(init_dir)
        net.collect_params().load(os.path.join(init_dir, spec.params_file))
        logger.info("starting from %s", init_dir)
    net.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": base_lr, "wd": 1e-5})
    grid_height = -(-pool.images.shape[1] // STRIDE)
    grid_width = -(-pool.images.shape[2] // STRIDE)
    clock = TrainingClock(base_lr, minutes, steps)
    step, running = 0, None
    while not clock.finished(step):
        images, targets = pool.batch(batch_size)
        heatmap, regression, centre_mask = (mx.nd.array(a) for a in
                                            build_targets(targets, grid_height, grid_width, len(CLASSES), STRIDE))
        data = preprocess_batch(images, preprocess)
        trainer.set_learning_rate(clock.learning_rate(step))
        with autograd.record():
            loss, focal, l1 = centernet_loss(net(data), heatmap, regression, centre_mask, len(CLASSES))
        loss.backward()
        trainer.step(1)
        values = np.array([loss.asscalar(), focal.asscalar(), l1.asscalar()])
        running = values if running is None else 0.98 * running + 0.02 * values
        for _ in range(refresh):
            pool.replace(int(rng.integers(len(pool.images))))
        step += 1
        if step % 50 == 0:
            logger.info("step %d  %.1f min  lr %.2e  loss %.3f (focal %.3f, box %.3f)", step,
                        clock.elapsed_minutes(), clock.learning_rate(step), *running)
    logger.info("trained %d steps in %.1f minutes", step, clock.elapsed_minutes())

    net.set_decode(True)
    net.hybridize()
    aps = validation_map(net, preprocess, validation_images)
    os.makedirs(out_dir, exist_ok=True)
    net.export(os.path.join(out_dir, "model"))
    ModelSpec(task="detection", classes=list(CLASSES), symbol_file="model-symbol.json",
              params_file="model-0000.params", preprocess=preprocess,
              score_threshold=SCORE_THRESHOLD, top_k=TOP_K).save(out_dir)
    click.echo("validation mAP@0.5 over %d images: %.4f  (%s)" % (
        validation_images, np.nanmean(aps),
        ", ".join("%s %.4f" % (name, ap) for name, ap in zip(CLASSES, aps))))
    click.echo("exported to %s after %d steps (%.1f min)" % (out_dir, step, clock.elapsed_minutes()))


if __name__ == "__main__":
    main()
