"""Face-attribute and identity labels of the training pool, used only for neuron selection and held-out checks.

CelebA (aligned 10k and in-the-wild) carries 40 binary attributes and identities; UTKFace carries age, gender
and race in its file names. Distillation itself needs no labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from training.paths import DATA


@dataclass(frozen=True)
class PoolLabels:
    """Labels aligned with a pool file list; missing values are NaN (attributes) or -1 (identity, race...).

    Attributes:
        attribute_names: the 40 CelebA attribute names plus ``utk_age``, ``utk_male``, ``utk_race<k>``.
        attributes: ``(N, A)`` float, +1/-1 for binary attributes, age in years, NaN where unknown.
        identity: ``(N,)`` int CelebA identity, -1 where unknown.
    """

    attribute_names: list[str]
    attributes: NDArray[np.float32]
    identity: NDArray[np.int64]


def _read_attr(path: Path) -> tuple[list[str], dict[str, list[float]]]:
    lines = path.read_text().splitlines()
    names = lines[1].split()
    rows = {parts[0]: [float(v) for v in parts[1:]] for parts in (line.split() for line in lines[2:]) if parts}
    return names, rows


def _read_identity(path: Path) -> dict[str, int]:
    return {p[0]: int(p[1]) for p in (line.split() for line in path.read_text().splitlines()) if len(p) == 2}


def pool_labels(files: list[str]) -> PoolLabels:
    names, rows = _read_attr(DATA / "celeba/list_attr_celeba.txt")
    _, wild_rows = _read_attr(DATA / "pool/celeba_wild_128/list_attr_celeba.txt")
    ids = _read_identity(DATA / "celeba/identity_CelebA.txt")
    wild_ids = _read_identity(DATA / "pool/celeba_wild_128/identity_CelebA.txt")
    utk_names = ["utk_age", "utk_male"] + [f"utk_race{k}" for k in range(5)]
    attrs = np.full((len(files), len(names) + len(utk_names)), np.nan, dtype=np.float32)
    identity = np.full(len(files), -1, dtype=np.int64)
    for i, rel in enumerate(files):
        name = rel.rsplit("/", 1)[1]
        if rel.startswith("celeba/"):
            attrs[i, : len(names)] = rows[name]
            identity[i] = ids[name]
        elif "celeba_wild" in rel:
            attrs[i, : len(names)] = wild_rows[name]
            identity[i] = wild_ids[name]
        elif "utkface" in rel:
            age, gender, race = name.split("_")[:3]
            if race.isdigit():  # a few UTKFace names lack the race field
                attrs[i, len(names)] = float(age)
                attrs[i, len(names) + 1] = 1.0 if gender == "0" else -1.0
                attrs[i, len(names) + 2 :] = [1.0 if int(race) == k else -1.0 for k in range(5)]
    return PoolLabels(names + utk_names, attrs, identity)
