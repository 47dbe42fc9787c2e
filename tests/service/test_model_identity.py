"""Embeddings carry their model's identity; /verify/embeddings refuses to compare embeddings of another model.

All the ensemble students are 192-d, so a dimension check alone would compare them: the identity catches it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from conftest import SAME, error_of, part
from fastapi.testclient import TestClient

OTHER = "mobileid-ensemble"  # another committed student with the same embedding dim as the default


def embed(client: TestClient, names: tuple[str, str]) -> list[dict[str, Any]]:
    response = client.post("/embed", files=[("image", part(name)) for name in names])
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


@pytest.fixture(scope="module")
def other_embeddings(make_client: Callable[..., AbstractContextManager[TestClient]]) -> list[dict[str, Any]]:
    with make_client(model=OTHER) as other:
        return embed(other, SAME[0])


def test_each_embedding_names_its_model(client: TestClient) -> None:
    info = client.get("/info").json()
    for result in embed(client, SAME[0]):
        assert result["model"] == {"name": info["name"], "version": info["version"], "sha256": info["sha256"]}


def test_same_model_identity_is_accepted(client: TestClient) -> None:
    first, second = embed(client, SAME[0])
    body = {
        "embedding1": first["embedding"],
        "embedding2": second["embedding"],
        "model1": first["model"],
        "model2": second["model"],
    }
    answer = client.post("/verify/embeddings", json=body)
    assert answer.status_code == 200 and answer.json()["verified"] is True


def test_embeddings_of_another_model_are_refused(client: TestClient, other_embeddings: list[dict[str, Any]]) -> None:
    served = embed(client, SAME[0])
    assert len(other_embeddings[0]["embedding"]) == len(served[0]["embedding"])  # same dim: only identity tells
    both_other = {
        "embedding1": other_embeddings[0]["embedding"],
        "embedding2": other_embeddings[1]["embedding"],
        "model1": other_embeddings[0]["model"],
        "model2": other_embeddings[1]["model"],
    }
    error = error_of(client.post("/verify/embeddings", json=both_other), 422, "model_mismatch")
    assert error["field"] == "model1" and OTHER in error["message"] and "this service serves" in error["message"]
    mixed = {
        "embedding1": served[0]["embedding"],
        "embedding2": other_embeddings[1]["embedding"],
        "model1": served[0]["model"],
        "model2": other_embeddings[1]["model"],
    }
    error = error_of(client.post("/verify/embeddings", json=mixed), 422, "model_mismatch")
    assert "different models" in error["message"]
    # A forged version of the served model is another model too.
    forged = {**served[0]["model"], "version": "9.9.9"}
    body = {"embedding1": served[0]["embedding"], "embedding2": served[1]["embedding"], "model2": forged}
    error_of(client.post("/verify/embeddings", json=body), 422, "model_mismatch")


def test_omitted_identity_is_taken_as_the_served_model(
    client: TestClient, other_embeddings: list[dict[str, Any]]
) -> None:
    """The documented backward-compatible rule: without model1/model2 nothing can be checked (dims match)."""
    body = {"embedding1": other_embeddings[0]["embedding"], "embedding2": other_embeddings[1]["embedding"]}
    assert client.post("/verify/embeddings", json=body).status_code == 200


def test_a_malformed_identity_is_invalid_request(client: TestClient) -> None:
    first, second = embed(client, SAME[0])
    body = {
        "embedding1": first["embedding"],
        "embedding2": second["embedding"],
        "model1": {**first["model"], "extra": 1},
    }
    error_of(client.post("/verify/embeddings", json=body), 422, "invalid_request")
    error_of(client.post("/verify/embeddings", json={**body, "model1": "mobileid"}), 422, "invalid_request")


FLIPPED = "mobileid-ensemble-int8-r9-flip"  # the default's graph, served flip-averaged


def test_a_served_variant_of_the_same_graph_is_another_model(
    client: TestClient, make_client: Callable[..., AbstractContextManager[TestClient]]
) -> None:
    info = client.get("/info").json()
    with make_client(model=FLIPPED) as flipped:
        variant = flipped.get("/info").json()
        assert variant["components"] == info["components"]  # the very same ONNX file
        assert variant["input"][0]["flip_average"] and not info["input"][0]["flip_average"]
        assert variant["sha256"] != info["sha256"]  # its embeddings differ: so does its identity
        theirs = embed(flipped, SAME[0])
    ours = embed(client, SAME[0])
    body = {
        "embedding1": ours[0]["embedding"],
        "embedding2": theirs[1]["embedding"],
        "model1": ours[0]["model"],
        "model2": theirs[1]["model"],
    }
    error_of(client.post("/verify/embeddings", json=body), 422, "model_mismatch")
