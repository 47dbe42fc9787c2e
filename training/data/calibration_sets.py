"""The photo sets operating points are calibrated and checked on: the CelebA test split, and LFW (test only).

CelebA test split (``../shared/data/celeba_test``, README there): 17,476 photos of 998 identities, none of them
a training identity. Its protocol (``pairs.tsv``) puts every identity in one of 10 folds; thresholds are
calibrated on the identities of folds 0-4 and measured on those of folds 5-9 (every genuine and every impostor
pair of their photos, plus the protocol pairs of those folds). LFW is only ever scored at thresholds chosen
elsewhere.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from training.data.sets import lfw_files
from training.evaluate import Pairs, read_pairs
from training.paths import CACHE, DATA

CELEBA_TEST = DATA / "celeba_test"
CELEBA_TEST_IMAGES = CACHE / "more" / "celeba_test"  # where ../shared/data/more/extract.sh lays them out
CALIBRATION_FOLDS = (0, 1, 2, 3, 4)
HELD_OUT_FOLDS = (5, 6, 7, 8, 9)


@dataclass(frozen=True)
class CelebaTest:
    """``files`` (N,) with their ``identities`` (N,), each identity's protocol ``fold``, and the protocol pairs."""

    files: list[str]
    identities: NDArray[np.int64]
    fold_of: dict[int, int]
    pairs: Pairs

    def photos_in(self, folds: tuple[int, ...]) -> NDArray[np.bool_]:
        """Which photos belong to identities of ``folds``."""
        return np.array([self.fold_of[int(i)] in folds for i in self.identities])


def read_celeba_test(folder: Path = CELEBA_TEST) -> CelebaTest:
    """The split's identity list and protocol; every identity must have a fold."""
    rows = [line.split() for line in (folder / "identity_CelebA_test.txt").read_text().splitlines() if line.strip()]
    files, identities = [r[0] for r in rows], np.array([int(r[1]) for r in rows])
    index = {f: k for k, f in enumerate(files)}
    fold_of: dict[int, int] = {}
    left, right, same, fold = [], [], [], []
    with (folder / "pairs.tsv").open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            k = int(row["fold"])
            fold_of[int(row["id1"])] = fold_of[int(row["id2"])] = k
            left.append(index[row["file1"]])
            right.append(index[row["file2"]])
            same.append(row["same"] == "1")
            fold.append(k)
    missing = set(identities.tolist()) - set(fold_of)
    if missing:
        raise ValueError(f"{len(missing)} identities of {folder} have no protocol fold")
    pairs = Pairs(np.array(left), np.array(right), np.array(same), np.array(fold))
    return CelebaTest(files, identities, fold_of, pairs)


def lfw_protocol() -> tuple[list[str], Pairs]:
    """The LFW photos the 6,000 protocol pairs use (relative to the data folder) and the pairs over them."""
    every = lfw_files()
    used, local = read_pairs(every).on_images()
    return [every[i] for i in used], local


def pair_scores(embeddings: NDArray[np.float32], found: NDArray[np.bool_], pairs: Pairs) -> NDArray[np.float64]:
    """Cosine of each pair; a pair with a photo where no face was found scores -inf (the API refuses it)."""
    e = embeddings.astype(np.float64)
    scores: NDArray[np.float64] = np.sum(e[pairs.left] * e[pairs.right], axis=1)
    scores[~(found[pairs.left] & found[pairs.right])] = -np.inf
    return scores
