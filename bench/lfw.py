"""LFW photo pairs for the benchmark: real 250x250 JPEGs, read into memory before anything is timed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGES = "images_deepfunneled"


@dataclass(frozen=True)
class PhotoPair:
    """Two LFW photos as the bytes a client would upload."""

    first: str
    second: str
    same: bool
    data1: bytes
    data2: bytes


def photo_path(lfw: Path, name: str, number: int) -> Path:
    return lfw / IMAGES / name / f"{name}_{number:04d}.jpg"


def parse_pairs(path: Path) -> list[tuple[tuple[str, int], tuple[str, int], bool]]:
    """The official ``pairs.txt``: a ``folds n`` header, then per fold n same-person and n different pairs."""
    pairs = []
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 3:
            pairs.append(((fields[0], int(fields[1])), (fields[0], int(fields[2])), True))
        elif len(fields) == 4:
            pairs.append(((fields[0], int(fields[1])), (fields[2], int(fields[3])), False))
    return pairs


def load_pairs(lfw: Path, count: int) -> list[PhotoPair]:
    """``count`` pairs spread evenly over ``pairs.txt`` (so both same and different pairs), bytes in memory.

    Raises:
        FileNotFoundError: the LFW folder, ``pairs.txt`` or a photo is missing.
    """
    listed = parse_pairs(lfw / "pairs.txt")
    chosen = np.unique(np.linspace(0, len(listed) - 1, min(count, len(listed))).round().astype(int))
    result = []
    for index in chosen:
        (name1, n1), (name2, n2), same = listed[index]
        path1, path2 = photo_path(lfw, name1, n1), photo_path(lfw, name2, n2)
        result.append(PhotoPair(path1.name, path2.name, same, path1.read_bytes(), path2.read_bytes()))
    return result
