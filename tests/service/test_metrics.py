"""/metrics exposes request counts and latencies by route, pipeline stages, faces detected and the model."""

from __future__ import annotations

import re

from conftest import GROUP, SAME, part
from fastapi.testclient import TestClient


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} not in /metrics"
    return float(match.group(1))


def test_counters_move(client: TestClient) -> None:
    before = client.get("/metrics").text
    client.post("/verify", files={"image1": part(SAME[0][0]), "image2": part(GROUP)})
    client.post("/embed", files={"image": ("e.jpg", b"", "image/jpeg")})
    after = client.get("/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text

    ok = 'face_http_requests_total{method="POST",route="/verify",status="200"}'
    bad = 'face_http_requests_total{method="POST",route="/embed",status="400"}'
    assert value(text, ok) == (value(before, ok) if ok in before else 0) + 1
    assert value(text, bad) >= 1
    assert value(text, 'face_http_request_duration_seconds_count{method="POST",route="/verify"}') >= 1
    for stage in ("decode", "detect", "align", "embed"):
        assert value(text, f'face_pipeline_stage_duration_seconds_count{{stage="{stage}"}}') >= 1
    assert value(text, "face_faces_detected_count") >= 2
    assert value(text, "face_faces_detected_sum") >= 3  # 1 + 2 faces
    info = client.get("/info").json()
    labels = f'dim="{info["dim"]}",name="{info["name"]}",sha256="{info["sha256"]}",version="{info["version"]}"'
    assert value(text, f"face_model_info{{{labels}}}") == 1
    assert value(text, "face_ready") == 1


def test_unknown_paths_do_not_explode_cardinality(client: TestClient) -> None:
    for i in range(3):
        client.get(f"/random-{i}")
    text = client.get("/metrics").text
    assert "random-" not in text
    assert value(text, 'face_http_requests_total{method="GET",route="unmatched",status="404"}') >= 3
