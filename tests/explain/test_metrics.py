"""Deletion and insertion curves: order by SHAP value, area under the curve."""

import numpy as np
import pytest

from explain.metrics import area_under_curve, deletion_insertion, ordered_coalitions


def test_ordered_coalitions():
    deletion, insertion = ordered_coalitions(np.array([0.1, 0.5, -0.2]))
    np.testing.assert_array_equal(insertion, [[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(deletion, ~insertion)


def test_auc_of_additive_model():
    weights = np.array([0.5, 0.3, 0.2])
    result = deletion_insertion(lambda z: z.astype(float) @ weights, weights)
    assert result["model_calls"] == 8
    # insertion 0, .5, .8, 1 -> area (0+.5)/2+(.5+.8)/2+(.8+1)/2 over 3 steps
    assert result["insertion_auc"] == pytest.approx((0.25 + 0.65 + 0.9) / 3)
    assert result["deletion_auc"] == pytest.approx((0.75 + 0.35 + 0.1) / 3)
    assert area_under_curve(np.array([1.0, 1.0])) == 1.0
