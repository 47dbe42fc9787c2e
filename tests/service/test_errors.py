"""Error contract: codes, statuses and the ``{"error": ...}`` body for every kind of bad request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import GROUP, SAME, encode, error_of, part
from fastapi.testclient import TestClient
from PIL import Image

from service.main import create_app


def test_no_face(client: TestClient) -> None:
    grey = encode(Image.new("RGB", (250, 250), (128, 128, 128)), "JPEG")
    files = {"image1": part(SAME[0][0]), "image2": ("grey.jpg", grey, "image/jpeg")}
    error = error_of(client.post("/verify", files=files), 422, "no_face")
    assert error["field"] == "image2"


def test_multiple_faces_only_when_required(client: TestClient) -> None:
    files = {"image1": part(GROUP), "image2": part(SAME[0][0])}
    as_form = client.post("/verify", files=files, data={"require_single_face": "true"})
    assert error_of(as_form, 422, "multiple_faces")["field"] == "image1"
    as_query = client.post("/verify", files=files, params={"require_single_face": "true"})
    assert error_of(as_query, 422, "multiple_faces")["field"] == "image1"
    default = client.post("/verify", files=files)
    assert default.status_code == 200, default.text
    assert default.json()["faces"][0]["faces_detected"] >= 2
    assert default.json()["faces"][1]["faces_detected"] == 1


def test_main_face_is_the_central_one(client: TestClient) -> None:
    face = client.post("/embed", files={"image": part(GROUP)}).json()["results"][0]
    x, _, w, _ = face["box"]
    assert abs(x + w / 2 - 125) < 50  # the person the photo is of, not the one beside him


@pytest.mark.parametrize(
    ("files", "data", "field"),
    [
        ({"image1": part(SAME[0][0])}, None, "image2"),
        ({}, {"threshold": "0.5"}, "image1"),
        (
            {"image1": part(SAME[0][0]), "image2": part(SAME[0][1])},
            {"require_single_face": "maybe"},
            "require_single_face",
        ),
    ],
    ids=["missing-image2", "no-files", "bad-bool"],
)
def test_missing_or_wrong_fields(client: TestClient, files: dict[str, Any], data: Any, field: str) -> None:
    if not files:  # a multipart body with only a text field
        response = client.post("/verify", data=data, files={"note": ("n.txt", b"x", "text/plain")})
    else:
        response = client.post("/verify", files=files, data=data)
    error = error_of(response, 422, "invalid_request")
    assert error["field"] == field
    assert error["details"]


def test_image_sent_as_text_field_is_invalid_request(client: TestClient) -> None:
    note = {"note": ("n.txt", b"x", "text/plain")}  # forces multipart; the images are plain text fields
    response = client.post("/verify", data={"image1": "not a file", "image2": "nor this"}, files=note)
    assert error_of(response, 422, "invalid_request")["field"] in ("image1", "image2")
    urlencoded = client.post("/verify", data={"image1": "not a file", "image2": "nor this"})
    error_of(urlencoded, 415, "unsupported_media_type")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_verify_needs_multipart(client: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/verify", content=b'{"image1": "x"}', headers=headers)
    error_of(response, 415, "unsupported_media_type")


def test_malformed_multipart_is_invalid_request(client: TestClient) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    response = client.post("/verify", content=b"--xyz\r\nContent-Disposition: garbage\r\n\r\n", headers=headers)
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("invalid_request", "invalid_image")


def test_not_found_and_method_not_allowed_use_the_error_body(client: TestClient) -> None:
    error_of(client.get("/nope"), 404, "not_found")
    error_of(client.get("/verify"), 405, "method_not_allowed")


def test_api_keys(make_client: Callable[..., Any]) -> None:
    with make_client(api_keys="first-key, second-key") as keyed:
        for path in ("/info", "/metrics", "/openapi.json"):
            error_of(keyed.get(path), 401, "unauthorized")
            error_of(keyed.get(path, headers={"X-API-Key": "wrong"}), 401, "unauthorized")
            assert keyed.get(path, headers={"X-API-Key": "second-key"}).status_code == 200
        files = {"image1": part(SAME[0][0]), "image2": part(SAME[0][1])}
        response = keyed.post("/verify", files=files)
        assert error_of(response, 401, "unauthorized") and response.headers["WWW-Authenticate"] == "ApiKey"
        assert keyed.post("/verify", files=files, headers={"X-API-Key": "first-key"}).status_code == 200
        # The probes stay open for the orchestrator.
        assert keyed.get("/healthz").status_code == 200
        assert keyed.get("/readyz").status_code == 200


def test_not_ready_before_the_models_are_loaded(make_settings: Callable[..., Any]) -> None:
    app = create_app(make_settings())
    starting = TestClient(app)  # not entered: the lifespan (model loading) has not run
    assert starting.get("/healthz").status_code == 200
    error_of(starting.get("/readyz"), 503, "not_ready")
    error_of(starting.post("/verify", files={"image1": part(SAME[0][0]), "image2": part(SAME[0][1])}), 503, "not_ready")
    error_of(starting.post("/embed", files={"image": part(SAME[0][0])}), 503, "not_ready")
    error_of(starting.post("/verify/embeddings", json={"embedding1": [1.0], "embedding2": [1.0]}), 503, "not_ready")
    error_of(starting.get("/info"), 503, "not_ready")
    with starting:
        assert starting.get("/readyz").status_code == 200
    error_of(starting.get("/readyz"), 503, "not_ready")  # after shutdown


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["X-Request-ID"] not in ("", "bad id with spaces")
    error = client.get("/nope", headers={"X-Request-ID": "req-42"}).json()["error"]
    assert error["request_id"] == "req-42"
