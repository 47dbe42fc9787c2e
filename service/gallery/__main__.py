"""``python -m service.gallery <command>``: the operator's gallery commands, with the service's FACE_* settings.

Commands::

    python -m service.gallery status            # faces per model: which are not of the served model
    python -m service.gallery reembed           # re-embed them with the served model (FACE_MODEL)
    python -m service.gallery reembed --dry-run # only say what would be re-embedded / needs re-enrolment

``reembed`` gives every face enrolled with another model an embedding of the served model, from the aligned
crop kept at enrolment (only when FACE_GALLERY_KEEP_CROPS was on: no photo is kept otherwise). Faces without
a crop cannot be re-embedded: it lists their subjects (to re-enrol: delete those faces and enrol new photos)
and exits with status 1. The embedded (SQLite) gallery must not be open by a running service meanwhile; a
PostgreSQL gallery may stay in use (faces switch model in batches of 64, one transaction each; searches
answer gallery_model_mismatch until the last batch).
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
    """Re-embed, a batch at a time, every face of another model that has a crop; list the subjects of the rest."""
    done, batch = 0, []
    without: dict[tuple[str, str, str], int] = defaultdict(int)
    for face in store.stale_faces():
        if face.crop is None:
            without[(face.owner, face.subject_id, face.subject_name)] += 1
            continue
        batch.append(face)
        if len(batch) == _BATCH:
            done += _replace(store, engine, batch, dry_run)
            batch = []
    done += _replace(store, engine, batch, dry_run)
    missing = sum(without.values())
    print(f"{done + missing} face(s) of other models: {done} with a stored crop, {missing} without")
    if not dry_run:
        print(f"re-embedded {done} face(s) with {store.model.describe()}")
    if without:
        print("these subjects have faces that cannot be re-embedded (no crop was kept): re-enrol them")
        for (owner, subject_id, name), count in sorted(without.items()):
            print(f"  subject {subject_id} {name!r} (gallery {owner[:8] or 'shared'}): {count} face(s)")
        return 1
    return 0


def _replace(store: GalleryStore, engine: Engine, faces: list[StaleFace], dry_run: bool) -> int:
    if faces and not dry_run:
        store.replace_embeddings(list(zip([f.id for f in faces], _embed(engine, faces), strict=True)))
    return len(faces)


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
