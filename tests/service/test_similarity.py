"""Embedding normalisation and comparison."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import InvalidRequest
from service.similarity import cosine, is_match, l2_normalise, parse_embedding


def test_normalise_and_cosine() -> None:
    rows = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert rows.dtype == np.float32 and np.allclose(rows, [[0.6, 0.8], [0.0, 0.0]])
    assert cosine(np.array([1.0, 0.0]), np.array([5.0, 5.0])) == pytest.approx(np.sqrt(0.5))
    assert cosine(np.array([1.0, 2.0]), np.array([-2.0, -4.0])) == pytest.approx(-1.0)


def test_threshold_is_inclusive() -> None:
    assert is_match(0.5, 0.5) and not is_match(0.4999, 0.5)


def test_parse_embedding() -> None:
    assert np.allclose(parse_embedding([1e300, 1e300], 2, "e"), [np.sqrt(0.5)] * 2)  # no overflow
    assert np.allclose(parse_embedding([0.0, -2.0], 2, "e"), [0.0, -1.0])
    for values, message in (([1.0], "has 1 values"), ([0.0, 0.0], "all zeros"), ([np.nan, 1.0], "NaN")):
        with pytest.raises(InvalidRequest, match=message) as error:
            parse_embedding(values, 2, "embedding2")
        assert error.value.field == "embedding2"
