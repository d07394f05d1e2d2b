"""Explainer: the object API. A model in (function, endpoint, SageMaker Predictor), Explanations out.

::

    from explain import Explainer, Explanation

    with Explainer("http://127.0.0.1:8080", task="detection", num_samples=500) as explainer:
        explanation = explainer("photo.jpg")          # one image: an Explanation
        explanations = explainer("photos/")           # a folder: one per image
    explanation.plot()                                # a matplotlib Figure
    explanation.save("photo.npz")                     # Explanation.load("photo.npz")
    explanation.to_shap()                             # a shap.Explanation
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from .config import REQUEST_SETTINGS, ExplainConfig
from .detection import check_label_headers
from .errors import ConfigError, ExplainError, UnknownSettingError
from .explainer import Explanation, conversion_hint, explain_image
from .images import decode_image, load_image
from .predictors import (
    CallablePredictor,
    MultiPredictor,
    Predictor,
    SageMakerPredictor,
    TransportConfig,
    make_predictor,
    transport_for_task,
)
from .runner import RunOptions, run_explanations
from .sources import collect_sources

__all__ = ["Explainer", "SETTINGS"]

SETTINGS = tuple(item.name for item in fields(ExplainConfig) if item.name not in REQUEST_SETTINGS)
"""The keyword settings ``Explainer`` takes: the fields of ExplainConfig but the request settings,
which it copies from the transport (``explain.config.REQUEST_SETTINGS``)."""


def _sagemaker_predictor_class():
    """sagemaker's Predictor class when the SDK is already imported (a user's Predictor means it is)."""
    module = sys.modules.get("sagemaker.base_predictor") or sys.modules.get("sagemaker.predictor")
    return getattr(module, "Predictor", None)


def _settings_config(base: ExplainConfig | None, task: str | None, settings: dict) -> ExplainConfig:
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        name = unknown[0]
        transport = [item.name for item in fields(TransportConfig)]
        if name in transport:  # review 34: content_type was answered "did you mean 'context'?"
            raise UnknownSettingError(
                f"{name!r} is how the model is asked, not an explain setting: give it as "
                f"Explainer(..., transport=TransportConfig({name}=...)) (explain.TransportConfig)", field=name)
        close = difflib.get_close_matches(name, [*SETTINGS, *transport], n=1)
        hint = ""
        if close:
            hint = (f" (did you mean {close[0]!r}?)" if close[0] in SETTINGS else
                    f" (did you mean transport=TransportConfig({close[0]}=...)?)")
        raise UnknownSettingError(
            f"Explainer got an unknown setting {name!r}{hint}; settings are the fields of ExplainConfig: "
            f"{', '.join(SETTINGS)} (transport settings go in transport=TransportConfig(...))", field=name)
    if base is not None and not isinstance(base, ExplainConfig):
        raise ConfigError(f"config must be an ExplainConfig, got {type(base).__name__}", field="config")
    base = base or ExplainConfig()
    if task is not None:
        settings = {**settings, "task": task}
    return replace(base, **settings)


def _one_map_per_image(segments) -> bool:
    """Whether ``segments`` holds one (H, W) map per image: an (N, H, W) array, or a list of (H, W)
    maps, which may differ in size as a list's images do (numpy cannot stack those)."""
    if segments is None:
        return False
    if isinstance(segments, (list, tuple)):
        return len(segments) > 0 and all(np.ndim(item) == 2 for item in segments)
    return np.ndim(segments) == 3


def _one_array_or_list(nested: list):
    """Nested lists of numbers that stack into one (H, W, ...) or (N, H, W, 3) array: that array; anything else
    (images of different sizes, lists of paths): a list of images, each item that is itself such nested lists
    read as its array. Python ints all in 0..255 (``image.tolist()``) are read as uint8."""
    array = _pixels(nested)
    if array is not None:
        return array
    arrays = [_pixels(item) if isinstance(item, list) else None for item in nested]
    return [item if array is None else array for item, array in zip(nested, arrays)]


