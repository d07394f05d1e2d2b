"""Response decoding: an endpoint's answer to N images -> N arrays, in the formats Clarify reads.

Besides the wire contract's own answers (a JSON list per image, or npy), an image endpoint may
answer as SageMaker's built-in algorithms and Clarify's examples do:

- the built-in Object Detection algorithm: ``{"prediction": [[class, score, x0, y0, x1, y1], ...]}``
  for its one image (rows of one image, not one row per image);
- a bare list of detection rows ``[[class, score, x0, y0, x1, y1], ...]`` for one image;
- any JSON document from which a JMESPath expression (Clarify's ``predictor.probability``)
  picks the scores: e.g. ``probabilities`` in ``{"probabilities": [...], "labels": [...]}``.

``decode_response`` knows the task and how many images the request held, which is what tells
these apart from a batch answer.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from serving.contract import JSON, NPY, decode_predictions, entry_as_array, media_type

from ..errors import ConfigError

__all__ = ["compile_probability_path", "decode_response"]

_DETECTION_ROW = 6
_MAX_SNIPPET_CHARS = 200


@functools.lru_cache(maxsize=16)
def compile_probability_path(expression: str):
    """A compiled JMESPath expression; ConfigError (field ``probability``) when it does not parse."""
    import jmespath  # comes with boto3, a base dependency
    from jmespath.exceptions import JMESPathError

    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError(f"probability must be a JMESPath expression such as 'prediction', got {expression!r}",
                          field="probability")
    try:
        return jmespath.compile(expression)
    except JMESPathError as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"probability {expression!r} is not a valid JMESPath expression: {message}",
                          field="probability") from None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_number_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_number(item) for item in value)


def _per_image(payload, task: str | None, num_images: int) -> list[np.ndarray]:
    """The decoded JSON ``payload`` as one array per image (see the module docstring)."""
    if not isinstance(payload, list):
        raise ValueError(f"expected a list (one entry per image), got {type(payload).__name__}")
    if num_images == 1:
        if task == "detection" and not payload:
            return [np.zeros((0, _DETECTION_ROW), dtype=np.float32)]  # one image, nothing detected
        if task == "detection" and all(_is_number_list(row) and len(row) == _DETECTION_ROW for row in payload):
            return [entry_as_array(payload, 0)]  # one image's rows, as the built-in algorithm answers
        if task != "detection" and _is_number_list(payload):
            return [entry_as_array(payload, 0)]  # one image's scores
    if task is None and _is_number_list(payload):
        return [entry_as_array(payload, 0)]
    return [entry_as_array(entry, index) for index, entry in enumerate(payload)]


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text if len(text) <= _MAX_SNIPPET_CHARS else text[:_MAX_SNIPPET_CHARS] + "..."


def decode_response(body: bytes, content_type: str, task: str | None, num_images: int,
                    probability: str | None = None) -> list[np.ndarray]:
    """Decode an answer to ``num_images`` images into one float32 array per image.

    Detection: (D, 6) rows ``[class_id, score, x0/w, y0/h, x1/w, y1/h]`` per image (D may be 0);
    classification: (C,) scores per image. ``application/x-npy`` answers are the wire
    contract's (``serving.contract.decode_predictions``). A JSON answer is first narrowed by
    the JMESPath ``probability`` when given, else unwrapped from ``{"prediction": ...}``; then
    a list per image, or, when the request held one image, that image's rows (detection) or
    scores (classification). Raises ValueError, saying what was found, for an answer that is
    none of these.
    """
    kind = media_type(content_type)
    if kind == NPY and probability is None:
        return decode_predictions(body, content_type)
    if kind == NPY:
        raise ValueError(f"probability {probability!r} applies to JSON answers, the endpoint answered {NPY}; "
                         f"ask for JSON (--accept {JSON}; TransportConfig(accept=...) from Python) or drop --probability")
    if kind != JSON:
        raise ValueError(f"content type {content_type!r}; expected {JSON} or {NPY}")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"not valid JSON: {error}") from None
    except RecursionError:  # Python's json parser recurses once per level
        raise ValueError(f"the answer is nested too deeply to be scores or detection rows (lists of numbers, "
                         f"a list per image): {_snippet(body)}") from None
    if probability is not None:
        payload = compile_probability_path(probability).search(payload)
        if payload is None:
            raise ValueError(f"probability {probability!r} finds nothing in {_snippet(body)}; "
                             "set it to the JMESPath of the scores")
    elif isinstance(payload, dict) and "prediction" in payload:
        payload = payload["prediction"]
    try:
        return _per_image(payload, task, num_images)
    except ValueError as error:
        found = f"probability {probability!r} gives" if probability is not None else "the answer is"
        raise ValueError(f"{found} {_snippet(json.dumps(payload).encode())}: {error}"
                         f"{_shape_hint(payload, task, probability)}") from None


def _shape_hint(payload, task: str | None, probability: str | None) -> str:
    """What an answer of the wrong form suggests (review 32: a classifier's scores sent to a detection run, an
    object of named fields without --probability), as a suffix ('' when nothing)."""
    if isinstance(payload, dict) and probability is None:
        return ("; an object: set --probability (predictor.probability in a Clarify config) to the JMESPath of the "
                f"scores among its fields ({', '.join(map(str, list(payload)[:5]))})")
    if task == "detection" and (_is_number_list(payload) or (isinstance(payload, list) and payload
                                                             and all(_is_number_list(item) for item in payload))):
        return ("; lists of numbers that are not 6-number detection rows: a classifier's scores? (use --task "
                "classification; model_type IMAGE_CLASSIFICATION in a Clarify config)")
    return ""
