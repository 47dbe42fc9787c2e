"""The FastAPI application: ``create_app()`` wires settings, middleware, routes and the model lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from PIL import ImageFile
from starlette.concurrency import run_in_threadpool

from service import __doc__ as service_doc
from service.config import Settings, get_settings
from service.deps import AppState
from service.docs import install_docs
from service.engine import Engine
from service.errors import install_error_handlers
from service.gallery import open_store
from service.gallery.store import StoreUnavailable
from service.logs import configure_logging
from service.manifest import ManifestError
from service.metrics import Metrics
from service.middleware import ApiKeyGuard, BodyLimit, RequestContext
from service.openapi import FaceAPI
from service.routes import embed, health, identify, info, subjects, verify

log = logging.getLogger(__name__)

DESCRIPTION = """\
Face verification: YuNet face detection, 5-point alignment and an embedding model, all in ONNX Runtime.

* `POST /verify`: two photos (multipart `image1`, `image2`) -> same person or not, with the similarity.
* `POST /embed`: one or more photos (`image` parts) -> an L2-normalised embedding of each photo's main face.
* `POST /verify/embeddings`: compare two stored embeddings (JSON).
* Identification (1:N) over this API key's gallery: `POST /subjects` (a person), `POST /subjects/{id}/faces`
  (enrol a photo's main face), `POST /identify` (who is this?), `POST /subjects/{id}/verify` (is this them?);
  `GET /subjects` (paged), `GET`/`DELETE /subjects/{id}`, `GET /subjects/{id}/faces`, `DELETE .../faces/{face_id}`.

Photos: JPEG, PNG, WebP or BMP, recognised from their bytes; EXIF orientation is applied. The main face is the
largest, penalised by its distance from the image centre; `require_single_face=true` (form field or query
parameter) makes a photo with several faces an error instead.

Every error is `{"error": {"code", "message", "field"?, "request_id"?}}` with a stable `code`. When the
server is configured with API keys, every route but /healthz and /readyz needs an `X-API-Key` header.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load, check and warm the models before serving; a bad model file stops start-up with its reason."""
    state: AppState = app.state.face
    try:
        engine = await run_in_threadpool(Engine.load, state.settings, state.metrics)
    except ManifestError as exc:
        log.critical("start-up failed: %s", exc, extra={"manifest": str(state.settings.manifest)})
        raise
    try:
        state.gallery = await run_in_threadpool(open_store, state.settings, engine.card)
    except StoreUnavailable as exc:
        log.critical("start-up failed: %s", exc.message)
        raise
    state.engine = engine
    state.metrics.serving(engine.card)
    if isinstance(app, FaceAPI):
        app.embedding_dim, app.openapi_schema = engine.card.dim, None  # regenerate with the exact dim
    log.info("ready", extra={"model": engine.card.name, "dim": engine.card.dim, "threshold": engine.card.threshold})
    try:
        yield
    finally:
        state.engine = None  # shutting down: not ready (in-flight requests keep their own reference)
        state.metrics.serving(None)
        gallery, state.gallery = state.gallery, None
        if gallery is not None:
            gallery.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; models are loaded by its lifespan, not here."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    # Strict decoding is a process-wide Pillow switch: make sure no import turned it on.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    metrics = Metrics()
    app = FaceAPI(
        title="Face verification",
        version="1",
        summary=(service_doc or "").strip(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # install_docs serves /docs and /redoc from local files, not a CDN
        redoc_url=None,
    )
    app.api_keys_required, app.max_images = bool(settings.api_keys), settings.max_images
    app.state.face = AppState(settings=settings, metrics=metrics)
    install_error_handlers(app)
    install_docs(app)
    for module in (verify, embed, subjects, identify, info, health):
        app.include_router(module.router)
    # Added innermost first: RequestContext sees (and logs) even the 401s and 413s of the two guards.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyGuard, keys=settings.api_keys)
    app.add_middleware(RequestContext, metrics=metrics)
    return app
