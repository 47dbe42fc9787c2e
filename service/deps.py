"""Application state and the typed dependencies routes declare (``EngineDep``, ``SettingsDep``, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, UploadFile

from service.config import Settings
from service.engine import Engine, FaceEmbedding, Upload
from service.errors import ImageTooLarge, NotReady, UnsupportedMediaType
from service.gallery.store import GalleryStore
from service.metrics import Metrics


@dataclass
class AppState:
    """Lives on ``app.state.face``; ``engine`` is set by the lifespan once the models are loaded and warm."""

    settings: Settings
    metrics: Metrics
    engine: Engine | None = None
    gallery: GalleryStore | None = None
    """Opened by the lifespan once the engine is loaded (it searches the served model's embeddings)."""


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.face
    return state


async def get_engine(state: Annotated[AppState, Depends(get_state)]) -> Engine:
    if state.engine is None:
        raise NotReady("the models are still loading; retry shortly (GET /readyz turns 200 when ready)")
    return state.engine


async def get_settings(state: Annotated[AppState, Depends(get_state)]) -> Settings:
    return state.settings


async def get_metrics(state: Annotated[AppState, Depends(get_state)]) -> Metrics:
    return state.metrics


StateDep = Annotated[AppState, Depends(get_state)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def require_multipart(request: Request) -> None:
    """415 unless the body is multipart/form-data (checked before the fields, so the code says what is wrong)."""
    if _media_type(request) != "multipart/form-data":
        shown = _media_type(request) or "no Content-Type"
        raise UnsupportedMediaType(f"send multipart/form-data with the image file(s), not {shown}")


async def require_json(request: Request) -> None:
    """415 unless the body is JSON."""
    media = _media_type(request)
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"send application/json, not {media or 'no Content-Type'}")


def analyse_parts(
    engine: Engine, parts: Sequence[tuple[UploadFile, str]], max_bytes: int, require_single_face: bool
) -> list[FaceEmbedding]:
    """Read each ``(file part, field name)`` and analyse them all (blocking: call from a worker thread)."""
    uploads = [read_upload(part, field, max_bytes) for part, field in parts]
    return engine.analyse(uploads, require_single_face=require_single_face)


def read_upload(upload: UploadFile, field: str, max_bytes: int) -> Upload:
    """Read one file part (blocking: call from a worker thread), at most ``max_bytes`` + 1 bytes of it."""
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{field}: the file is over the {max_bytes}-byte limit", field=field)
    return Upload(field=field, data=data, content_type=upload.content_type, filename=upload.filename)
