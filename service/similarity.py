"""Embeddings and how they compare: L2 normalisation and cosine similarity against a threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from service.errors import InvalidRequest

_EPS = 1e-12


def l2_normalise(vectors: NDArray[np.floating]) -> NDArray[np.float32]:
    """Scale each row of ``(N, D)`` (or a single ``(D,)`` vector) to unit L2 norm."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, _EPS), dtype=np.float32)


def cosine(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    """Cosine similarity of two ``(D,)`` vectors, in [-1, 1]."""
    a, b = l2_normalise(a), l2_normalise(b)
    return float(np.clip(np.dot(a.astype(np.float64), b.astype(np.float64)), -1.0, 1.0))


def is_match(similarity: float, threshold: float) -> bool:
    """Same person iff the similarity reaches the threshold (``>=``: the threshold itself matches)."""
    return similarity >= threshold


def parse_embedding(values: Sequence[float], dim: int, field: str) -> NDArray[np.float32]:
    """A client-supplied embedding as a unit ``(dim,)`` vector; :class:`InvalidRequest` if it cannot be one."""
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1 or vector.shape[0] != dim:
        raise InvalidRequest(f"{field} has {vector.size} values; the model's embeddings have {dim}", field=field)
    if not np.all(np.isfinite(vector)):
        raise InvalidRequest(f"{field} contains NaN or infinite values", field=field)
    peak = float(np.max(np.abs(vector)))
    if peak == 0.0:
        raise InvalidRequest(f"{field} is all zeros and cannot be normalised", field=field)
    vector = vector / peak  # so that the norm cannot overflow
    return (vector / np.linalg.norm(vector)).astype(np.float32)
