"""The teachers' top-layer neuron space that students regress.

Each teacher's 128-d top layer is L2-normalised (both teachers compare faces by angle or by distance of
normalised-scale vectors), then every neuron is standardised with its mean and standard deviation over the
training pool. The ensemble space is the concatenation; a selection keeps a subset of its neurons. With a
``basis`` (the ``pca`` selection method) the space is instead the projection of those standardised neurons on
principal components, whitened: the target is then ``K`` decorrelated unit-variance directions, not neurons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


def l2n(x: NDArray[np.floating]) -> NDArray[np.float32]:
    x = np.asarray(x, dtype=np.float32)
    unit: NDArray[np.float32] = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return unit


@dataclass(frozen=True)
class NeuronSpace:
    """Standardisation of the concatenated, per-teacher normalised top layers."""

    teachers: tuple[str, ...]
    mean: NDArray[np.float32]
    std: NDArray[np.float32]
    basis: NDArray[np.float32] | None = None  # (D, K): standardised neurons -> whitened principal components

    @classmethod
    def fit(cls, raw: dict[str, NDArray[np.floating]]) -> NeuronSpace:
        joined = np.concatenate([l2n(raw[t]) for t in raw], axis=1)
        return cls(tuple(raw), joined.mean(axis=0), joined.std(axis=0) + 1e-6)

    def transform(self, raw: dict[str, NDArray[np.floating]]) -> NDArray[np.float32]:
        """``{teacher: (N, 128)}`` raw outputs -> ``(N, D)`` standardised neurons."""
        joined = np.concatenate([l2n(raw[t]) for t in self.teachers], axis=1)
        z = ((joined - self.mean) / self.std).astype(np.float32)
        return z if self.basis is None else (z @ self.basis).astype(np.float32)

    def same_as(self, other: NeuronSpace) -> bool:
        """Whether both map teacher outputs to the same target (teachers, standardisation and basis)."""
        if self.teachers != other.teachers or (self.basis is None) != (other.basis is None):
            return False
        same = np.allclose(self.mean, other.mean) and np.allclose(self.std, other.std)
        if self.basis is None or other.basis is None:
            return bool(same)
        return bool(same and np.allclose(self.basis, other.basis))

    def save(self, path: Path) -> None:
        teachers = np.array(self.teachers)
        if self.basis is None:
            np.savez(path, teachers=teachers, mean=self.mean, std=self.std)
        else:
            np.savez(path, teachers=teachers, mean=self.mean, std=self.std, basis=self.basis)

    @classmethod
    def load(cls, path: Path) -> NeuronSpace:
        d = np.load(path)
        basis = d["basis"] if "basis" in d.files else None
        return cls(tuple(str(t) for t in d["teachers"]), d["mean"], d["std"], basis)


def whitened_components(z: NDArray[np.floating], k: int) -> NDArray[np.float32]:
    """``(D, k)`` basis of the ``k`` leading principal components of ``z`` (N, D), each scaled to unit variance
    on ``z``: ``(z - mean) @ basis`` are decorrelated and white. Signs are fixed (largest loading positive) so the
    basis is reproducible."""
    centred = np.asarray(z, np.float64) - np.mean(z, axis=0)
    cov = centred.T @ centred / (len(z) - 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:k]
    vectors, values = vectors[:, order], values[order]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(k)])
    basis: NDArray[np.float32] = (vectors * signs / np.sqrt(np.maximum(values, 1e-12))).astype(np.float32)
    return basis
