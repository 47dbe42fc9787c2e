"""Where things live: the repository, the git-ignored cache, the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
CACHE = Path(os.environ.get("MOBILEID_CACHE", REPO / ".cache"))
TEACHER_DIR = CACHE / "teachers"
DATA = Path(os.environ.get("MOBILEID_DATA", REPO.parent / "shared" / "data"))