def _pixels(nested: list) -> np.ndarray | None:
    """Nested lists of numbers as an array of at least 3 dimensions (ints 0..255 as uint8), else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy 1's ragged-array VisibleDeprecationWarning
            array = np.asarray(nested)
    except ValueError:  # numpy 2: an inhomogeneous shape
        return None
    if array.dtype.kind not in "biuf" or array.ndim < 3:
        return None
    if array.dtype.kind in "iu" and array.size and 0 <= array.min() and array.max() <= 255:
        return array.astype(np.uint8)  # review 34: Python ints made int64, which was then refused
    return array


class Explainer:
    """Explains a model's predictions on images with Kernel SHAP over superpixels.

    model, one of:

    - a function ``predict(batch)``: (N, H, W, 3) uint8 -> N arrays, (D_i, 6) detections
      ``[class_id, score, x0/w, y0/h, x1/w, y1/h]`` or (C,) class probabilities. It is given at
      most one endpoint request's worth of images per call (``transport.max_payload_bytes``
      as npy, at most ``transport.max_images_per_request``); a detection function with a
      ``score_threshold`` parameter (``deploy.client.EndpointClient.predict``) is called with
      ``score_threshold=0`` (``explain.predictors.CallablePredictor``);
    - a ``sagemaker.predictor.Predictor``: its endpoint is called through the explainer's own
      SageMaker transport (``explain.predictors.SageMakerPredictor``, with its session's
      ``sagemaker_runtime_client``): masked images packed into npy requests up to the payload
      limit, ``concurrency`` requests in flight, retries on throttling and 5xx; the
      Predictor's serializer and deserializer are not used;
    - a string or path: ``http(s)://`` URL, ``sagemaker:ENDPOINT_NAME`` or a model folder /
      model.tar.gz run in process (``explain.predictors.make_predictor``);
    - one of explain's predictors (``HttpPredictor``, ``MultiPredictor``, ...), used as it is.

    For detection, endpoints are asked for every score (``score_threshold=0``): a masked
    image's weaker detections still count.

    task: "detection" or "classification" (default: the config's, else "detection").
    config: an ExplainConfig to start from. settings: ExplainConfig fields by name
    (``num_samples=500``, ``label_headers=("cat", "dog")``, ...), validated once here; an
    unknown name raises UnknownSettingError (a ConfigError and a TypeError) naming it. The
    request settings (``explain.config.REQUEST_SETTINGS``: content type, custom attributes,
    probability, target model) come from how the model is asked, the predictor's transport
    or ``transport``, and are recorded in the config; a config that sets them otherwise is refused.
    ``label_headers`` default to the model's own ``class_names`` (a model folder's
    model.json); names that do not match them in number raise ConfigError.
    transport: how endpoints and functions are called (TransportConfig).

    Call it on an image ((H, W, 3) uint8: one Explanation), a batch ((N, H, W, 3) uint8 or a
    list: a list of Explanations), an image file (one) or a folder / ``s3://`` prefix (a list,
    in path order). ``run(images, out_dir)`` writes the files and report.html of a run
    instead (``explain.runner.run_explanations``). Close it (or use ``with``) to release
    the connections and temporary files of a model it opened.
    """

    def __init__(self, model, task: str | None = None, *, config: ExplainConfig | None = None,
                 transport: TransportConfig | None = None, **settings) -> None:
        self._closed, self._owned = False, False
        self.config = _settings_config(config, task, settings)
        if transport is not None and not isinstance(transport, TransportConfig):
            raise ConfigError(f"transport must be a TransportConfig, got {type(transport).__name__}",
                              field="transport")
        self.transport = transport or TransportConfig()
        self.predictor, self._owned = self._predictor_for(model)
        # how the model is asked, as the resume check compares it: the predictor's own transport
        # when it has one (a ready-made HttpPredictor, say), else the one given here
        asked = getattr(self.predictor, "transport", None)
        asked = asked if isinstance(asked, TransportConfig) else self.transport
        given = {name: getattr(self.config, name) for name in REQUEST_SETTINGS
                 if getattr(self.config, name) != REQUEST_SETTINGS[name]
                 and getattr(self.config, name) != getattr(asked, name)}
        if given:
            self.close()
            raise ConfigError(f"config sets {', '.join(sorted(given))}, which come from how the model is asked: "
                              "set them in transport=TransportConfig(...) (or the predictor's own)",
                              field=sorted(given)[0])
        self.config = replace(self.config, **{name: getattr(asked, name) for name in REQUEST_SETTINGS})
        class_names = getattr(self.predictor, "class_names", None)
        if class_names and self.config.label_headers is None:
            self.config = replace(self.config, label_headers=tuple(class_names))
        if class_names:
            try:
                check_label_headers(self.config.label_headers, tuple(class_names))
            except ConfigError:
                self.close()
                raise

    def _predictor_for(self, model):
        """(predictor, whether this Explainer opened it and must close it)."""
        task = self.config.task
        if isinstance(model, (str, os.PathLike)):
            return make_predictor(os.fspath(model), task, self.transport), True
        sagemaker_class = _sagemaker_predictor_class()
        if sagemaker_class is not None and isinstance(model, sagemaker_class):
            if getattr(model, "component_name", None):
                raise ConfigError(
                    f"the Predictor calls inference component {model.component_name!r}, which the explainer's "
                    "SageMaker transport does not address; give the endpoint of a plain model", field="model")
            client = model.sagemaker_session.sagemaker_runtime_client
            return SageMakerPredictor(model.endpoint_name, task, transport_for_task(self.transport, task), client=client), True
        if isinstance(model, (Predictor, MultiPredictor, CallablePredictor)):
            return model, False
        if callable(model):
            return CallablePredictor(model, task, self.transport), False
        raise ConfigError(
            f"model must be a function predict(batch), a sagemaker.predictor.Predictor, an endpoint URL, "
            f"sagemaker:ENDPOINT_NAME or a model path, got {type(model).__name__}", field="model")

    def __call__(self, images, segments: np.ndarray | None = None):
        """Explain one image (an Explanation) or several (a list of Explanations).

        images: (H, W, 3) uint8 -> one; (N, H, W, 3) uint8 or a list (or generator) of images / paths -> a
        list; an image file -> one; a folder or ``s3://`` prefix -> a list (jpg, jpeg, png,
        recursively, in path order). segments: your own features instead of the configured
        segmentation, captum's ``feature_mask``: (H, W) integer labels 0..S-1 for every
        image, or one per image of a batch or a list of N images or files: (N, H, W), or a list of N
        (H, W) maps whose sizes follow the images' (not for a folder, whose images are not known
        in number; ``explain.feature_masks``). A file that cannot be read or decoded raises ExplainError
        naming it, and the images explained before it are not returned: for many files, ``run`` records
        such a file as failed, goes on and keeps every result on disk.
        """
        self._check_open()
        per_image = _one_map_per_image(segments)
        if isinstance(images, Iterator):  # a generator of images or paths, as the list it gives
            images = list(images)
        if getattr(images, "ndim", None) == 1 and getattr(getattr(images, "dtype", None), "kind", None) in ("U", "O", "T"):
            images = images.tolist()  # paths (or images) in a numpy array, pandas' .values (T: numpy 2's StringDType)
        if isinstance(images, (str, os.PathLike)):
            location = os.fspath(images)
            if not location.startswith("s3://") and Path(location).is_file():
                return self._explain(load_image(location), segments)
            self._refuse_per_image_segments_for_a_folder(per_image, location)
            return [self._explain(image, segments) for image in self._images_under(location)]
        if isinstance(images, list) and images and all(isinstance(item, list) for item in images):
            images = _one_array_or_list(images)  # nested lists of pixel values: one array, not a list of rows
        if isinstance(images, (list, tuple)):
            if per_image and len(segments) != len(images):
                raise ConfigError(f"segments holds {len(segments)} maps for a list of {len(images)} images; give "
                                  "one (H, W) map for all or one per image", field="segments")
            explained = []
            for index, item in enumerate(images):
                own = segments[index] if per_image else segments
                if isinstance(item, (str, os.PathLike)) and not Path(os.fspath(item)).is_file():
                    self._refuse_per_image_segments_for_a_folder(per_image, os.fspath(item))
                    explained.extend(self._explain(image, own) for image in self._images_under(os.fspath(item)))
                else:
                    explained.append(self._explain(self._image(item), own))
            return explained
        if images is None or isinstance(images, (bytes, bytearray, int, float, dict)):
            raise ExplainError(f"images must be an (H, W, 3) or (N, H, W, 3) uint8 array, a path or a list, "
                               f"got {type(images).__name__}" + (
                                   " (file bytes: decode them with explain.images.decode_image(data, name))"
                                   if isinstance(images, (bytes, bytearray)) else ""))
        array = self._image(images)
        if array.ndim == 3:
            return self._explain(array, segments)
        if array.ndim == 4:
            if array.shape[-1] != 3 or array.dtype != np.uint8:  # the hint for the batch, not one of its images
                raise ExplainError(f"images must be an (N, H, W, 3) uint8 batch, got {array.shape} {array.dtype}"
                                   f"{conversion_hint(array, batch=True)}")
            if per_image and len(segments) != len(array):
                raise ConfigError(f"segments holds {len(segments)} maps for {len(array)} images; give one "
                                  "(H, W) map for all or one per image", field="segments")
            return [self._explain(image, segments[index] if per_image else segments)
                    for index, image in enumerate(array)]
        raise ExplainError(f"images must be an (H, W, 3) or (N, H, W, 3) uint8 array, a path or a list, "
                           f"got an array of shape {array.shape}{conversion_hint(array)}")

    @staticmethod
    def _refuse_per_image_segments_for_a_folder(per_image: bool, location: str) -> None:
        if per_image:
            raise ConfigError(f"segments holds one (H, W) map per image, but {location!r} is a folder or prefix "
                              "whose images are not known in number or order here: give one (H, W) map for all, "
                              "or a list of the image files with one map each", field="segments")

    @staticmethod
    def _image(item) -> np.ndarray:
        if isinstance(item, (str, os.PathLike)):
            return load_image(item)
        mode = getattr(item, "mode", None)
        if type(item).__module__.startswith("PIL.") and isinstance(mode, str) and mode != "RGB":
            raise ExplainError(f"image is a PIL image of mode {mode!r}, not RGB: pass image.convert('RGB')")
        return np.asarray(item)

    @staticmethod
    def _images_under(location: str):
        """Decoded images of a folder or s3:// prefix, one at a time (ExplainError if none)."""
        if not location.startswith("s3://") and not Path(location).exists():
            raise ExplainError(f"image file or folder not found: {location!r}")
        for source in collect_sources([location]):
            yield decode_image(source.read(), source.location)

    def _explain(self, image: np.ndarray, segments) -> Explanation:
        return explain_image(image, self.predictor, self.config, segments=segments)

    def run(self, images: Sequence, out_dir: str | Path, options: RunOptions | None = None) -> dict:
        """Explain files, folders or s3:// prefixes into ``out_dir``: per image the npz and the
        JPEGs, then analysis.json and report.html (``explain.runner.run_explanations``,
        resumable). Returns the run's summary, as analysis.json."""
        self._check_open()
        if isinstance(images, (str, os.PathLike)):
            images = [images]
        return run_explanations(images, self.predictor, self.config, out_dir, options)

    def close(self) -> None:
        """Release the predictor this Explainer opened (connections, a model's temporary files); later
        calls raise ExplainError."""
        self._closed = True
        if self._owned:
            self.predictor.close()
            self._owned = False

    def _check_open(self) -> None:
        if self._closed:  # a closed model answered on (review 30); an endpoint's connections would reopen
            raise ExplainError("this Explainer is closed (close() or the end of its with block): make a new one")

    def __enter__(self) -> Explainer:
        self._check_open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        description = getattr(self.predictor, "description", type(self.predictor).__name__)
        closed = ", closed" if self._closed else ""
        return f"Explainer({description}, task={self.config.task!r}, num_samples={self.config.num_samples}{closed})"
