"""The curated training pool: which images of each set it keeps, and the per-set caches it is read from.

The data stage (``training.stages.data``) gives every image set (today's pool, the extra sources of
``training.data.sources`` and the CelebA test split) the service's detector and main-face rule (landmarks cached
per set) and its plain teacher view (view 0: SFace, dlib and the student's crop, cached per set). Curation then
walks the training sets in a fixed order (today's pool first, then the sources in ``SOURCES`` order, files sorted)
and drops, with the first reason that applies:

  no_face              the detector found no face
  too_small            the main face's eyes are under ``MIN_EYE_PX`` apart (14 px: the crops would enlarge it)
  byte_duplicate       the same bytes as a file kept before
  celeba_test_split    a CelebA test-split image (numbers 182638-202599): the split is held out
  lfw_like             SFace cosine > 0.5 to an LFW image (LFW is test data; the current pool's rule)
  celeba_test_like     SFace cosine > 0.5 to a CelebA test-split image (extra sources only: CelebA-HQ is made
                       from CelebA photos, and the web sets hold celebrities that CelebA's test split may hold)
  holdout_like         SFace cosine > 0.5 to an image of the pool's held-out identities (``training.data.holdout``;
                       extra sources only), so that the held-out identities stay unseen in training
  near_duplicate       SFace cosine > 0.95 to an image kept before (the current pool's rule)

The kept/dropped list of each set is written to ``CACHE/curated/<set>.tsv``; the per-set counts and the dropped
files to ``runs/pool-curated/`` (committed: what is in the pool, and why not the rest).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from training.data.feature_cache import ViewCache
from training.data.holdout import holdout_mask
from training.data.labels import pool_labels
from training.data.landmarks import Landmarks, landmarks_for
from training.data.sets import POOL_SETS, set_files
from training.data.sources import BY_NAME, TRAINING_SOURCES
from training.neurons import l2n
from training.paths import CACHE, REPO, data_path

log = logging.getLogger(__name__)

# Eyes closer than this are too small a face: the student's 64 px crop (eyes 20.1 px apart) would enlarge it more
# than 1.4x and SFace's 112 px crop 2.5x. At 20 px the rule dropped 75 % of CelebA-10k (89x109 crops, eyes ~19 px
# apart) that the first lineage trained on well; at 14 px it drops 1.8 % of CelebA-10k and 17 % of Caltech's faces.
MIN_EYE_PX = 14.0
LFW_COS = 0.5
CELEBA_TEST_COS = 0.5
DUPLICATE_COS = 0.95
TEST_SPLIT_FIRST = 182638  # CelebA's official test split: images 182638-202599
CURATED_SETS: tuple[str, ...] = (*POOL_SETS, *TRAINING_SOURCES)
ALL_SETS: tuple[str, ...] = (*CURATED_SETS, "celeba_test")
STUDENT_CROP = 64
REPORT_DIR = REPO / "runs" / "pool-curated"


def set_cache(name: str, landmarks: Landmarks) -> ViewCache:
    """The per-set cache of an image set's teacher views (view 0 here; later views live in the pool's cache)."""
    return ViewCache(CACHE / "features" / "sets" / name, landmarks)


def set_landmarks_path(name: str) -> Path:
    return CACHE / "landmarks" / "sets" / f"{name}.npz"


def set_landmarks(name: str) -> Landmarks:
    return landmarks_for(f"set-{name}", set_files(name), set_landmarks_path(name))


def max_cosine(
    queries: NDArray[np.float32], refs: NDArray[np.float32], block: int = 4096
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """For each unit query row, the highest cosine to a unit reference row and that row's index."""
    best = np.full(len(queries), -1.0, np.float32)
    arg = np.zeros(len(queries), np.int64)
    for lo in range(0, len(queries), block):
        sims = queries[lo : lo + block] @ refs.T
        arg[lo : lo + block] = sims.argmax(1)
        best[lo : lo + block] = sims[np.arange(len(sims)), arg[lo : lo + block]]
    return best, arg


@dataclass
class Decision:
    kept: NDArray[np.bool_]
    reason: list[str]
    detail: list[str]


def _eye_distance(points: NDArray[np.float32]) -> NDArray[np.float32]:
    distance: NDArray[np.float32] = np.linalg.norm(points[:, 1] - points[:, 0], axis=1)
    return distance


