"""Train the shapes classifier on one-object images and export it with its model.json.

Input size: ``short_side=160`` (as the detector) makes the 48-128 px shapes of a 320 px image
24-64 px on the network input, plenty to tell a circle from a rotated square or triangle, at a
quarter of the cost of full resolution.
"""
from __future__ import annotations

import logging
import os
import sys

import click
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from examples.shapes.centernet_loss import build_targets, heatmap_focal_loss
from examples.shapes.classifier_net import build_classifier
from examples.shapes.dataset import CLASSES, generate_classification_batch
from examples.shapes.layers import STRIDE
from examples.shapes.training_utils import (
    ScenePool,
    TrainingClock,
    seed_everything,
    training_options,
)
from serving.model_spec import ModelSpec, Preprocess
from serving.preprocess import preprocess_batch

logger = logging.getLogger(__name__)

DEFAULT_OUT = os.path.join("models", "shapes-classifier")
SHORT_SIDE = 160
MAX_SIZE = 512
TRAIN_SEED = 2026_0003
VALIDATION_SEED = 2026_0004
IMAGE_LOSS_WEIGHT = 0.5  # cross-entropy on the spatial-max image logits, beside the heatmap loss


def predict_labels(net, images: np.ndarray, preprocess: Preprocess, batch_size: int = 64) -> np.ndarray:
    """Return ``(N,)`` int64 predicted classes for ``(N, H, W, 3)`` uint8 images."""
    outputs = [net(preprocess_batch(images[start:start + batch_size], preprocess)).asnumpy()
               for start in range(0, len(images), batch_size)]
    return np.concatenate(outputs).argmax(axis=1)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@training_options(DEFAULT_OUT, minutes=25.0, validation_images=500, seed=TRAIN_SEED, pool_items="Images")
def main(out_dir, minutes, steps, batch_size, base_lr, pool_size, refresh, validation_images, seed):
    """Train the heatmap-supervised shapes classifier and export it (set OMP_NUM_THREADS to bound CPU use)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    rng = seed_everything(seed)
    preprocess = Preprocess(short_side=SHORT_SIDE, max_size=MAX_SIZE)
    pool = ScenePool(rng, pool_size, preprocess, max_objects=1)
    net = build_classifier(len(CLASSES))
    net.set_dense(True)
    net.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": base_lr, "wd": 1e-5})
    cross_entropy = gluon.loss.SoftmaxCrossEntropyLoss()
    grid_height = -(-pool.images.shape[1] // STRIDE)
    grid_width = -(-pool.images.shape[2] // STRIDE)
    clock = TrainingClock(base_lr, minutes, steps)
    step, running = 0, None
    while not clock.finished(step):
        images, targets = pool.batch(batch_size)
        labels = np.array([class_ids[0] for class_ids, _ in targets])
        heatmap, _, centre_mask = build_targets(targets, grid_height, grid_width, len(CLASSES), STRIDE)
        data = preprocess_batch(images, preprocess)
        trainer.set_learning_rate(clock.learning_rate(step))
        with autograd.record():
            heatmap_logits = net(data)
            image_logits = heatmap_logits.max(axis=(2, 3))
            focal = heatmap_focal_loss(heatmap_logits, mx.nd.array(heatmap), float(centre_mask.sum()))
            image_loss = cross_entropy(image_logits, mx.nd.array(labels)).mean()
            loss = focal + IMAGE_LOSS_WEIGHT * image_loss
        loss.backward()
        trainer.step(1)
        accuracy = float((image_logits.asnumpy().argmax(axis=1) == labels).mean())
        values = np.array([loss.asscalar(), focal.asscalar(), image_loss.asscalar(), accuracy])
        running = values if running is None else 0.98 * running + 0.02 * values
        for _ in range(refresh):
            pool.replace(int(rng.integers(len(pool.images))))
        step += 1
        if step % 50 == 0:
            logger.info("step %d  %.1f min  lr %.2e  loss %.4f (focal %.4f, image %.4f)  train accuracy %.3f",
                        step, clock.elapsed_minutes(), clock.learning_rate(step), *running)
    logger.info("trained %d steps in %.1f minutes", step, clock.elapsed_minutes())

    validation_rng = np.random.default_rng(VALIDATION_SEED)
    images, labels = generate_classification_batch(validation_rng, validation_images)
    net.set_dense(False)
    net.hybridize()
    accuracy = float((predict_labels(net, images, preprocess) == labels).mean())
    os.makedirs(out_dir, exist_ok=True)
    net.export(os.path.join(out_dir, "model"))
    ModelSpec(task="classification", classes=list(CLASSES), symbol_file="model-symbol.json",
              params_file="model-0000.params", preprocess=preprocess).save(out_dir)
    click.echo("validation accuracy over %d images: %.4f" % (validation_images, accuracy))
    click.echo("exported to %s after %d steps (%.1f min)" % (out_dir, step, clock.elapsed_minutes()))


if __name__ == "__main__":
    main()
