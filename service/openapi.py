"""The OpenAPI document, with the service's ``{"error": ...}`` body in place of FastAPI's ``{"detail": ...}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.middleware import OPEN_PATHS

_ERROR_REF = "#/components/schemas/ErrorResponse"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


class FaceAPI(FastAPI):
    """FastAPI whose OpenAPI document matches what the service really sends, errors and API keys included."""

    api_keys_required: bool = False

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema:
            return self.openapi_schema
        schema = get_openapi(
            title=self.title, version=self.version, summary=self.summary, description=self.description,
            routes=self.routes,
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                _replace_validation_errors(operation)
                operation["security"] = self._security(path)
        for name in _FASTAPI_VALIDATION:
            schemas.pop(name, None)
        components["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                       "description": "Needed on every route but /healthz and /readyz when FACE_API_KEYS is set"}
        }
        self.openapi_schema = schema
        return schema

    def _security(self, path: str) -> list[dict[str, list[str]]]:
        if path in OPEN_PATHS:
            return []
        return [{"ApiKey": []}] if self.api_keys_required else [{"ApiKey": []}, {}]


def _replace_validation_errors(operation: dict[str, Any]) -> None:
    """Point any response FastAPI documented with its own validation body at ours."""
    for response in operation.get("responses", {}).values():
        for media in response.get("content", {}).values():
            ref = media.get("schema", {}).get("$ref", "")
            if ref.rsplit("/", 1)[-1] in _FASTAPI_VALIDATION:
                media["schema"] = {"$ref": _ERROR_REF}
