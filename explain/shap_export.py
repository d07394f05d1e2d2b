"""An explanation as a ``shap.Explanation``, for shap's plots (shap is optional: imported here only)."""

from __future__ import annotations

import numpy as np

from .detection import class_name
from .errors import ExplainError

__all__ = ["target_names", "to_shap"]


def target_names(explanation) -> list[str]:
    """One name per target: ``box 1: circle 0.93`` (detection) or ``cat 0.81`` (classification)."""
    names = []
    for index in range(explanation.num_targets):
        label = class_name(int(explanation.labels[index]), explanation.label_headers)
        score = float(explanation.target_scores[index])
        prefix = f"box {index + 1}: " if explanation.task == "detection" else ""
        names.append(f"{prefix}{label} {score:.2f}")
    return names


def to_shap(explanation, pixels: bool = False):
    """``shap.Explanation`` of ``explanation`` (an ``explain.explainer.Explanation``).

    Default, one row per segment (S segments, T targets): values and error_std (S, T),
    base_values (T,), data (S,) ones (every segment is present in the explained image),
    feature_names ``segment 0`` .. ``segment S-1``, output_names from ``target_names``;
    ``shap.plots.bar(result[:, 0])`` and ``shap.plots.waterfall(result[:, 0])`` draw target 0.
    pixels=True: values (1, H, W, 3, T), each segment's value spread evenly over its pixels
    and channels (the values still sum to prediction - base value), data (1, H, W, 3) the
    image, for ``shap.plots.image``. Raises ImportError, saying how to install shap, without it.
    """
    if isinstance(pixels, (bool, np.bool_)) or (isinstance(pixels, (int, np.integer)) and pixels in (0, 1)):
        pixels = bool(pixels)
    else:  # review 44: pixels="yes" was taken as True
        raise ExplainError(f"pixels must be True or False, got {pixels!r}")
    try:
        import shap
    except ImportError as error:
        raise ImportError("to_shap needs the shap package: pip install shap "
                          f"(or pip install '.[dev]' in the clearsight checkout); {error}") from None
    names = target_names(explanation)
    values = np.asarray(explanation.shap_values, dtype=np.float64)
    if not pixels:
        num_segments = values.shape[1]
        return shap.Explanation(
            values=values.T.copy(), base_values=np.asarray(explanation.base_values, dtype=np.float64),
            data=np.ones(num_segments), feature_names=[f"segment {index}" for index in range(num_segments)],
            output_names=names, error_std=np.asarray(explanation.standard_errors, dtype=np.float64).T.copy())
    if explanation.image is None:
        raise ExplainError("to_shap(pixels=True) needs the explained image; load the file with "
                         "Explanation.load(path, image=...)")
    segments = explanation.segments
    pixel_counts = np.bincount(segments.ravel(), minlength=values.shape[1]).astype(np.float64)
    per_value = values / (3.0 * np.maximum(pixel_counts, 1.0))  # (T, S)
    spread = np.repeat(per_value.T[segments][:, :, None, :], 3, axis=2)  # (H, W, 3, T)
    return shap.Explanation(values=spread[None], base_values=np.asarray(explanation.base_values)[None],
                            data=np.asarray(explanation.image)[None], output_names=names)
