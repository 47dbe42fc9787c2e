"""Identification (1:N): enrolled subjects, their face embeddings and search, behind :class:`GalleryStore`.

``FACE_GALLERY_URL`` picks the backend: ``sqlite:///<file>`` (the default, ``gallery.db``: embedded, exact
search in memory, one service process) or ``postgresql://...`` (PostgreSQL + pgvector, HNSW search in the
database, any number of replicas). ``python -m service.gallery`` has the operator's commands (re-embedding).
"""

from __future__ import annotations

import hashlib

from service.config import Settings
from service.engine import ModelCard
from service.gallery.store import GalleryStore, ModelId

__all__ = ["GalleryStore", "ModelId", "model_id", "open_store", "owner_of"]


def model_id(card: ModelCard) -> ModelId:
    return ModelId(card.name, card.version, card.sha256)


def open_store(settings: Settings, card: ModelCard) -> GalleryStore:
    """The configured gallery for the served model (schema created if new; SQLite: embeddings loaded).

    Raises:
        StoreUnavailable: the database cannot be opened (PostgreSQL unreachable, SQLite file locked, ...).
    """
    url = settings.gallery_url
    if url.startswith("sqlite:///"):
        from service.gallery.sqlite import SQLiteStore

        return SQLiteStore(url, model_id(card), card.dim)
    try:
        from service.gallery.postgres import PostgresStore
    except ImportError as exc:  # the optional extra is not installed
        from service.gallery.store import StoreUnavailable

        raise StoreUnavailable(
            f"FACE_GALLERY_URL is a PostgreSQL URL but its driver is missing ({exc}): pip install '.[postgres]'"
        ) from exc
    return PostgresStore(url, model_id(card), card.dim, ef_search=settings.gallery_ef_search)


def owner_of(api_key: str | None) -> str:
    """The gallery an API key owns: a hash of it (the key itself is never stored); no keys: ``""``, shared."""
    if not api_key:
        return ""
    return hashlib.sha256(b"mobileid-gallery-owner\0" + api_key.encode()).hexdigest()[:32]
