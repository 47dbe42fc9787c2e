"""The real service on a large gallery: ``/identify`` one request at a time, then enrolment throughput.

``python -m service`` (2 ONNX Runtime threads) is started on 127.0.0.1 on each backend's largest gallery.
Every loop is bounded by a request count and a deadline, every request has a socket timeout.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.gallery_data import lfw
from bench.service import LoadPlan, running

log = logging.getLogger(__name__)
BOUNDARY = "gallery-bench-3f2a"
DEADLINE_S, TIMEOUT_S = 120.0, 30.0


def image_body(data: bytes, name: str = "probe.jpg") -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _post(connection: http.client.HTTPConnection, path: str, body: bytes, content_type: str) -> tuple[int, Any]:
    connection.request("POST", path, body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    payload = response.read()
    return response.status, json.loads(payload) if payload else None


def identify_one_at_a_time(port: int, photos: list[bytes], requests: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    content = f"multipart/form-data; boundary={BOUNDARY}"
    for data in photos[:5]:
        _post(connection, "/identify", image_body(data), content)  # warm-up
    client_ms, took_ms, search_ms, errors = [], [], [], 0
    deadline = time.monotonic() + DEADLINE_S
    for i in range(requests):
        if time.monotonic() > deadline:
            break
        body = image_body(photos[i % len(photos)])
        started = time.perf_counter()
        status, answer = _post(connection, "/identify", body, content)
        client_ms.append((time.perf_counter() - started) * 1000)
        if status != 200:
            errors += 1
            continue
        took_ms.append(answer["took_ms"])
        search_ms.append(answer["search_ms"])
    connection.close()

    def pct(values: list[float]) -> dict[str, float]:
        p50, p95, p99 = np.percentile(values, [50, 95, 99]) if values else (float("nan"),) * 3
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(np.mean(values))}

    return {
        "requests": len(client_ms),
        "errors": errors,
        "client_ms": pct(client_ms),
        "server_ms": pct(took_ms),
        "search_ms": pct(search_ms),
        "search_share": float(np.sum(search_ms) / max(np.sum(took_ms), 1e-9)),
    }


def enrolment_throughput(port: int, photos: list[bytes], count: int, concurrency: int) -> dict[str, Any]:
    """``count`` enrolments (a new subject, then its face) over ``concurrency`` keep-alive connections."""
    claimed, lock, statuses = [0], threading.Lock(), []
    deadline = time.monotonic() + DEADLINE_S

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        while time.monotonic() < deadline:
            with lock:
                if claimed[0] >= count:
                    break
                claimed[0] += 1
                index = claimed[0]
            status, subject = _post(
                connection, "/subjects", json.dumps({"name": f"enrolled {index}"}).encode(), "application/json"
            )
            if status == 201:
                status, _ = _post(
                    connection,
                    f"/subjects/{subject['id']}/faces",
                    image_body(photos[index % len(photos)]),
                    f"multipart/form-data; boundary={BOUNDARY}",
                )
            statuses.append(status)
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_S + TIMEOUT_S)
    seconds = time.perf_counter() - started
    ok = statuses.count(201)
    return {
        "concurrency": concurrency,
        "enrolments": ok,
        "errors": len(statuses) - ok,
        "seconds": seconds,
        "per_s": ok / seconds,
    }


def run(manifest: Path, galleries: dict[str, str], data: Path, folder: Path, requests: int) -> dict[str, Any]:
    faces = lfw(data)
    photos = [path.read_bytes() for path in faces.files[:: max(1, len(faces.files) // 400)]]
    results: dict[str, Any] = {}
    for backend, url in galleries.items():
        log.info("service on the %s gallery: %d /identify one at a time", backend, requests)
        with running(
            manifest, None, LoadPlan(threads=2), folder / f"service-{backend}.log", {"FACE_GALLERY_URL": url}
        ) as server:
            results[backend] = {
                "identify": identify_one_at_a_time(server.port, photos, requests),
                "enrol": [enrolment_throughput(server.port, photos, requests // 2, c) for c in (1, 4)],
                "startup_s": server.startup_seconds,
            }
    return results
