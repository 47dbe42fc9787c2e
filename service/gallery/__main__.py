"""``python -m service.gallery <command>``: the operator's gallery commands, with the service's FACE_* settings.

Commands::

    python -m service.gallery status            # faces per model: which are not of the served model
    python -m service.gallery reembed           # re-embed them with the served model (FACE_MODEL)
    python -m service.gallery reembed --dry-run # only say what would be re-embedded / needs re-enrolment

``reembed`` gives every face enrolled with another model an embedding of the served model, from the aligned
crop kept at enrolment (only when FACE_GALLERY_KEEP_CROPS was on: no photo is kept otherwise). Faces without
a crop cannot be re-embedded: it lists their subjects (to re-enrol: delete those faces and enrol new photos)
and exits with status 1. The embedded (SQLite) gallery must not be open by a running service meanwhile; a
PostgreSQL gallery may stay in use (each subject's faces switch model in one transaction).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from service.config import get_settings
from service.engine import Engine
from service.errors import ServiceError
from service.gallery import open_store
from service.gallery.crops import crop_face
from service.gallery.store import GalleryStore, StaleFace
from service.manifest import ManifestError

log = logging.getLogger("service.gallery")
_BATCH = 64


def status(store: GalleryStore) -> int:
    foreign = store.foreign_models(None)
    print(f"served model: {store.model.describe()}")
    if not foreign:
        print("every enrolled face is of the served model")
    for entry in foreign:
        print(f"{entry.faces} face(s) of {entry.subjects} subject(s) enrolled with {entry.model.describe()}")
    return 0


def reembed(store: GalleryStore, engine: Engine, dry_run: bool) -> int:
    stale = list(store.stale_faces())
    with_crop = [face for face in stale if face.crop is not None]
    without = [face for face in stale if face.crop is None]
    print(f"{len(stale)} face(s) of other models: {len(with_crop)} with a stored crop, {len(without)} without")
    if not dry_run:
        by_subject: dict[str, list[StaleFace]] = defaultdict(list)
        for face in with_crop:
            by_subject[face.subject_id].append(face)
        done = 0
        for faces in by_subject.values():
            for start in range(0, len(faces), _BATCH):
                batch = faces[start : start + _BATCH]
                store.replace_embeddings(list(zip([f.id for f in batch], _embed(engine, batch), strict=True)))
                done += len(batch)
        print(f"re-embedded {done} face(s) with {store.model.describe()}")
    if without:
        print("these subjects have faces that cannot be re-embedded (no crop was kept): re-enrol them")
        subjects: dict[tuple[str, str, str], int] = defaultdict(int)
        for face in without:
            subjects[(face.owner, face.subject_id, face.subject_name)] += 1
        for (owner, subject_id, name), count in sorted(subjects.items()):
            print(f"  subject {subject_id} {name!r} (gallery {owner[:8] or 'shared'}): {count} face(s)")
        return 1
    return 0


def _embed(engine: Engine, faces: Sequence[StaleFace]) -> NDArray[np.float32]:
    images, found = zip(*(crop_face(face.crop) for face in faces if face.crop is not None), strict=True)
    return engine.embed(list(images), list(found))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.gallery", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("command", choices=["status", "reembed"])
    parser.add_argument("--dry-run", action="store_true", help="reembed: report only, change nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    try:
        engine = Engine.load(settings)
        store = open_store(settings, engine.card)
    except (ServiceError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return status(store) if args.command == "status" else reembed(store, engine, args.dry_run)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
