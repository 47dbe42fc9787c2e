"""The OpenAPI document, made to match what the service really accepts and sends.

FastAPI's own document would describe ``{"detail": ...}`` validation errors the service never sends, offer
``null`` for form fields and query parameters (which cannot carry one: leaving them out is the null), and
could not know the embedding length. Clients and schema-based fuzzers generate requests from this document,
so it is corrected here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.middleware import OPEN_PATHS

_ERROR_REF = "#/components/schemas/ErrorResponse"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_NULL = {"type": "null"}


class FaceAPI(FastAPI):
    """FastAPI whose OpenAPI document matches the service: error body, API keys, form fields, embedding dim."""

    api_keys_required: bool = False
    embedding_dim: int | None = None
    """Set once the model is loaded; the document is then regenerated with the exact embedding length."""
    max_images: int | None = None
    """Most ``image`` parts of one /embed request (FACE_MAX_IMAGES)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema:
            return self.openapi_schema
        schema = get_openapi(
            title=self.title,
            version=self.version,
            summary=self.summary,
            description=self.description,
            routes=self.routes,
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                _replace_validation_errors(operation)
                _drop_null_from_form_and_query(operation, schemas, self.max_images)
                operation["security"] = self._security(path)
        for name in _FASTAPI_VALIDATION:
            schemas.pop(name, None)
        if self.embedding_dim is not None:
            for field in ("embedding1", "embedding2"):
                prop = schemas["EmbeddingsVerifyRequest"]["properties"][field]
                prop["minItems"] = prop["maxItems"] = self.embedding_dim
                prop["contains"] = {"not": {"const": 0}}  # an all-zero vector has no direction
        components["securitySchemes"] = {
            "ApiKey": {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "Needed on every route but /healthz and /readyz when FACE_API_KEYS is set",
            }
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


def _drop_null_from_form_and_query(operation: dict[str, Any], schemas: dict[str, Any], max_files: int | None) -> None:
    """``anyOf: [X, null]`` -> ``X`` for query parameters and multipart fields (absent is their null)."""
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "query":
            _drop_null(parameter.get("schema", {}))
    form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
    ref = form.get("schema", {}).get("$ref", "")
    for prop in schemas.get(ref.rsplit("/", 1)[-1], {}).get("properties", {}).values():
        _drop_null(prop)
        _non_empty_files(prop, max_files)


def _is_file(prop: dict[str, Any]) -> bool:
    # OpenAPI 3.1 (FastAPI >= 0.1xx) says contentMediaType; 3.0 said format: binary.
    return prop.get("format") == "binary" or prop.get("contentMediaType") == "application/octet-stream"


def _non_empty_files(prop: dict[str, Any], max_files: int | None) -> None:
    """A file part must have bytes, and a list of file parts between 1 and ``max_files`` parts."""
    if _is_file(prop):
        prop["minLength"] = 1
    if prop.get("type") == "array" and _is_file(prop.get("items", {})):
        prop["minItems"] = 1
        prop["items"]["minLength"] = 1
        if max_files is not None:
            prop["maxItems"] = max_files


def _drop_null(schema: dict[str, Any]) -> None:
    options = schema.get("anyOf", [])
    if _NULL in options and len(options) == 2:
        (kept,) = [option for option in options if option != _NULL]
        del schema["anyOf"]
        schema.update(kept)