def _test_split_number(file: str) -> int:
    match = re.fullmatch(r"(\d{6})\.jpg", file.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else -1


def curate(
    landmarks: dict[str, Landmarks],
    sface: dict[str, NDArray[np.float32]],
    lfw: NDArray[np.float32],
    lfw_names: list[str],
    test: NDArray[np.float32],
    test_names: list[str],
) -> dict[str, Decision]:
    """Apply the rules of the module docstring to every training set, in ``CURATED_SETS`` order."""
    wild = landmarks["celeba_wild"]
    held = holdout_mask(wild.files, pool_labels(wild.files)) & ~np.isnan(wild.points[:, 0, 0])
    held_emb = l2n(np.asarray(sface["celeba_wild"], np.float32)[held])
    held_names = [f for f, h in zip(wild.files, held, strict=True) if h]
    seen_bytes: dict[str, str] = {}
    kept_emb: list[NDArray[np.float32]] = []
    kept_files: list[str] = []
    out: dict[str, Decision] = {}
    for name in CURATED_SETS:
        lm = landmarks[name]
        n = len(lm.files)
        reason = [""] * n
        detail = [""] * n
        has_face = ~np.isnan(lm.points[:, 0, 0])
        eyes = np.where(has_face, _eye_distance(np.nan_to_num(lm.points)), 0.0)
        emb = l2n(np.asarray(sface[name], np.float32))
        lfw_cos, lfw_arg = max_cosine(emb, lfw)
        extra = name not in POOL_SETS
        test_cos, test_arg = max_cosine(emb, test) if extra else (np.zeros(n), np.zeros(n, np.int64))
        held_cos, held_arg = max_cosine(emb, held_emb) if extra else (np.zeros(n), np.zeros(n, np.int64))
        for i, file in enumerate(tqdm(lm.files, desc=f"rules {name}", unit="img", mininterval=10)):
            if not has_face[i]:
                reason[i] = "no_face"
                continue
            if eyes[i] < MIN_EYE_PX:
                reason[i], detail[i] = "too_small", f"{eyes[i]:.1f}"
                continue
            digest = hashlib.md5(data_path(file).read_bytes()).hexdigest()
            if digest in seen_bytes:
                reason[i], detail[i] = "byte_duplicate", seen_bytes[digest]
                continue
            seen_bytes[digest] = file
            if name == "celeba_wild" and _test_split_number(file) >= TEST_SPLIT_FIRST:
                reason[i] = "celeba_test_split"
            elif lfw_cos[i] > LFW_COS:
                reason[i], detail[i] = "lfw_like", f"{lfw_names[lfw_arg[i]]}:{lfw_cos[i]:.3f}"
            elif extra and test_cos[i] > CELEBA_TEST_COS:
                reason[i], detail[i] = "celeba_test_like", f"{test_names[test_arg[i]]}:{test_cos[i]:.3f}"
            elif extra and held_cos[i] > CELEBA_TEST_COS:
                reason[i], detail[i] = "holdout_like", f"{held_names[held_arg[i]]}:{held_cos[i]:.3f}"
        # Near duplicates, greedily in file order: against everything kept before, then within the set.
        candidates = np.flatnonzero([r == "" for r in reason])
        refs = np.concatenate(kept_emb) if kept_emb else np.zeros((0, emb.shape[1]), np.float32)
        for lo in range(0, len(candidates), 2048):
            chunk = candidates[lo : lo + 2048]
            block = emb[chunk]
            if len(refs):
                cos, arg = max_cosine(block, refs)
                for hit in np.flatnonzero(cos > DUPLICATE_COS):
                    reason[chunk[hit]], detail[chunk[hit]] = "near_duplicate", f"{kept_files[arg[hit]]}:{cos[hit]:.3f}"
            within = block @ block.T
            alive = [k for k in range(len(chunk)) if reason[chunk[k]] == ""]
            accepted: list[int] = []
            for k in alive:
                if accepted:
                    sims = within[k, accepted]
                    j = int(np.argmax(sims))
                    if sims[j] > DUPLICATE_COS:
                        reason[chunk[k]] = "near_duplicate"
                        detail[chunk[k]] = f"{lm.files[chunk[accepted[j]]]}:{sims[j]:.3f}"
                        continue
                accepted.append(k)
            new = chunk[accepted]
            kept_emb.append(emb[new])
            kept_files += [lm.files[i] for i in new]
            refs = np.concatenate([refs, emb[new]])
        kept = np.array([r == "" for r in reason])
        out[name] = Decision(kept, reason, detail)
        log.info("%s: kept %d of %d", name, int(kept.sum()), n)
    return out


def curated_path(name: str) -> Path:
    return CACHE / "curated" / f"{name}.tsv"


def write_decisions(decisions: dict[str, Decision], landmarks: dict[str, Landmarks]) -> None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    summary: dict[str, dict[str, int]] = {}
    dropped_lines = ["set\tfile\treason\tdetail"]
    for name, d in decisions.items():
        files = landmarks[name].files
        lines = ["file\tkept\treason\tdetail"] + [
            f"{f}\t{int(k)}\t{r}\t{x}" for f, k, r, x in zip(files, d.kept, d.reason, d.detail, strict=True)
        ]
        curated_path(name).parent.mkdir(parents=True, exist_ok=True)
        curated_path(name).write_text("\n".join(lines) + "\n")
        counts: dict[str, int] = {"images": len(files), "kept": int(d.kept.sum())}
        for r in d.reason:
            if r:
                counts[r] = counts.get(r, 0) + 1
        summary[name] = counts
        dropped_lines += [f"{name}\t{f}\t{r}\t{x}" for f, r, x in zip(files, d.reason, d.detail, strict=True) if r]
    (REPORT_DIR / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (REPORT_DIR / "dropped.tsv").write_text("\n".join(dropped_lines) + "\n")
    (REPORT_DIR / "README.md").write_text(summary_markdown(summary))


def summary_markdown(summary: dict[str, dict[str, int]]) -> str:
    reasons = [
        "no_face",
        "too_small",
        "byte_duplicate",
        "celeba_test_split",
        "lfw_like",
        "celeba_test_like",
        "holdout_like",
        "near_duplicate",
    ]
    head = "| set | source | licence | images | " + " | ".join(reasons) + " | **kept** |"
    rows = [head, "|" + "---|" * (len(reasons) + 5)]
    for name, c in summary.items():
        src = BY_NAME.get(name)
        where = f"`{src.repo}` @ {src.commit[:8]}" if src else "`shared/data` (today's pool)"
        licence = src.licence if src else "non-commercial research (CelebA, UTKFace)"
        rows.append(
            f"| {name} | {where} | {licence} | {c['images']} | "
            + " | ".join(str(c.get(r, 0)) for r in reasons)
            + f" | **{c['kept']}** |"
        )
    total = sum(c["kept"] for c in summary.values())
    return (
        "# The curated training pool\n\nMade by `python -m training data` (`training/data/curate.py` says the rules, in"
        " the order they apply). Every dropped file and why: `dropped.tsv`.\n\n"
        + "\n".join(rows)
        + f"\n\n**{total} faces kept** over {len(summary)} sets.\n"
    )


def kept_files(name: str) -> list[str]:
    """The curated (kept) files of a training set, in file order."""
    path = curated_path(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m training data` first")
    rows = (line.split("\t") for line in path.read_text().splitlines()[1:])
    return [r[0] for r in rows if r[1] == "1"]


def curated_pool(sets: tuple[str, ...]) -> Landmarks:
    """The curated training pool over ``sets``: each set's kept files, in set then file order."""
    parts = []
    for name in sets:
        lm = set_landmarks(name)
        keep = set(kept_files(name))
        rows = np.array([i for i, f in enumerate(lm.files) if f in keep], np.int64)
        parts.append((lm, rows))
    return Landmarks(
        [lm.files[i] for lm, rows in parts for i in rows],
        np.concatenate([lm.points[rows] for lm, rows in parts]),
        np.concatenate([lm.boxes[rows] for lm, rows in parts]),
        np.concatenate([lm.scores[rows] for lm, rows in parts]),
        np.concatenate([lm.faces[rows] for lm, rows in parts]),
    )


def seed_plain_view(cache: ViewCache, sets: tuple[str, ...]) -> None:
    """Fill view 0 of a pool cache by copying the rows of the per-set caches (the same crops and teacher
    outputs: view 0 is deterministic), instead of running the teachers again. Does nothing unless the data stage
    has cached every one of ``sets``."""
    if not all(set_landmarks_path(name).exists() for name in sets):
        return
    sources = [set_cache(name, Landmarks.load(set_landmarks_path(name))) for name in sets]
    where = {f: (k, i) for k, src in enumerate(sources) for i, f in enumerate(src.landmarks.files)}
    names = [n for n in ("sface", "dlib", f"arcface{STUDENT_CROP}") if all(s.complete(n, 0) for s in sources)]
    files = cache.landmarks.files
    if not all(f in where for f in files):
        return
    for name in names:
        if cache.complete(name, 0):
            continue
        first = np.asarray(sources[0].load(name, 0))
        path = cache.path(name, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside and renamed into place: another process (a run training on this cache) may have the
        # file mapped, and must never see it truncated or half written.
        part = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
        out = np.lib.format.open_memmap(part, mode="w+", dtype=first.dtype, shape=(len(files), *first.shape[1:]))
        loaded = [s.load(name, 0) for s in sources]
        for lo in tqdm(range(0, len(files), 4096), desc=f"seed view 0 {name}", unit="chunk", mininterval=10):
            for j, f in enumerate(files[lo : lo + 4096]):
                k, i = where[f]
                out[lo + j] = loaded[k][i]
        out.flush()
        del out
        os.replace(part, path)
        path.with_suffix(".progress").write_text(str(len(files)))
