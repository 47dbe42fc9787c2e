"""The studies' own arithmetic (pose binning from landmarks)."""

from __future__ import annotations

import numpy as np

from training.studies.pose import estimated_yaw


def test_estimated_yaw_is_zero_when_frontal_and_grows_as_the_nose_moves() -> None:
    frontal = np.array([[[0, 0], [10, 0], [5, 5], [1, 9], [9, 9]]], float)
    turned = frontal.copy()
    turned[0, 2, 0] = 5 + 6.0  # nose 0.6 eye distances off the midpoint: tan(yaw) = 1
    np.testing.assert_allclose(estimated_yaw(np.concatenate([frontal, turned])), [0.0, 45.0], atol=1e-9)
