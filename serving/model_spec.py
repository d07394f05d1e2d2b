"""The ``model.json`` file that describes a packaged model: task, classes, files, preprocessing.

Example::

    {
      "format_version": 1,
      "task": "detection",                      # or "classification"
      "classes": ["circle", "square", "triangle"],
      "symbol_file": "model-symbol.json",
      "params_file": "model-0000.params",
      "input_name": "data",
      "preprocess": {"short_side": 416, "max_size": 1024,
                     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                                                # classifiers may add "center_crop": 224 (Preprocess)
      "score_threshold": 0.0,                   # detection: rows below are dropped
      "top_k": 100,                             # detection: at most this many rows per image
      "images_per_pass": 1                      # optional: at most this many images per forward pass
    }

``images_per_pass`` is written only for a network whose graph runs a fixed number of images per
forward pass (GluonCV's exported Faster R-CNN runs one: its region-proposal concat is shaped for
a batch of 1). ``deploy package`` finds it out by running two images in one pass. The handler
still answers N images per request, one result per image, in passes of at most that many
images. Absent (or null): as many as the handler's limits allow.

Detection networks return GluonCV's three outputs ``(class_ids (N, K, 1), scores (N, K, 1),
boxes (N, K, 4))`` with boxes in pixels of the network input and padding rows of class -1
(CenterNet's ids and scores are ``(N, K)``, also accepted).
Classification networks return logits ``(N, C)``; the handler applies a softmax.
"""
import json
import os

from .contract import TASKS
from .errors import ModelSpecError

SPEC_FILENAME = "model.json"
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(object):
    """Resize the short side to ``short_side`` (long side capped at ``max_size``), then normalise.

    ``center_crop`` (classifiers only; None: no crop) is GluonCV's classification preset
    (``gluoncv.data.transforms.presets.imagenet.transform_eval``: short side 256, centre
    224x224 for most ImageNet networks): the short side is resized as mxnet's
    ``transforms.Resize(short_side, keep_ratio=True)`` does (bilinear, sizes truncated, no long
    side cap), then the centre ``center_crop`` x ``center_crop`` pixels are kept.
    """

    def __init__(self, short_side=416, max_size=1024, mean=IMAGENET_MEAN, std=IMAGENET_STD, center_crop=None):
        if not isinstance(short_side, int) or short_side < 8:
            raise ModelSpecError("preprocess.short_side must be an integer >= 8, got %r" % (short_side,))
        if not isinstance(max_size, int) or max_size < short_side:
            raise ModelSpecError(
                "preprocess.max_size must be an integer >= short_side (%d), got %r" % (short_side, max_size)
            )
        for name, value in (("mean", mean), ("std", std)):
            if len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
                raise ModelSpecError("preprocess.%s must be three numbers, got %r" % (name, value))
        if min(std) <= 0:
            raise ModelSpecError("preprocess.std must be positive, got %r" % (std,))
        if center_crop is not None and (isinstance(center_crop, bool) or not isinstance(center_crop, int)
                                        or not 8 <= center_crop <= short_side):
            raise ModelSpecError("preprocess.center_crop must be an integer from 8 to short_side (%d), got %r"
                                 % (short_side, center_crop))
        self.center_crop = center_crop
        self.short_side = short_side
        self.max_size = max_size
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    def to_dict(self):
        data = {"short_side": self.short_side, "max_size": self.max_size,
                "mean": list(self.mean), "std": list(self.std)}
        if self.center_crop is not None:  # absent otherwise: model.json files written before stay as they were
            data["center_crop"] = self.center_crop
        return data


