"""Domain exceptions and the one place that maps them (and every other failure) to HTTP.

Every error body is ``{"error": {"code", "message", ...}}``; a traceback never reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.logs import request_id_var

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A request the service cannot serve, with a stable machine-readable ``code``."""

    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        """Which request field (e.g. ``image2`` or ``image[1]``) the error is about, if any."""


class InvalidImage(ServiceError):
    code = "invalid_image"


class UnsupportedMediaType(ServiceError):
    code = "unsupported_media_type"


class ImageTooLarge(ServiceError):
    code = "image_too_large"


class NoFace(ServiceError):
    code = "no_face"


class MultipleFaces(ServiceError):
    code = "multiple_faces"


class InvalidRequest(ServiceError):
    code = "invalid_request"


class ModelMismatch(ServiceError):
    """Embeddings from another model than the served one (or from two different models) cannot be compared."""

    code = "model_mismatch"


class Unauthorized(ServiceError):
    code = "unauthorized"


class NotReady(ServiceError):
    code = "not_ready"


class Overloaded(ServiceError):
    """Too many pixels in flight (see :mod:`service.budget`); ``retry_after`` seconds go in ``Retry-After``."""

    code = "overloaded"

    def __init__(self, message: str, *, field: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class NotFound(ServiceError):
    code = "not_found"


class GalleryConflict(ServiceError):
    """The gallery's state forbids the request (subclasses say how: model_mismatch, no_enrolled_faces)."""

    code = "conflict"


class GalleryUnavailable(ServiceError):
    code = "gallery_unavailable"


STATUS: dict[type[ServiceError], int] = {
    InvalidImage: 400,
    Unauthorized: 401,
    ImageTooLarge: 413,
    UnsupportedMediaType: 415,
    NoFace: 422,
    MultipleFaces: 422,
    InvalidRequest: 422,
    ModelMismatch: 422,
    NotReady: 503,
    Overloaded: 503,
    NotFound: 404,
    GalleryConflict: 409,
    GalleryUnavailable: 503,
}

# Starlette's own HTTP errors (routing, body parsing) get codes too. A body that cannot be parsed at all
# (malformed multipart) is the same kind of client error as malformed JSON, so both are 422 invalid_request.
_HTTP_CODES: dict[int, tuple[int, str]] = {
    400: (422, "invalid_request"),
    401: (401, "unauthorized"),
    404: (404, "not_found"),
    405: (405, "method_not_allowed"),
    413: (413, "image_too_large"),
    415: (415, "unsupported_media_type"),
}


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error response."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    request_id = request_id_var.get()
    if request_id:
        error["request_id"] = request_id
    error.update(extra)
    return {"error": error}


def error_response(
    status: int, code: str, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def status_of(exc: ServiceError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _location(loc: Sequence[Any]) -> str:
    """``("body", "image2")`` -> ``"image2"``; ``("query", "threshold")`` -> ``"threshold"``."""
    parts = [str(p) for p in loc if p not in ("body", "query", "header", "path", "cookie")]
    return ".".join(parts) or "body"


def validation_message(errors: Sequence[Any]) -> tuple[str, list[dict[str, str]]]:
    """Readable one-line message and per-field details from pydantic errors (inputs are never echoed)."""
    details = []
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = err.get("ctx", {}).get("error", "invalid JSON")
            details.append({"field": "body", "message": f"malformed JSON: {reason}"})
        else:
            details.append({"field": _location(err.get("loc", ())), "message": str(err.get("msg", "invalid"))})
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details) or "invalid request"
    return message, details


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    status = status_of(exc)
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(exc.retry_after)}
    log.info("request failed: %s: %s", exc.code, exc.message, extra={"error_code": exc.code, "status": status})
    return error_response(status, exc.code, exc.message, field=exc.field, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, details = validation_message(exc.errors())
    field = details[0]["field"] if details else None
    log.info("invalid request: %s", message, extra={"error_code": "invalid_request", "status": 422})
    return JSONResponse(error_body("invalid_request", message, field, details=details), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status, code = _HTTP_CODES.get(exc.status_code, (exc.status_code, f"http_{exc.status_code}"))
    message = str(exc.detail) if exc.status_code != 400 else f"the request body could not be parsed: {exc.detail}"
    return error_response(status, code, message, headers=dict(exc.headers) if exc.headers else None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"error_code": "internal_error", "status": 500})
    return error_response(500, "internal_error", "internal server error; quote the request id when reporting it")


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception through the ``{"error": ...}`` body."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
