"""The teachers' top-layer neuron space that students regress.

Each teacher's 128-d top layer is L2-normalised (both teachers compare faces by angle or by distance of
normalised-scale vectors), then every neuron is standardised with its mean and standard deviation over the
training pool. The ensemble space is the concatenation; a selection keeps a subset of its neurons.
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

    @classmethod
    def fit(cls, raw: dict[str, NDArray[np.floating]]) -> NeuronSpace:
        joined = np.concatenate([l2n(raw[t]) for t in raw], axis=1)
        return cls(tuple(raw), joined.mean(axis=0), joined.std(axis=0) + 1e-6)

    def transform(self, raw: dict[str, NDArray[np.floating]]) -> NDArray[np.float32]:
        """``{teacher: (N, 128)}`` raw outputs -> ``(N, D)`` standardised neurons."""
        joined = np.concatenate([l2n(raw[t]) for t in self.teachers], axis=1)
        return ((joined - self.mean) / self.std).astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, teachers=np.array(self.teachers), mean=self.mean, std=self.std)

    @classmethod
    def load(cls, path: Path) -> NeuronSpace:
        d = np.load(path)
        return cls(tuple(str(t) for t in d["teachers"]), d["mean"], d["std"])
