"""A tiny CenterNet-style Gluon detector whose hybridized graph decodes to GluonCV's three outputs.

Why not ``yolo3_mobilenet0.25_custom``: trained from scratch on 2 shared CPU cores one YOLO step
(batch 16, 320 px) took about 3.8 s, so the time budget buys under 1,000 steps, too few for a
randomly initialised YOLO to reach mAP@0.5 >= 0.9. This net has 0.59 M parameters (2.4 MB in
fp32); one step (batch 32, 160 px input) took about 0.2 s on one core, and 30 minutes (about
4,300 steps beside the classifier's training) reached mAP@0.5 above 0.99.

Layout: a strided conv backbone to stride 16, a nearest upsample fused with the stride-8
features, and one head predicting per stride-8 cell three class heatmap logits, the box centre
offset within the cell (2) and the log box size in cells (2). Decoding (inside the graph, so the
exported symbol is self-contained): sigmoid heatmaps, peaks kept by a 3x3 max-pool, best class
per cell, boxes from offset and size, class-aware NMS that also sorts by score and pads with -1.
"""
from __future__ import annotations

import mxnet as mx
from mxnet.gluon import nn

from examples.shapes.layers import HEATMAP_BIAS, STRIDE, conv_block


class ShapesCenterNet(nn.HybridBlock):
    """Fully convolutional detector for ``(N, 3, h, w)`` float32 ImageNet-normalised input.

    ``forward`` returns, in training mode (``decode=False``), the raw head ``(N, C + 4, h/8, w/8)``
    (ceil-divided); after :meth:`set_decode` it returns GluonCV's outputs
    ``class_ids (N, K, 1)``, ``scores (N, K, 1)``, ``boxes (N, K, 4)`` (x0, y0, x1, y1 in pixels
    of the input), sorted by score with padding rows of -1.
    """

    def __init__(self, num_classes: int = 3, top_k: int = 100, nms_threshold: float = 0.5,
                 score_floor: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.top_k = top_k
        self.nms_threshold = nms_threshold
        self.score_floor = score_floor
        self.decode = False
        with self.name_scope():
            self.stride8 = nn.HybridSequential()
            self.stride8.add(conv_block(16, 2), conv_block(32, 2), conv_block(32),
                             conv_block(64, 2), conv_block(64))
            self.stride16 = nn.HybridSequential()
            self.stride16.add(conv_block(128, 2), conv_block(128), conv_block(128))
            self.fuse = nn.HybridSequential()
            self.fuse.add(conv_block(64), conv_block(64))
            self.head = nn.Conv2D(num_classes + 4, 1)

    def set_decode(self, decode: bool = True) -> None:
        """Switch between raw head output (training) and decoded detections (export)."""
        self.decode = decode

    def hybrid_forward(self, F, x):
        features8 = self.stride8(x)
        features16 = self.stride16(features8)
        upsampled = F.slice_like(F.UpSampling(features16, scale=2, sample_type="nearest"),
                                 features8, axes=(2, 3))
        head = self.head(self.fuse(F.concat(features8, upsampled, dim=1)))
        if not self.decode:
            return head
        return self._decode(F, head)

    def _decode(self, F, head):
        num_classes = self.num_classes
        heat = F.sigmoid(F.slice_axis(head, axis=1, begin=0, end=num_classes))
        peaks = F.Pooling(heat, kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type="max")
        heat = heat * (peaks == heat)
        scores = F.max(heat, axis=1)  # (N, h, w)
        class_ids = F.argmax(heat, axis=1)  # (N, h, w) float
        offsets = F.slice_axis(head, axis=1, begin=num_classes, end=num_classes + 2)
        log_sizes = F.slice_axis(head, axis=1, begin=num_classes + 2, end=num_classes + 4)
        one_map = F.slice_axis(head, axis=1, begin=0, end=1)  # (N, 1, h, w)
        cols = F.broadcast_like(F.contrib.arange_like(one_map, axis=3).reshape((1, 1, 1, -1)), one_map)
        rows = F.broadcast_like(F.contrib.arange_like(one_map, axis=2).reshape((1, 1, -1, 1)), one_map)
        centre_x = (cols + F.slice_axis(offsets, axis=1, begin=0, end=1)) * STRIDE
        centre_y = (rows + F.slice_axis(offsets, axis=1, begin=1, end=2)) * STRIDE
        half_w = F.exp(F.slice_axis(log_sizes, axis=1, begin=0, end=1)) * (STRIDE / 2.0)
        half_h = F.exp(F.slice_axis(log_sizes, axis=1, begin=1, end=2)) * (STRIDE / 2.0)
        columns = [class_ids.expand_dims(1), scores.expand_dims(1),
                   centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h]
        rows_table = F.concat(*columns, dim=1).reshape((0, 0, -1)).transpose((0, 2, 1))  # (N, hw, 6)
        padding = F.ones_like(F.slice_axis(rows_table, axis=1, begin=0, end=1)) * -1.0
        padding = F.tile(padding, reps=(1, self.top_k, 1))  # (N, K, 6): keeps K rows when hw < K
        table = F.concat(rows_table, padding, dim=1)
        table = F.contrib.box_nms(table, overlap_thresh=self.nms_threshold, valid_thresh=self.score_floor,
                                  topk=-1, coord_start=2, score_index=1, id_index=0,
                                  force_suppress=False, in_format="corner", out_format="corner")
        table = F.slice_axis(table, axis=1, begin=0, end=self.top_k)
        return (F.slice_axis(table, axis=2, begin=0, end=1),
                F.slice_axis(table, axis=2, begin=1, end=2),
                F.slice_axis(table, axis=2, begin=2, end=6))


def build_detector(num_classes: int = 3, top_k: int = 100) -> ShapesCenterNet:
    """Return an initialised :class:`ShapesCenterNet` with the heatmap bias prior set."""
    net = ShapesCenterNet(num_classes=num_classes, top_k=top_k)
    net.initialize(mx.init.Xavier(magnitude=2.0))
    bias = net.head.bias
    bias.initialize(force_reinit=True)
    values = bias.data().asnumpy()
    values[:num_classes] = HEATMAP_BIAS
    bias.set_data(mx.nd.array(values))
    return net