class ModelSpec(object):
    """The validated content of ``model.json``."""

    def __init__(self, task, classes, symbol_file="model-symbol.json", params_file="model-0000.params",
                 input_name="data", preprocess=None, score_threshold=0.0, top_k=100, images_per_pass=None):
        if task not in TASKS:
            raise ModelSpecError("task must be one of %s, got %r" % (", ".join(TASKS), task))
        if not classes or not all(isinstance(c, str) and c for c in classes):
            raise ModelSpecError("classes must be a non-empty list of names, got %r" % (classes,))
        if not isinstance(score_threshold, (int, float)) or not 0.0 <= score_threshold <= 1.0:
            raise ModelSpecError("score_threshold must be a number in [0, 1], got %r" % (score_threshold,))
        if not isinstance(top_k, int) or top_k < 1:
            raise ModelSpecError("top_k must be a positive integer, got %r" % (top_k,))
        if images_per_pass is not None and (isinstance(images_per_pass, bool) or not isinstance(images_per_pass, int)
                                            or images_per_pass < 1):
            raise ModelSpecError("images_per_pass must be a positive integer or null, got %r" % (images_per_pass,))
        for name, value in (("symbol_file", symbol_file), ("params_file", params_file), ("input_name", input_name)):
            if not isinstance(value, str) or not value:
                raise ModelSpecError("%s must be a non-empty string, got %r" % (name, value))
        if task != "classification" and preprocess is not None and preprocess.center_crop is not None:
            raise ModelSpecError("preprocess.center_crop is for classifiers: a %s's boxes would be placed in "
                                 "the crop, not in the image" % task)
        self.task = task
        self.classes = list(classes)
        self.symbol_file = symbol_file
        self.params_file = params_file
        self.input_name = input_name
        self.preprocess = preprocess if preprocess is not None else Preprocess()
        self.score_threshold = float(score_threshold)
        self.top_k = top_k
        self.images_per_pass = images_per_pass

    def to_dict(self):
        data = {
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "classes": self.classes,
            "symbol_file": self.symbol_file,
            "params_file": self.params_file,
            "input_name": self.input_name,
            "preprocess": self.preprocess.to_dict(),
            "score_threshold": self.score_threshold,
            "top_k": self.top_k,
        }
        if self.images_per_pass is not None:  # absent otherwise: model.json files written before stay as they were
            data["images_per_pass"] = self.images_per_pass
        return data

    def with_images_per_pass(self, images_per_pass):
        """A copy of this spec with ``images_per_pass`` set."""
        data = self.to_dict()
        data["images_per_pass"] = images_per_pass
        return ModelSpec.from_dict(data)

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ModelSpecError("model.json must hold a JSON object")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ModelSpecError("model.json format_version %r is not supported (expected %d)"
                                 % (version, FORMAT_VERSION))
        known = {"format_version", "task", "classes", "symbol_file", "params_file", "input_name",
                 "preprocess", "score_threshold", "top_k", "images_per_pass"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelSpecError("model.json has unknown keys: %s" % ", ".join(unknown))
        for key in ("task", "classes"):
            if key not in data:
                raise ModelSpecError("model.json is missing %r" % key)
        preprocess = data.get("preprocess", {})
        if not isinstance(preprocess, dict):
            raise ModelSpecError("preprocess must be a JSON object, got %r" % (preprocess,))
        try:
            preprocess = Preprocess(**preprocess)
        except TypeError as error:
            raise ModelSpecError("preprocess: %s" % error)
        kwargs = {k: v for k, v in data.items() if k in known - {"format_version", "preprocess"}}
        return cls(preprocess=preprocess, **kwargs)

    def save(self, model_dir):
        """Write ``model.json`` into ``model_dir``."""
        with open(os.path.join(model_dir, SPEC_FILENAME), "w") as handle:
            json.dump(self.to_dict(), handle, indent=2)


def load_model_spec(model_dir):
    """Read and validate ``model_dir/model.json``."""
    path = os.path.join(model_dir, SPEC_FILENAME)
    if not os.path.isfile(path):
        raise ModelSpecError("%s not found: every packaged model needs a model.json" % path)
    try:
        with open(path) as handle:
            data = json.load(handle)
    except ValueError as error:
        raise ModelSpecError("%s is not valid JSON: %s" % (path, error))
    except (IOError, OSError) as error:
        raise ModelSpecError("%s cannot be read: %s" % (path, error.strerror or error))
    try:
        return ModelSpec.from_dict(data)
    except ModelSpecError as error:
        raise ModelSpecError("%s: %s" % (path, error.message))
