"""Face sets of the identification benchmark, and their embeddings through the service's own pipeline.

* LFW (``pairs.txt``'s 7,701 deep-funneled images, 4,281 people) and the CelebA test split (17,476 images,
  998 identities): evaluation only, never used to train or tune anything.
* Distractors: real faces of people who are in neither set's gallery (the training pool, FairFace, CelebA-HQ),
  to grow a gallery to 100k enrolled faces for the latency and throughput figures.

Embeddings are computed exactly as the service computes them (``Engine.analyse``: decode, YuNet, main-face
rule, alignment, the model) and cached per model sha256 under ``.cache/bench/identification/``, so a rerun of
the benchmark only re-times the searches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from service.engine import Engine, Upload
from service.errors import ServiceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceSet:
    """Image files and the identity of each (``-1``: unknown, e.g. distractors)."""

    name: str
    files: tuple[Path, ...]
    identities: NDArray[np.int64]


@dataclass(frozen=True)
class Embedded:
    """Unit embeddings ``(N, dim)`` of a set; ``ok[i]`` False where no face was found (its row is zero)."""

    set: FaceSet
    embeddings: NDArray[np.float32]
    ok: NDArray[np.bool_]
    seconds: float


def lfw(data: Path) -> FaceSet:
    """Every image ``pairs.txt`` uses, labelled by person."""
    folder = data / "lfw" / "images_deepfunneled"
    files = sorted(folder.glob("*/*.jpg"))
    people = {name: i for i, name in enumerate(sorted({f.parent.name for f in files}))}
    return FaceSet("lfw", tuple(files), np.array([people[f.parent.name] for f in files], np.int64))


def celeba_test(data: Path, images: Path, identities: int | None = None, seed: int = 0) -> FaceSet:
    """The CelebA test split's 17,476 images (extracted to ``images``) with their official identities.

    ``identities``: only the images of that many identities (a seeded choice), for a slow model.
    """
    rows = (data / "celeba_test" / "identity_CelebA_test.txt").read_text().split("\n")
    pairs = [(row.split()[0], row.split()[1]) for row in rows if row.strip()]
    name = "celeba_test"
    if identities is not None:
        every = sorted({int(identity) for _, identity in pairs})
        kept = {int(i) for i in np.random.default_rng(seed).permutation(every)[:identities]}
        pairs = [(file, identity) for file, identity in pairs if int(identity) in kept]
        name = f"celeba_test-{identities}ids"
    return FaceSet(
        name, tuple(images / file for file, _ in pairs), np.array([int(identity) for _, identity in pairs], np.int64)
    )


def distractors(data: Path, more: Path, count: int) -> FaceSet:
    """``count`` real faces of other people: the training pool first, then FairFace and CelebA-HQ."""
    folders = [
        data / "pool" / "utkface_128",
        data / "pool" / "celeba_wild_128",
        data / "celeba" / "img_align_celeba_89x109",
        more / "fairface_45k",
        more / "celebahq_256",
    ]
    files: list[Path] = []
    for folder in folders:
        files.extend(sorted(folder.rglob("*.jpg")))
        if len(files) >= count:
            break
    chosen = tuple(files[:count])
    return FaceSet(f"distractors-{len(chosen)}", chosen, np.full(len(chosen), -1, np.int64))


def embed_set(engine: Engine, faces: FaceSet, cache: Path) -> Embedded:
    """Embeddings of every image, from the cache when this model already embedded this set."""
    path = cache / f"{engine.card.sha256[:16]}-{faces.name}.npz"
    if path.is_file():
        stored = np.load(path)
        if len(stored["ok"]) == len(faces.files):
            return Embedded(faces, stored["embeddings"], stored["ok"], float(stored["seconds"]))
    started = time.perf_counter()
    embeddings, ok = _embed_files(engine, faces.files, faces.name)
    seconds = time.perf_counter() - started
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, embeddings=embeddings, ok=ok, seconds=seconds)
    return Embedded(faces, embeddings, ok, seconds)


def _embed_files(engine: Engine, files: Sequence[Path], label: str) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    embeddings = np.zeros((len(files), engine.card.dim), np.float32)
    ok = np.zeros(len(files), bool)
    started = time.perf_counter()
    for i, path in enumerate(files):
        try:
            (result,) = engine.analyse([Upload(field="image", data=path.read_bytes())], require_single_face=False)
        except ServiceError:
            continue  # no face: a failure to enrol (or to search), counted by the caller
        embeddings[i], ok[i] = result.embedding, True
        if (i + 1) % 2000 == 0:
            rate = (i + 1) / (time.perf_counter() - started)
            log.info("%s: %d/%d embedded (%.0f images/s, %s)", label, i + 1, len(files), rate, engine.card.name)
    return embeddings, ok
