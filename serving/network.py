"""Load an exported Gluon network on the right device and run batched forward passes."""
import logging
import os
import warnings

import mxnet as mx
import numpy as np

from .errors import ModelSpecError
from .model_spec import load_model_spec
from .preprocess import preprocess_batch

logger = logging.getLogger(__name__)

# MXNet 1.9 keeps the oneDNN (MKL-DNN) primitives it builds for every operator and input shape
# in per-operator caches that are unbounded by default (MXNET_MKLDNN_CACHE_NUM=-1): a CPU worker
# fed photos of many sizes grew by 1-3 MB per new shape (shapes detector) and ~20 MB (YOLOv3),
# until it ran out of memory. Each cache is capped per operator kind and per engine thread;
# oneDNN's own primitive cache (1,024 entries) keeps rebuilding cheap, so a cap costs no speed:
# measured in BENCHMARKS.md ("oneDNN primitive cache", bench/bench_shape_memory.py).
PRIMITIVE_CACHE_VARIABLE = "MXNET_MKLDNN_CACHE_NUM"
DEFAULT_PRIMITIVE_CACHE_ENTRIES = 32


def cap_primitive_cache(entries=DEFAULT_PRIMITIVE_CACHE_ENTRIES):
    """Set ``MXNET_MKLDNN_CACHE_NUM`` to ``entries`` unless it is already set; return the value in force.

    MXNet reads the variable once per operator kind, when that kind first caches a primitive:
    this must run before the process's first CPU forward pass (``LoadedNetwork`` calls it before
    loading; in a process that already ran one, the value read then stays).
    """
    return os.environ.setdefault(PRIMITIVE_CACHE_VARIABLE, str(entries))


def choose_context(gpu_id=None):
    """The GPU named by MMS (``gpu_id``) or the first one when there is a GPU; else the CPU."""
    try:
        gpus = mx.context.num_gpus()
    except mx.base.MXNetError:
        gpus = 0
    if gpus > 0:
        return mx.gpu(int(gpu_id) % gpus if gpu_id is not None else 0)
    return mx.cpu()


class LoadedNetwork(object):
    """An exported network, its ``model.json`` and its device.

    ``forward(images)`` takes ``(N, H, W, 3)`` uint8 and returns the raw outputs as numpy arrays:
    detection ``(class_ids (N, K), scores (N, K), boxes (N, K, 4))`` with boxes in pixels of the
    resized input, classification ``(probabilities (N, C),)``; plus the resized ``(h, w)``.
    """

    def __init__(self, model_dir, ctx=None):
        cap_primitive_cache()
        self.spec = load_model_spec(model_dir)
        self.ctx = ctx if ctx is not None else choose_context()
        symbol_path = os.path.join(model_dir, self.spec.symbol_file)
        params_path = os.path.join(model_dir, self.spec.params_file)
        for path in (symbol_path, params_path):
            if not os.path.isfile(path):
                raise ModelSpecError("%s named in model.json does not exist" % path)
        try:
            symbol = mx.sym.load(symbol_path)
        except mx.base.MXNetError as error:
            raise ModelSpecError("%s is not an MXNet symbol file (a -symbol.json written by HybridBlock.export): %s"
                                 % (self.spec.symbol_file, _last_line(error)))
        with warnings.catch_warnings():  # "Cannot decide type for data": the input is float32, always
            warnings.simplefilter("ignore", UserWarning)
            self.net = mx.gluon.SymbolBlock(symbol, mx.sym.var(self.spec.input_name))
        try:
            # cast_dtype lets weights stored as float16 load into the float32 graph.
            self.net.collect_params().load(params_path, ctx=self.ctx, cast_dtype=True, dtype_source="current")
        except (mx.base.MXNetError, AssertionError, ValueError) as error:  # gluon asserts names and shapes
            raise ModelSpecError("%s is not an MXNet parameter file that fits %s: %s"
                                 % (self.spec.params_file, self.spec.symbol_file, _last_line(error)))
        self.net.hybridize(static_alloc=True)
        self.outputs = len(symbol.list_outputs())
        expected = 3 if self.spec.task == "detection" else 1
        if self.outputs != expected:
            raise ModelSpecError(
                "a %s network must have %d output(s), %s has %d"
                % (self.spec.task, expected, self.spec.symbol_file, self.outputs)
            )
        logger.info("loaded %s (%s, %d classes) on %s", model_dir, self.spec.task, len(self.spec.classes), self.ctx)

    def warm_up(self):
        """One forward pass on a blank image so the first request is not slow."""
        side = self.spec.preprocess.short_side
        self.forward(np.zeros((1, side, side, 3), dtype=np.uint8))

    def forward(self, images):
        batch = preprocess_batch(images, self.spec.preprocess, ctx=self.ctx)
        resized = batch.shape[2:]
        outputs = self.net(batch)
        if self.spec.task == "classification":
            return (mx.nd.softmax(outputs, axis=-1).asnumpy(),), resized
        class_ids, scores, boxes = [output.asnumpy() for output in outputs]
        return (_per_candidate(class_ids), _per_candidate(scores), boxes), resized


def _per_candidate(values):
    """Class ids or scores as ``(N, K)``: GluonCV's YOLO, SSD and Faster R-CNN give ``(N, K, 1)``,
    CenterNet gives ``(N, K)`` already; a last axis is dropped only when it has size 1."""
    if values.ndim == 3 and values.shape[-1] == 1:
        return values[..., 0]
    return values


def _last_line(error, limit=300):
    """The last non-empty line of an exception's text (MXNetError's first lines are a C++ traceback), cut at ``limit``."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[-1] if lines else error.__class__.__name__
    if text.startswith("MXNetError: "):
        text = text[len("MXNetError: "):]
    return text if len(text) <= limit else text[:limit] + "..."
