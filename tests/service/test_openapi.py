"""/openapi.json documents every route and its errors with the service's ``{"error": ...}`` body."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

ROUTES = {
    "/verify": "post",
    "/verify/embeddings": "post",
    "/embed": "post",
    "/info": "get",
    "/healthz": "get",
    "/readyz": "get",
    "/metrics": "get",
    # The gallery (first method of each path; tests/service/test_gallery_models.py checks all of them).
    "/subjects": "post",
    "/subjects/{subject_id}": "get",
    "/subjects/{subject_id}/faces": "post",
    "/subjects/{subject_id}/faces/{face_id}": "delete",
    "/identify": "post",
    "/subjects/{subject_id}/verify": "post",
}
ERROR_REF = "#/components/schemas/ErrorResponse"


def test_every_route_and_its_errors(client: TestClient) -> None:
    schema: dict[str, Any] = client.get("/openapi.json").json()
    assert {path: next(iter(item)) for path, item in schema["paths"].items()} == ROUTES
    for path, method in ROUTES.items():
        responses = schema["paths"][path][method]["responses"]
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (path, status)
    for path in ("/verify", "/embed"):
        assert {"400", "401", "413", "415", "422", "503"} <= set(schema["paths"][path]["post"]["responses"])
    assert {"401", "415", "422", "503"} <= set(schema["paths"]["/verify/embeddings"]["post"]["responses"])
    assert "503" in schema["paths"]["/readyz"]["get"]["responses"]


def test_fastapi_validation_body_is_replaced(client: TestClient) -> None:
    text = client.get("/openapi.json").text
    assert "HTTPValidationError" not in text and '"detail"' not in text
    schemas = json.loads(text)["components"]["schemas"]
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert {"code", "message"} <= set(schemas["ErrorDetail"]["properties"])


def test_multipart_fields_and_options_are_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/verify"]["post"]
    query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert query == {"threshold", "far", "require_single_face"}
    body_ref = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = set(schema["components"]["schemas"][body_ref]["properties"])
    assert {"image1", "image2", "threshold", "far", "require_single_face"} <= fields
    embed = schema["paths"]["/embed"]["post"]
    assert {p["name"] for p in embed["parameters"]} == {"require_single_face"}  # no threshold: nothing to compare


def test_api_key_scheme(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    assert {"ApiKey": []} in schema["paths"]["/verify"]["post"]["security"]


def test_schema_says_what_is_accepted(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    dim = client.get("/info").json()["dim"]
    request = schema["components"]["schemas"]["EmbeddingsVerifyRequest"]["properties"]
    assert request["embedding1"]["minItems"] == request["embedding1"]["maxItems"] == dim
    # A query parameter or form field cannot be null (leaving it out is): no "null" offered for them.
    for parameter in schema["paths"]["/verify"]["post"]["parameters"]:
        assert "anyOf" not in parameter["schema"], parameter
    body = schema["paths"]["/verify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    fields = schema["components"]["schemas"][body.rsplit("/", 1)[-1]]["properties"]
    assert fields["require_single_face"]["type"] == "boolean" and fields["threshold"]["type"] == "number"
    assert fields["image1"]["minLength"] == 1  # an empty file is no photo
    embed = schema["paths"]["/embed"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    image = schema["components"]["schemas"][embed.rsplit("/", 1)[-1]]["properties"]["image"]
    assert (image["minItems"], image["maxItems"]) == (1, 16)
