"""Where things live: the repository, the git-ignored cache, the shared data folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
CACHE = Path(os.environ.get("MOBILEID_CACHE", REPO / ".cache"))
TEACHER_DIR = CACHE / "teachers"
DATA = Path(os.environ.get("MOBILEID_DATA", REPO.parent / "shared" / "data"))
MORE = Path(os.environ.get("MOBILEID_MORE", CACHE / "more"))
"""Extracted extra sources (``python -m training data``), research-use data kept outside the work tree."""
MORE_PREFIX = "more/"
"""File names of the training pool are relative to ``DATA``, or to ``MORE`` when they start with this."""


def data_path(relative: str) -> Path:
    """The file behind a pool/LFW file name (see ``MORE_PREFIX``)."""
    if relative.startswith(MORE_PREFIX):
        return MORE / relative[len(MORE_PREFIX) :]
    return DATA / relative


def checkpoint_path(run_dir: Path) -> Path:
    """Where a run's training checkpoint lives: in the cache, so that a fresh checkout on the same machine resumes
    or warm-starts from it. Keyed by the run folder relative to the repository (``runs/<name>``; a folder elsewhere,
    such as a test's, by its absolute path), so two run folders of one name never share a checkpoint. A checkpoint
    left in the run folder by older code is used where it is the only one."""
    where = run_dir.resolve()
    key = str(where.relative_to(REPO)) if where.is_relative_to(REPO) else str(where)
    cached = CACHE / "checkpoints" / f"{run_dir.name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}" / "checkpoint.pt"
    legacy = run_dir / "checkpoint.pt"
    return legacy if legacy.exists() and not cached.exists() else cached
