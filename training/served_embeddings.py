"""Embeddings of evaluation photos exactly as the service computes them: ``service.engine.Engine.analyse``.

Each photo goes through the served path (decode, YuNet, main face, crop, ONNX Runtime) as its file's bytes, the
way a client uploads it. A photo in which no usable face is found is recorded as not found (``found`` False,
a zero embedding): verification through the API would refuse it. Results are cached per model sha256.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from service.engine import Engine, Upload
from service.errors import ServiceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embedded:
    """``embeddings`` ``(N, dim)`` of ``files`` (zero rows where ``found`` ``(N,)`` is False)."""

    files: list[str]
    embeddings: NDArray[np.float32]
    found: NDArray[np.bool_]


def embed_photos(engine: Engine, root: Path, files: list[str], cache: Path | None = None) -> Embedded:
    """Served embeddings of ``root / f`` for each of ``files``; read from / written to ``cache`` (.npz) if given."""
    if cache is not None and cache.is_file():
        data = np.load(cache)
        if [str(f) for f in data["files"]] == files:
            return Embedded(files, data["embeddings"], data["found"])
        log.warning("%s lists other files; embedding again", cache)
    embeddings = np.zeros((len(files), engine.card.dim), np.float32)
    found = np.zeros(len(files), bool)
    for k, name in enumerate(tqdm(files, desc=f"embed {root.name}", unit="img", mininterval=10)):
        upload = Upload(field="image", data=(root / name).read_bytes(), filename=name)
        try:
            (result,) = engine.analyse([upload], require_single_face=False)
        except ServiceError as exc:  # no face, undecodable: what a client would be told
            log.debug("%s: %s", name, exc.message)
            continue
        embeddings[k], found[k] = result.embedding, True
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, files=np.array(files), embeddings=embeddings, found=found)
    log.info("%s: a face in %d of %d photos", root, int(found.sum()), len(files))
    return Embedded(files, embeddings, found)
