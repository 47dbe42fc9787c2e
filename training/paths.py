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


def shown(path: Path) -> str:
    """A path as reported: relative to the repository when inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def data_path(relative: str) -> Path:
    """The file behind a pool/LFW file name (see ``MORE_PREFIX``)."""
    if relative.startswith(MORE_PREFIX):
        return MORE / relative[len(MORE_PREFIX) :]
    return DATA / relative


def checkpoint_path(run_dir: Path) -> Path:
    """Where a run's training checkpoint lives. A run folder of the repository (``runs/<name>``) keeps it in the
    cache, keyed by that relative path, so that a fresh checkout on the same machine resumes or warm-starts from
    it (a checkpoint left in the run folder by older code is used where it is the only one). A run folder outside
    the repository (a test's, or ``reproduce``'s scratch folder in the cache) keeps it inside itself: no checkout
    replaces it, and nothing is left behind in the cache when it is deleted."""
    where = run_dir.resolve()
    if not where.is_relative_to(REPO):
        return run_dir / "checkpoint.pt"
    key = str(where.relative_to(REPO))
    cached = CACHE / "checkpoints" / f"{run_dir.name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}" / "checkpoint.pt"
    legacy = run_dir / "checkpoint.pt"
    return legacy if legacy.exists() and not cached.exists() else cached
