"""Concurrent requests: no 5xx, and the same answers as one at a time."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from conftest import DIFFERENT, SAME, part
from fastapi.testclient import TestClient

THREADS, PER_THREAD, DEADLINE_S = 8, 50, 90.0


def requests(client: TestClient) -> list[tuple[str, dict[str, Any]]]:
    """A mix of the API's calls (verify, embed, verify/embeddings) to cycle through."""
    embedding = client.post("/embed", files={"image": part(SAME[0][0])}).json()["results"][0]["embedding"]
    other = client.post("/embed", files={"image": part(DIFFERENT[1][1])}).json()["results"][0]["embedding"]
    calls: list[tuple[str, dict[str, Any]]] = []
    for first, second in (SAME[0], DIFFERENT[1]):
        calls.append(("/verify", {"files": {"image1": part(first), "image2": part(second)}}))
        calls.append(("/embed", {"files": [("image", part(first))]}))
    calls.append(("/verify/embeddings", {"json": {"embedding1": embedding, "embedding2": other}}))
    return calls


def answer(response: Any) -> list[float]:
    """The numbers a client acts on: similarity and boxes, or embeddings and boxes."""
    assert response.status_code == 200, response.text
    body = response.json()
    faces = body.get("faces") or body.get("results") or []
    numbers = [body["similarity"]] if "similarity" in body else []
    for face in faces:
        numbers += face["box"] + face.get("embedding", [])
    return numbers


def test_concurrent_requests_match_sequential(client: TestClient) -> None:
    calls = requests(client)
    sequential = [answer(client.post(path, **kwargs)) for path, kwargs in calls]
    started = time.monotonic()

    def worker(offset: int) -> list[tuple[int, Any]]:
        out = []
        for i in range(PER_THREAD):
            if time.monotonic() - started > DEADLINE_S:
                pytest.fail(f"concurrency test over {DEADLINE_S} s")
            index = (offset + i) % len(calls)
            path, kwargs = calls[index]
            out.append((index, answer(client.post(path, **kwargs))))
        return out

    with ThreadPoolExecutor(THREADS) as pool:
        results = [r for chunk in pool.map(worker, range(THREADS)) for r in chunk]
    assert len(results) == THREADS * PER_THREAD
    for index, got in results:
        assert np.allclose(got, sequential[index], atol=1e-5), calls[index][0]
