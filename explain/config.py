"""ExplainConfig: the one validated settings object of an explanation run (Clarify's names)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from serving.contract import CLIENT_REQUEST_TYPES, NPY, TASKS

from .errors import ConfigError

__all__ = ["ExplainConfig", "TASKS", "BUILTIN_BASELINES", "SEGMENTATION_METHODS", "FOCUS_CHOICES",
           "DETECTION_ONLY_SETTINGS", "REQUEST_SETTINGS", "EVERY_SCORE", "MAX_HEADER_CHARS",
           "detection_custom_attributes", "names_one_s3_object", "plain_number"]

EVERY_SCORE = "score_threshold=0"  # the custom attribute that asks a detector for every score
MAX_HEADER_CHARS = 1024  # SageMaker's limit on CustomAttributes and TargetModel values


def detection_custom_attributes(given: str | None) -> str:
    """The custom attributes a detection explanation sends for ``given``: a masked image's weaker
    detections still count, so ``EVERY_SCORE`` alone, or after ``given`` (stripped: a header value
    cannot start with a space) unless it sets ``score_threshold`` itself (``top_k=10`` alone left the
    model's default threshold: values moved by up to 0.24). Raises ConfigError when adding it passes
    ``MAX_HEADER_CHARS``."""
    if given is None or not given.strip():
        return EVERY_SCORE
    given = given.strip()
    if "score_threshold" in {item.partition("=")[0].strip().lower() for item in given.split(",")}:
        return given
    sent = f"{given.rstrip(',').rstrip()},{EVERY_SCORE}"
    if len(sent) > MAX_HEADER_CHARS:
        raise ConfigError(f"custom_attributes is {len(given)} characters, and detection explanations add "
                          f",{EVERY_SCORE} (every score counts): {len(sent)} would pass SageMaker's limit of "
                          f"{MAX_HEADER_CHARS}; shorten it, or set score_threshold in it yourself",
                          field="custom_attributes")
    return sent

FOCUS_CHOICES = ("boxes", "none")
BUILTIN_BASELINES = ("noise", "mean", "blur", "black")
SEGMENTATION_METHODS = ("merged", "slico", "slic")  # what explain.segmentation.segment_image implements
# Settings that only a detection run uses (the CLI's "Detection:" options); a classification run ignores them.
DETECTION_ONLY_SETTINGS = ("probability_threshold", "max_objects", "iou_threshold", "context", "focus")
# The request settings that change the model's answers, with their defaults: copied from the
# transport (TransportConfig) so that a resumed run with other ones is refused. Not the endpoint,
# accept type (npy and JSON carry the same float32 values), concurrency, timeout or retries.
REQUEST_SETTINGS = {"content_type": NPY, "custom_attributes": None, "probability": None, "target_model": None}


_INT_FIELDS = ("num_samples", "num_segments", "max_segments", "max_objects", "seed", "resize", "batch_size")
_FLOAT_FIELDS = ("segment_compactness", "refine_fraction", "iou_threshold", "context", "probability_threshold",
                 "target_error")


def plain_number(value):
    """A numpy scalar as the Python number it holds (np.int64(8) -> 8, np.float32(0.3) -> 0.3, the shortest
    decimal that reads back as it, not its binary 0.30000001192092896, np.bool_(True) -> True), so settings
    computed with numpy validate, serialise and compare as typed ones; any other value unchanged. Python's own
    bool stays a bool (and is refused where a number is due)."""
    if type(value).__module__ != "numpy":
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _shortest_float(value)
    if type(value).__name__ in ("bool_", "bool"):  # numpy 1 names it bool_, numpy 2 bool (review 36)
        return bool(value)
    return value


def _shortest_float(value) -> float:
    """A numpy float as a Python float: float32 and float16 as the shortest decimal that reads back as them
    (np.float32(0.3) -> 0.3, not 0.30000001192092896: review 36), wider ones as they are. Not through str(),
    which numpy's print options (legacy='1.13') round to 12 digits (review 37)."""
    import numpy as np  # a numpy value: numpy is imported already

    if value.dtype.itemsize >= 8:
        return float(value)
    return float(np.format_float_positional(value, unique=True, trim="-"))


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}", field=name)
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{name} must be {allowed}, got {value!r}", field=name)


