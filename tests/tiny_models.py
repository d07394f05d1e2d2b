"""Tiny exported Gluon networks with known behaviour, for handler and endpoint tests.

The detector returns five candidate rows per image: classes ``[0, 1, -1, 2, -1]`` (two padding
rows), boxes at fixed fractions of the input size, and scores that grow with the image's mean
brightness (so masking an image changes them). The classifier returns logits from a global
colour average, so a red image is class 0, green class 1, blue class 2.
"""
import mxnet as mx
import numpy as np

from serving.model_spec import ModelSpec, Preprocess

DETECTOR_CLASSES = ["circle", "square", "triangle"]
CLASSIFIER_CLASSES = ["red", "green", "blue"]
BOX_FRACTIONS = np.array(
    [[0.10, 0.20, 0.50, 0.60], [0.40, 0.10, 0.90, 0.50], [0.0, 0.0, 1.0, 1.0],
     [-0.10, 0.50, 0.30, 1.20], [0.0, 0.0, 0.5, 0.5]], dtype=np.float32)
CLASS_IDS = np.array([0, 1, -1, 2, -1], dtype=np.float32)
SCORE_OFFSETS = np.array([0.3, 0.1, 0.0, -0.2, 0.0], dtype=np.float32)


class TinyDetector(mx.gluon.HybridBlock):
    """(N,3,h,w) normalised image -> (ids (N,5,1), scores (N,5,1), boxes (N,5,4) in pixels)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.fractions = self.params.get_constant("fractions", BOX_FRACTIONS)
            self.class_ids = self.params.get_constant("class_ids", CLASS_IDS.reshape(1, 5, 1))
            self.offsets = self.params.get_constant("offsets", SCORE_OFFSETS.reshape(1, 5, 1))

    def hybrid_forward(self, F, x, fractions, class_ids, offsets):
        brightness = F.mean(x, axis=(1, 2, 3)).reshape((-1, 1, 1))             # (N,1,1)
        scores = F.sigmoid(F.broadcast_add(brightness, offsets * 4))            # (N,5,1)
        ids = F.broadcast_like(class_ids, scores)
        scores = F.where(ids < 0, F.ones_like(scores) * -1, scores)
        size = F.cast(F.slice(F.shape_array(x), begin=(2,), end=(4,)), "float32")  # (h, w)
        scale = F.concat(F.slice_axis(size, axis=0, begin=1, end=2), F.slice_axis(size, axis=0, begin=0, end=1),
                         F.slice_axis(size, axis=0, begin=1, end=2), F.slice_axis(size, axis=0, begin=0, end=1),
                         dim=0)                                                   # (4,) w h w h
        boxes = F.broadcast_mul(fractions, scale.reshape((1, 4)))               # (5,4)
        boxes = F.broadcast_like(boxes.expand_dims(0), scores, lhs_axes=(0,), rhs_axes=(0,))
        return ids, scores, boxes


class BatchOfOneDetector(TinyDetector):
    """TinyDetector behind a reshape to a batch of 1, as GluonCV's exported Faster R-CNN is (its
    region-proposal concat is shaped for one image): one image per forward pass runs, two fail."""

    def hybrid_forward(self, F, x, fractions, class_ids, offsets):
        ids, scores, boxes = super().hybrid_forward(F, x, fractions, class_ids, offsets)
        # Faster R-CNN joins its (N*K, 4) proposals to a (K, 1) column of batch indices made for N = 1
        column = F.reshape(F.slice_axis(fractions, axis=1, begin=0, end=1), shape=(5, 1))   # (5, 1)
        joined = F.concat(column, F.reshape(boxes, shape=(-1, 4)), dim=1)                # (5, 5) for N = 1
        return ids, scores, F.reshape(F.slice_axis(joined, axis=1, begin=1, end=5), shape=(1, 5, 4))


class FlatScoresDetector(TinyDetector):
    """TinyDetector with CenterNet's layout: class ids and scores ``(N, 5)``, without the last axis of size 1."""

    def hybrid_forward(self, F, x, fractions, class_ids, offsets):
        ids, scores, boxes = super().hybrid_forward(F, x, fractions, class_ids, offsets)
        return F.reshape(ids, shape=(0, -1)), F.reshape(scores, shape=(0, -1)), boxes


class TinyClassifier(mx.gluon.HybridBlock):
    """(N,3,h,w) normalised image -> logits (N,3) = 4 * per-channel mean."""

    def hybrid_forward(self, F, x):
        return F.mean(x, axis=(2, 3)) * 4


def export_tiny_model(model_dir, task, short_side=64, max_size=256, batch_of_one=False, flat_scores=False):
    """Export the tiny detector or classifier with its model.json into ``model_dir``.

    ``batch_of_one``: the detector whose graph runs one image per forward pass (BatchOfOneDetector);
    ``flat_scores``: the one with CenterNet's ``(N, K)`` ids and scores (FlatScoresDetector).
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    if batch_of_one:
        net = BatchOfOneDetector()
    elif flat_scores:
        net = FlatScoresDetector()
    else:
        net = TinyDetector() if task == "detection" else TinyClassifier()
    net.initialize()
    net.hybridize()
    net(mx.nd.zeros((1, 3, short_side, short_side)))
    net.export(str(model_dir / "model"))
    ModelSpec(
        task=task,
        classes=DETECTOR_CLASSES if task == "detection" else CLASSIFIER_CLASSES,
        preprocess=Preprocess(short_side=short_side, max_size=max_size),
        score_threshold=0.0,
        top_k=100,
    ).save(str(model_dir))
    return model_dir
