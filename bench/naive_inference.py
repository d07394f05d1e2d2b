"""A handler written the simple way, as in the public reference notebook: one image, one gluoncv transform, one forward.

Used only by bench/bench_serving.py to show the batch-aware handler's gain side by side. It
loops over the images of an npy batch, runs gluoncv's ``transform_test`` and a forward pass per
image, and returns the same rows as serving/ so both can be compared on equal terms.
"""
import io
import json
import os

import mxnet as mx
import numpy as np


def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.json")) as handle:
        spec = json.load(handle)
    net = mx.gluon.SymbolBlock.imports(os.path.join(model_dir, spec["symbol_file"]), ["data"],
                                       os.path.join(model_dir, spec["params_file"]))
    net.hybridize()
    return net, spec


def transform_fn(model, body, content_type, accept):
    from gluoncv.data.transforms.presets.yolo import transform_test

    net, spec = model
    images = np.load(io.BytesIO(body), allow_pickle=False)
    if images.ndim == 3:
        images = images[None]
    results = []
    for image in images:
        data, _ = transform_test(mx.nd.array(image), short=spec["preprocess"]["short_side"],
                                 max_size=spec["preprocess"]["max_size"])
        class_ids, scores, boxes = net(data)
        height, width = data.shape[2:]
        keep = class_ids[0, :, 0].asnumpy() >= 0
        rows = np.concatenate([class_ids[0].asnumpy(), scores[0].asnumpy(),
                               boxes[0].asnumpy() / [width, height, width, height]], axis=1)[keep]
        results.append(np.clip(rows, [-1, 0, 0, 0, 0, 0], [1e9, 1, 1, 1, 1, 1]).tolist())
    return json.dumps(results), "application/json"
