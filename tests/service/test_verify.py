"""POST /verify and POST /verify/embeddings on real photos with the real model."""

from __future__ import annotations

import math
from typing import Any

import pytest
from conftest import DIFFERENT, SAME, error_of, part
from fastapi.testclient import TestClient


def verify(client: TestClient, first: str, second: str, **kwargs: object) -> dict[str, Any]:
    response = client.post("/verify", files={"image1": part(first), "image2": part(second)}, **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(("first", "second"), SAME)
def test_same_person_verifies(client: TestClient, first: str, second: str) -> None:
    body = verify(client, first, second)
    assert body["verified"] is True
    assert body["similarity"] >= body["threshold"]


@pytest.mark.parametrize(("first", "second"), DIFFERENT)
def test_different_people_do_not_verify(client: TestClient, first: str, second: str) -> None:
    body = verify(client, first, second)
    assert body["verified"] is False
    assert body["similarity"] < body["threshold"]


def test_response_shape_and_model(client: TestClient) -> None:
    body = verify(client, *SAME[0])
    info = client.get("/info").json()
    assert body["threshold"] == info["threshold"]
    assert body["model"] == {"name": info["name"], "version": info["version"], "sha256": info["sha256"]}
    assert len(body["faces"]) == 2
    for face in body["faces"]:
        assert len(face["box"]) == 4 and face["box"][2] > 20 and face["box"][3] > 20
        assert 0.5 < face["score"] <= 1.0
        assert face["faces_detected"] == 1
        assert len(face["landmarks"]) == 5
    assert body["took_ms"] > 0
    assert -1.0 <= body["similarity"] <= 1.0


def test_symmetric(client: TestClient) -> None:
    for first, second in (SAME[1], DIFFERENT[1]):
        forward, backward = verify(client, first, second), verify(client, second, first)
        assert math.isclose(forward["similarity"], backward["similarity"], abs_tol=1e-6)
        assert forward["faces"][0] == backward["faces"][1]


def test_threshold_as_form_field_and_query(client: TestClient) -> None:
    first, second = SAME[0]
    similarity = verify(client, first, second)["similarity"]
    # verified is similarity >= threshold: the similarity itself as threshold verifies, a hair above does not.
    assert verify(client, first, second, data={"threshold": str(similarity)})["verified"] is True
    above = verify(client, first, second, params={"threshold": str(similarity + 1e-4)})
    assert above["verified"] is False and above["threshold"] == pytest.approx(similarity + 1e-4)
    # The form field wins over the query parameter.
    both = verify(client, first, second, data={"threshold": "-1"}, params={"threshold": "1"})
    assert both["threshold"] == -1 and both["verified"] is True


@pytest.mark.parametrize("threshold", ["abc", "1.5", "-2", "nan", "inf", ""])
def test_invalid_threshold_is_invalid_request(client: TestClient, threshold: str) -> None:
    files = {"image1": part(SAME[0][0]), "image2": part(SAME[0][1])}
    if threshold == "":
        response = client.post("/verify", files=files, params={"threshold": threshold})
    else:
        response = client.post("/verify", files=files, data={"threshold": threshold})
    error = error_of(response, 422, "invalid_request")
    assert error["field"] == "threshold"


def test_embeddings_endpoint_matches_verify(client: TestClient) -> None:
    first, second = DIFFERENT[0]
    embedded = client.post("/embed", files=[("image", part(first)), ("image", part(second))]).json()
    one, two = (r["embedding"] for r in embedded["results"])
    compared = client.post("/verify/embeddings", json={"embedding1": one, "embedding2": two})
    assert compared.status_code == 200, compared.text
    body = compared.json()
    assert body["similarity"] == pytest.approx(verify(client, first, second)["similarity"], abs=1e-5)
    assert body["verified"] is False and body["model"]["name"] == embedded["model"]["name"]
    # Stored embeddings need not be unit length: they are normalised first.
    scaled = client.post("/verify/embeddings", json={"embedding1": [3 * v for v in one], "embedding2": one}).json()
    assert scaled["similarity"] == pytest.approx(1.0, abs=1e-6) and scaled["verified"] is True
    custom = client.post("/verify/embeddings", json={"embedding1": one, "embedding2": two, "threshold": -1}).json()
    assert custom["verified"] is True and custom["threshold"] == -1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"embedding1": [0.1] * 3, "embedding2": [0.1] * 3}, "embedding1"),
        ("dim+1", "embedding2"),
        ("zeros", "embedding1"),
        ({"embedding1": [1.0]}, "embedding2"),
        ({"embedding1": "abc", "embedding2": [1.0]}, "embedding1"),
        ("extra", "threshold2"),
        ("threshold", "threshold"),
        ("bool-threshold", "threshold"),
        ("string-values", "embedding2.0"),
        ([1, 2], "body"),
    ],
)
def test_bad_embeddings_are_invalid_request(client: TestClient, body: object, field: str) -> None:
    dim = client.get("/info").json()["dim"]
    good = [0.5] * dim
    body = (
        {
            "dim+1": {"embedding1": good, "embedding2": good + [0.5]},
            "zeros": {"embedding1": [0.0] * dim, "embedding2": good},
            "extra": {"embedding1": good, "embedding2": good, "threshold2": 0.3},
            "threshold": {"embedding1": good, "embedding2": good, "threshold": 7},
            "bool-threshold": {"embedding1": good, "embedding2": good, "threshold": False},
            "string-values": {"embedding1": good, "embedding2": ["0.5"] * dim},
        }.get(body, body)
        if isinstance(body, str)
        else body
    )
    error = error_of(client.post("/verify/embeddings", json=body), 422, "invalid_request")
    assert error["field"] == field, error


def test_non_finite_embedding_is_invalid_request(client: TestClient) -> None:
    dim = client.get("/info").json()["dim"]
    values = ", ".join(["0.5"] * (dim - 1))
    raw = f'{{"embedding1": [NaN, {values}], "embedding2": [Infinity, {values}]}}'  # Python's json accepts these
    response = client.post("/verify/embeddings", content=raw, headers={"Content-Type": "application/json"})
    error = error_of(response, 422, "invalid_request")
    assert "embedding1" in error["message"]


def test_malformed_json_is_invalid_request(client: TestClient) -> None:
    headers = {"Content-Type": "application/json"}
    response = client.post("/verify/embeddings", content=b'{"embedding1": [1,', headers=headers)
    error = error_of(response, 422, "invalid_request")
    assert "JSON" in error["message"]


def test_embeddings_need_json(client: TestClient) -> None:
    response = client.post("/verify/embeddings", content=b"embedding1=1", headers={"Content-Type": "text/plain"})
    error_of(response, 415, "unsupported_media_type")
