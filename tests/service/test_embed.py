"""POST /embed: unit-norm, deterministic embeddings, one per image part, in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from conftest import GROUP, SAME, error_of, part
from fastapi.testclient import TestClient


def embed(client: TestClient, *names: str) -> dict[str, Any]:
    response = client.post("/embed", files=[("image", part(name)) for name in names])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_unit_norm_dim_and_fields(client: TestClient) -> None:
    body = embed(client, SAME[0][0])
    info = client.get("/info").json()
    assert body["dim"] == info["dim"]
    assert body["model"] == {"name": info["name"], "version": info["version"], "sha256": info["sha256"]}
    (result,) = body["results"]
    vector = np.asarray(result["embedding"])
    assert vector.shape == (info["dim"],)
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-5
    assert len(result["box"]) == 4 and len(result["landmarks"]) == 5
    assert all(len(point) == 2 for point in result["landmarks"])
    assert result["faces_detected"] == 1 and 0.5 < result["score"] <= 1.0


def test_deterministic(client: TestClient) -> None:
    first = embed(client, SAME[1][0])["results"][0]["embedding"]
    second = embed(client, SAME[1][0])["results"][0]["embedding"]
    assert np.allclose(first, second, atol=1e-6)


def test_several_parts_keep_their_order(client: TestClient) -> None:
    names = [SAME[0][0], SAME[1][1], SAME[2][0]]
    batch = embed(client, *names)["results"]
    reversed_batch = embed(client, *reversed(names))["results"]
    singles = [embed(client, name)["results"][0] for name in names]
    assert len(batch) == 3
    for got, back, single in zip(batch, reversed(reversed_batch), singles, strict=True):
        assert np.allclose(got["embedding"], single["embedding"], atol=1e-5)
        assert np.allclose(back["embedding"], single["embedding"], atol=1e-5)
        assert got["box"] == single["box"]
    # Different people: the order really matters (a test that could fail).
    assert not np.allclose(batch[0]["embedding"], batch[1]["embedding"], atol=0.1)


def test_one_bad_part_fails_the_request_naming_it(client: TestClient) -> None:
    files = [("image", part(SAME[0][0])), ("image", ("empty.jpg", b"", "image/jpeg")), ("image", part(SAME[0][1]))]
    error = error_of(client.post("/embed", files=files), 400, "invalid_image")
    assert error["field"] == "image[1]"
    assert "image[1]" in error["message"] and "empty.jpg" in error["message"]


def test_group_photo_reports_faces_detected(client: TestClient) -> None:
    (result,) = embed(client, GROUP)["results"]
    assert result["faces_detected"] >= 2
    single = client.post("/embed", files=[("image", part(GROUP))], data={"require_single_face": "true"})
    assert error_of(single, 422, "multiple_faces")["field"] == "image[0]"


def test_too_many_parts(make_client: Callable[..., Any]) -> None:
    with make_client(max_images=2) as limited:
        response = limited.post("/embed", files=[("image", part(SAME[0][0]))] * 3)
        assert error_of(response, 422, "invalid_request")["field"] == "image"


def test_missing_image_is_invalid_request(client: TestClient) -> None:
    response = client.post("/embed", files={"other": part(SAME[0][0])})
    assert error_of(response, 422, "invalid_request")["field"] == "image"