def _check_float(name: str, value, low: float, high: float | None = None,
                 low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}", field=name)
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value > high):
        left = "(" if low_open else "["
        allowed = f"> {low}" if (high is None and low_open) else (
            f">= {low}" if high is None else f"in {left}{low}, {high}]")
        raise ConfigError(f"{name} must be {allowed}, got {value!r}", field=name)


def names_one_s3_object(url: str) -> bool:
    """Whether ``url`` is s3://BUCKET/KEY with a bucket and a key that is not a folder (ending in /)."""
    bucket, _, key = url[len("s3://"):].partition("/")
    return url.startswith("s3://") and bool(bucket) and bool(key) and not key.endswith("/")


@dataclass(frozen=True)
class ExplainConfig:
    """Settings of one explanation run, validated once on construction.

    Names follow SageMaker Clarify's ImageConfig / SHAPConfig where Clarify has one.
    ``num_samples`` bounds the model evaluations of masked images per image and target
    group, the two anchors (empty and full coalition) and the refinement included; a masked
    image asked for twice is evaluated once, so a run may use a few less. The unmasked image
    is one call more: it is asked first, to find the targets, and again as the full
    coalition, on purpose: the two answers are compared (a model that answers the same image
    differently is named in the image's warnings), so an image costs at most num_samples + 1. ``segmentation``
    is not Clarify's: "slic" is scikit-image's plain SLIC as Clarify describes it, "slico"
    SLIC with adaptive compactness, "merged" (the default) merges an over-segmentation by
    colour so segments follow object outlines (``explain.segmentation.segment_image``).
    ``focus`` "boxes" (detection) makes every target box a segment border and gives boxes and
    their surroundings more, smaller segments (``explain.target_segments``).
    ``refine_fraction`` of ``num_samples`` goes to splitting, best first, the segments that
    hold the most value, up to ``max_segments`` (``explain.refinement``, where the meaning of
    a refined value is stated); 0 keeps the coarse segments. Clarify's behaviour:
    segmentation="slic", focus="none", refine_fraction=0. ``batch_size`` caps the masked
    images per predictor call; a remote adapter is fed one request's worth per call with
    its ``concurrency`` calls in flight (``explain.model_calls``).
    ``labels`` (classification) picks the classes to explain, by name or class id written as a string
    (``("cat", "3")``; a name is matched first); without it, the top class. ``content_type``,
    ``custom_attributes``, ``probability`` and ``target_model`` (REQUEST_SETTINGS) record how the model was
    asked (the transport's values); they change the answers, so a resumed run must repeat them.
    """

    task: str = "detection"
    num_samples: int = 500
    num_segments: int = 20
    segment_compactness: float = 5.0
    segmentation: str = "merged"
    focus: str = "boxes"
    refine_fraction: float = 0.4
    max_segments: int = 64
    baseline: str = "noise"
    max_objects: int = 3
    iou_threshold: float = 0.5
    context: float = 1.0
    probability_threshold: float = 0.5
    label_headers: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    seed: int = 0
    target_error: float | None = None
    metrics: bool = False
    resize: int | None = None
    batch_size: int = 128
    content_type: str = NPY
    custom_attributes: str | None = None
    probability: str | None = None
    target_model: str | None = None

    def __post_init__(self) -> None:
        for name in (*_INT_FIELDS, *_FLOAT_FIELDS, "metrics"):
            object.__setattr__(self, name, plain_number(getattr(self, name)))
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}", field="task")
        _check_int("num_samples", self.num_samples, 4, 1_000_000)
        _check_int("num_segments", self.num_segments, 2, 1000)
        _check_float("segment_compactness", self.segment_compactness, 0.0, low_open=True)
        if self.segmentation not in SEGMENTATION_METHODS:
            raise ConfigError(f"segmentation must be one of {', '.join(SEGMENTATION_METHODS)}, "
                              f"got {self.segmentation!r}", field="segmentation")
        if self.focus not in FOCUS_CHOICES:
            raise ConfigError(f"focus must be one of {', '.join(FOCUS_CHOICES)}, got {self.focus!r}",
                              field="focus")
        _check_float("refine_fraction", self.refine_fraction, 0.0, 0.9)
        _check_int("max_segments", self.max_segments, 2, 10_000)
        if isinstance(self.baseline, Path):
            object.__setattr__(self, "baseline", str(self.baseline))
        if not isinstance(self.baseline, str) or not self.baseline:
            shape = getattr(self.baseline, "shape", None)
            got = (f"an array of shape {tuple(shape)} (save it as a PNG file and give its path)" if shape is not None
                   else repr(self.baseline))
            raise ConfigError(
                f"baseline must be one of {', '.join(BUILTIN_BASELINES)}, a path to an "
                f"image file or an s3://BUCKET/KEY image, got {got}", field="baseline")
        if self.baseline.startswith("s3://"):  # read when the first image is explained (explain.baselines)
            if not names_one_s3_object(self.baseline):
                raise ConfigError(f"an S3 baseline must name one object, s3://BUCKET/KEY, got {self.baseline!r}",
                                  field="baseline")
        elif self.baseline not in BUILTIN_BASELINES and not Path(self.baseline).is_file():
            raise ConfigError(
                f"baseline must be one of {', '.join(BUILTIN_BASELINES)}, a path to an "
                f"existing image file or an s3://BUCKET/KEY image, got {self.baseline!r} (no such file)",
                field="baseline")
        _check_int("max_objects", self.max_objects, 1, 1000)
        _check_float("iou_threshold", self.iou_threshold, 0.0, 1.0)
        _check_float("context", self.context, 0.0, 1.0)
        _check_float("probability_threshold", self.probability_threshold, 0.0, 1.0)
        for name in ("label_headers", "labels"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, (list, Iterator)) or getattr(value, "ndim", None) == 1:  # a list, a
                # generator, a numpy array of names (np.loadtxt's): as a tuple of plain str
                value = tuple(str(item) if isinstance(item, str) else item
                              for item in (value.tolist() if hasattr(value, "tolist") else value))
                object.__setattr__(self, name, value)
            if not isinstance(value, tuple) or not value or not all(
                    isinstance(item, str) and item for item in value):
                what = ("class names, or class ids written as strings ('0', as --labels takes them)"  # review 44
                        if name == "labels" else "non-empty strings")
                raise ConfigError(f"{name} must be a non-empty tuple of {what}, got {value!r}", field=name)
        if self.label_headers is not None and len(set(self.label_headers)) < len(self.label_headers):
            twice = next(item for item in self.label_headers if self.label_headers.count(item) > 1)
            raise ConfigError(f"label_headers names {twice!r} more than once ({', '.join(self.label_headers)}): "
                              "give each class its own name, in class-id order", field="label_headers")
        if self.labels is not None and self.task != "classification":
            raise ConfigError(
                f"labels selects classes to explain and is allowed only with "
                f"task='classification', got task={self.task!r}", field="labels")
        _check_int("seed", self.seed, 0, 2**63 - 1)
        if self.target_error is not None:
            _check_float("target_error", self.target_error, 0.0, 1.0, low_open=True)
        if not isinstance(self.metrics, bool):
            raise ConfigError(f"metrics must be True or False, got {self.metrics!r}", field="metrics")
        if self.resize is not None:
            _check_int("resize", self.resize, 16, 8192)
        _check_int("batch_size", self.batch_size, 1, 100_000)
        if self.content_type not in CLIENT_REQUEST_TYPES:
            raise ConfigError(f"content_type must be one of {', '.join(CLIENT_REQUEST_TYPES)}, "
                              f"got {self.content_type!r}", field="content_type")
        for name in ("custom_attributes", "probability", "target_model"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{name} must be None or non-empty text, got {value!r}", field=name)
        if self.custom_attributes is not None:  # what is sent, as the resume check compares it
            object.__setattr__(self, "custom_attributes", detection_custom_attributes(self.custom_attributes)
                               if self.task == "detection" else self.custom_attributes.strip() or None)

    def not_applied(self) -> dict[str, str]:
        """The settings this run ignores, each with the reason: a classification run's detection-only
        settings (DETECTION_ONLY_SETTINGS); none for detection. They stay in ``to_dict`` (the
        settings digest of resumed runs) and analysis.json names them under ``settings_not_applied``."""
        if self.task == "detection":
            return {}
        return {name: "detection only: this run is classification" for name in DETECTION_ONLY_SETTINGS}

    def to_dict(self) -> dict:
        """Settings as a JSON-serialisable dict (tuples become lists)."""
        settings = asdict(self)
        for name in ("label_headers", "labels"):
            if settings[name] is not None:
                settings[name] = list(settings[name])
        return settings
