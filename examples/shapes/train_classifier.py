"""Train the shapes classifier on one-object images and export it with its model.json.

Input size: ``short_side=128`` makes the 48-128 px shapes of a 320 px image 19-51 px on the
network input, plenty to tell a circle from a rotated square or triangle, at a sixth of the
cost of full resolution.
"""
from __future__ import annotations

import logging
import os
import sys

import click
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from examples.shapes.classifier_net import build_classifier
from examples.shapes.dataset import (
    CLASSES,
    generate_classification_batch,
    generate_classification_sample,
)
from examples.shapes.training_utils import TrainingClock, resize_for_network, seed_everything
from serving.model_spec import ModelSpec, Preprocess
from serving.preprocess import preprocess_batch

logger = logging.getLogger(__name__)

DEFAULT_OUT = os.path.join("models", "shapes-classifier")
SHORT_SIDE = 128
MAX_SIZE = 512
TRAIN_SEED = 2026_0003
VALIDATION_SEED = 2026_0004


class ImagePool:
    """A pool of resized one-object images, partly regenerated every step for fresh data."""

    def __init__(self, rng: np.random.Generator, size: int, preprocess: Preprocess):
        self.rng = rng
        self.preprocess = preprocess
        images, labels = [], []
        for start in range(0, size, 250):
            chunk_images, chunk_labels = generate_classification_batch(rng, min(250, size - start))
            images.append(resize_for_network(chunk_images, preprocess))
            labels.append(chunk_labels)
            logger.info("generated %d/%d pool images", start + len(chunk_labels), size)
        self.images = np.concatenate(images)
        self.labels = np.concatenate(labels)

    def replace(self, index: int) -> None:
        sample = generate_classification_sample(self.rng)
        self.images[index] = resize_for_network(sample.image[None], self.preprocess)[0]
        self.labels[index] = sample.class_ids[0]

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(images (B, h, w, 3) uint8, labels (B,) int64)`` with random dihedral flips."""
        indices = self.rng.choice(len(self.images), size=batch_size, replace=False)
        images = []
        for index in indices:
            image = self.images[index]
            if self.rng.uniform() < 0.5:
                image = image[:, ::-1]
            if self.rng.uniform() < 0.5:
                image = image[::-1]
            if self.rng.uniform() < 0.5 and image.shape[0] == image.shape[1]:
                image = image.transpose(1, 0, 2)
            images.append(np.ascontiguousarray(image))
        return np.stack(images), self.labels[indices]


def predict_labels(net, images: np.ndarray, preprocess: Preprocess, batch_size: int = 64) -> np.ndarray:
    """Return ``(N,)`` int64 predicted classes for ``(N, H, W, 3)`` uint8 images."""
    outputs = [net(preprocess_batch(images[start:start + batch_size], preprocess)).asnumpy()
               for start in range(0, len(images), batch_size)]
    return np.concatenate(outputs).argmax(axis=1)


@click.command()
@click.option("--out", "out_dir", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False),
              help="Directory for model-symbol.json, model-0000.params and model.json.")
@click.option("--minutes", default=15.0, show_default=True, type=click.FloatRange(0.1, 600),
              help="Wall-clock training budget (the cosine schedule spans it).")
@click.option("--steps", default=None, type=click.IntRange(1), help="Train this many steps instead of --minutes.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--lr", "base_lr", default=3e-3, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--pool-size", default=2000, show_default=True, type=click.IntRange(64),
              help="Images held in memory; --refresh of them are regenerated every step.")
@click.option("--refresh", default=2, show_default=True, type=click.IntRange(0))
@click.option("--validation-images", default=500, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=TRAIN_SEED, show_default=True, type=int)
def main(out_dir, minutes, steps, batch_size, base_lr, pool_size, refresh, validation_images, seed):
    """Train the small CNN shapes classifier and export it (set OMP_NUM_THREADS to bound CPU use)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    rng = seed_everything(seed)
    preprocess = Preprocess(short_side=SHORT_SIDE, max_size=MAX_SIZE)
    pool = ImagePool(rng, pool_size, preprocess)
    net = build_classifier(len(CLASSES))
    net.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": base_lr, "wd": 1e-5})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    clock = TrainingClock(base_lr, minutes, steps)
    step, running_loss, running_accuracy = 0, None, None
    while not clock.finished(step):
        images, labels = pool.batch(batch_size)
        data = preprocess_batch(images, preprocess)
        label_array = mx.nd.array(labels)
        trainer.set_learning_rate(clock.learning_rate(step))
        with autograd.record():
            logits = net(data)
            loss = loss_fn(logits, label_array).mean()
        loss.backward()
        trainer.step(1)
        accuracy = float((logits.asnumpy().argmax(axis=1) == labels).mean())
        if running_loss is None:
            running_loss, running_accuracy = loss.asscalar(), accuracy
        running_loss = 0.98 * running_loss + 0.02 * loss.asscalar()
        running_accuracy = 0.98 * running_accuracy + 0.02 * accuracy
        for _ in range(refresh):
            pool.replace(int(rng.integers(len(pool.images))))
        step += 1
        if step % 50 == 0:
            logger.info("step %d  %.1f min  lr %.2e  loss %.4f  train accuracy %.3f", step,
                        clock.elapsed_minutes(), clock.learning_rate(step), running_loss, running_accuracy)
    logger.info("trained %d steps in %.1f minutes", step, clock.elapsed_minutes())

    validation_rng = np.random.default_rng(VALIDATION_SEED)
    images, labels = generate_classification_batch(validation_rng, validation_images)
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
