"""Open-set identification accuracy (1:N) on real faces: rank-1 identification rate and FNIR at fixed FPIR.

Protocols (evaluation only: nothing is trained or tuned on LFW or the CelebA test split):
* LFW: each person with >= 2 images is enrolled with their first image (one face per subject); their other
  images are mated searches; the people with a single image are non-mated searches (never enrolled).
* CelebA test split: a seeded half of the 998 identities is enrolled with each one's first image; their other
  images are mated searches, every image of the other half a non-mated search.

Searches are exact (every enrolled face is compared), which is what the embedded gallery does, over embeddings
made by the service's own pipeline (:mod:`bench.gallery_data`). Definitions as in NIST's FRVT 1:N: FPIR(T) is
the share of non-mated searches whose best score is >= T; FNIR(T) the share of mated searches whose mate is
not the rank-1 candidate with a score >= T. A search whose photo has no detected face is a miss (mated) and
not a false positive (non-mated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.gallery_data import Embedded

FPIRS = (1e-2, 1e-3)


@dataclass(frozen=True)
class OpenSet:
    name: str
    gallery: NDArray[np.float32]
    gallery_ids: NDArray[np.int64]
    mated: NDArray[np.float32]
    mated_ids: NDArray[np.int64]
    mated_ok: NDArray[np.bool_]
    nonmated: NDArray[np.float32]
    nonmated_ok: NDArray[np.bool_]


def _first_ok(indices: NDArray[np.int64], ok: NDArray[np.bool_]) -> int | None:
    usable = indices[ok[indices]]
    return int(usable[0]) if len(usable) else None


def protocol(embedded: Embedded, enrolled_identities: set[int]) -> OpenSet:
    """Enrol the first image (with a face) of each identity in ``enrolled_identities``; the rest are searches."""
    ids, ok, emb = embedded.set.identities, embedded.ok, embedded.embeddings
    gallery_rows, mated_rows = [], []
    for identity in sorted(enrolled_identities):
        rows = np.flatnonzero(ids == identity)
        first = _first_ok(rows, ok)
        if first is None:
            continue  # failure to enrol: its other images stay out (no mate to find)
        gallery_rows.append(first)
        mated_rows += [int(r) for r in rows if r != first]
    nonmated_rows = np.flatnonzero(~np.isin(ids, list(enrolled_identities)))
    g, m = np.array(gallery_rows), np.array(mated_rows)
    return OpenSet(embedded.set.name, emb[g], ids[g], emb[m], ids[m], ok[m], emb[nonmated_rows], ok[nonmated_rows])


def lfw_openset(embedded: Embedded) -> OpenSet:
    counts = np.bincount(embedded.set.identities)
    return protocol(embedded, {int(i) for i in np.flatnonzero(counts >= 2)})


def celeba_openset(embedded: Embedded, seed: int = 0) -> OpenSet:
    identities = np.unique(embedded.set.identities)
    chosen = np.random.default_rng(seed).permutation(identities)[: len(identities) // 2]
    return protocol(embedded, {int(i) for i in chosen})


def _top1(
    probes: NDArray[np.float32], ok: NDArray[np.bool_], gallery: NDArray[np.float32]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Rank-1 gallery row and its score per probe (exact); a probe without a face scores -inf."""
    rows, scores = np.zeros(len(probes), np.int64), np.full(len(probes), -np.inf)
    for start in range(0, len(probes), 4096):
        block = probes[start : start + 4096] @ gallery.T
        rows[start : start + 4096] = np.argmax(block, axis=1)
        scores[start : start + 4096] = block[np.arange(len(block)), rows[start : start + 4096]]
    scores[~ok] = -np.inf
    return rows, scores


def threshold_at_fpir(nonmated_scores: NDArray[np.float64], fpir: float) -> float:
    """The lowest threshold whose FPIR is <= ``fpir`` (at most floor(fpir * n) non-mated searches reach it)."""
    ranked = np.sort(nonmated_scores)[::-1]
    allowed = int(np.floor(fpir * len(ranked)))
    return float(np.nextafter(ranked[allowed], np.inf)) if allowed < len(ranked) else float(-np.inf)


def score(openset: OpenSet, default_threshold: float) -> dict[str, Any]:
    """Rank-1 rate, FNIR at each FPIR of :data:`FPIRS`, and both rates at the model's default threshold."""
    rows, mated_scores = _top1(openset.mated, openset.mated_ok, openset.gallery)
    hit = (openset.gallery_ids[rows] == openset.mated_ids) & openset.mated_ok
    _, nonmated_scores = _top1(openset.nonmated, openset.nonmated_ok, openset.gallery)

    def fnir(threshold: float) -> float:
        return float(np.mean(~(hit & (mated_scores >= threshold))))

    at_fpir = []
    for fpir in FPIRS:
        threshold = threshold_at_fpir(nonmated_scores, fpir)
        at_fpir.append(
            {
                "fpir": fpir,
                "threshold": threshold,
                "fnir": fnir(threshold),
                "false_positives": int(np.sum(nonmated_scores >= threshold)),
            }
        )
    return {
        "set": openset.name,
        "enrolled": len(openset.gallery),
        "mated_searches": len(openset.mated),
        "nonmated_searches": len(openset.nonmated),
        "no_face": int(np.sum(~openset.mated_ok) + np.sum(~openset.nonmated_ok)),
        "rank1": float(np.mean(hit)),
        "at_fpir": at_fpir,
        "default_threshold": {
            "threshold": default_threshold,
            "fnir": fnir(default_threshold),
            "fpir": float(np.mean(nonmated_scores >= default_threshold)),
        },
    }
