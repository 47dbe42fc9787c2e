"""Where things live: the repository, the git-ignored cache, the shared data folder."""

from __future__ import annotations

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
