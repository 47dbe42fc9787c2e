"""Operating points: /info publishes them, /verify and /verify/embeddings take far= (a published rate only)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from conftest import SAME, error_of, part
from fastapi.testclient import TestClient

from service.engine import Engine
from service.errors import InvalidRequest
from service.thresholds import resolve_threshold

FARS = [0.01, 0.001, 0.0001]


def points(client: TestClient) -> dict[str, Any]:
    info: dict[str, Any] = client.get("/info").json()
    assert info["operating_points"] is not None, "the served model has no calibrated operating points"
    return info


def test_info_shows_the_operating_points_and_where_they_were_calibrated(client: TestClient) -> None:
    info = points(client)
    ops = info["operating_points"]
    assert [p["far"] for p in ops["rates"]] == FARS
    assert info["threshold"] == info["manifest_threshold"] == ops["default"]["threshold"]
    assert (
        "CelebA test split" in ops["calibrated_on"]["description"]
        and "folds 0-4" in ops["calibrated_on"]["description"]
    )
    assert "folds 5-9" in ops["held_out"]["description"]
    assert "LFW" not in ops["calibrated_on"]["description"] and "not LFW" in info["threshold_calibration"]
    # FAR 1e-4 needs far more than 10^4 impostor pairs; each rate holds on the calibration pairs.
    assert ops["calibrated_on"]["impostor_pairs"] > 10**6 and ops["held_out"]["impostor_pairs"] > 10**6
    thresholds = [p["threshold"] for p in ops["rates"]]
    assert thresholds == sorted(thresholds)  # a lower FAR needs a higher threshold
    for point in ops["rates"]:
        assert point["calibration"]["far"] <= point["far"]
        assert 0 < point["held_out"]["tar"] < 1 and 0.5 < point["lfw"]["accuracy"] < 1
        assert point["lfw"]["pairs"] == 6000


@pytest.mark.parametrize("far", FARS)
def test_verify_at_a_published_far(client: TestClient, far: float) -> None:
    published = {p["far"]: p["threshold"] for p in points(client)["operating_points"]["rates"]}
    files = {"image1": part(SAME[0][0]), "image2": part(SAME[0][1])}
    for options in ({"data": {"far": str(far)}}, {"params": {"far": far}}):
        body = client.post("/verify", files=files, **options).json()  # type: ignore[arg-type]
        assert (body["threshold"], body["far"]) == (published[far], far)
        assert body["verified"] == (body["similarity"] >= published[far])
    plain = client.post("/verify", files=files).json()
    assert plain["far"] is None and plain["threshold"] == points(client)["threshold"]


def test_an_unpublished_far_lists_the_published_ones(client: TestClient) -> None:
    files = {"image1": part(SAME[0][0]), "image2": part(SAME[0][1])}
    error = error_of(client.post("/verify", files=files, data={"far": "0.05"}), 422, "invalid_request")
    assert error["field"] == "far" and "0.01, 0.001, 0.0001" in error["message"]
    error = error_of(
        client.post("/verify", files=files, data={"far": "0.001", "threshold": "0.5"}), 422, "invalid_request"
    )
    assert "not both" in error["message"]
    error_of(client.post("/verify", files=files, data={"far": "1.5"}), 422, "invalid_request")


def test_far_on_stored_embeddings(client: TestClient) -> None:
    embedded = client.post("/embed", files=[("image", part(name)) for name in SAME[1]]).json()["results"]
    body = {"embedding1": embedded[0]["embedding"], "embedding2": embedded[1]["embedding"], "far": 0.01}
    answer = client.post("/verify/embeddings", json=body).json()
    published = {p["far"]: p["threshold"] for p in points(client)["operating_points"]["rates"]}
    assert (answer["threshold"], answer["far"]) == (published[0.01], 0.01)
    error = error_of(client.post("/verify/embeddings", json={**body, "far": 0.2}), 422, "invalid_request")
    assert error["field"] == "far"
    error_of(client.post("/verify/embeddings", json={**body, "threshold": 0.3}), 422, "invalid_request")


def test_resolution_without_operating_points(client: TestClient) -> None:
    engine: Engine = client.app.state.face.engine  # type: ignore[attr-defined]
    bare = dataclasses.replace(engine.card, spec=engine.card.spec.model_copy(update={"operating_points": None}))
    assert resolve_threshold(bare, threshold=0.25).value == 0.25
    assert resolve_threshold(bare).value == bare.threshold
    with pytest.raises(InvalidRequest, match="publishes no operating points"):
        resolve_threshold(bare, far=0.001)
