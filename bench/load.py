"""A bounded HTTP load generator for ``POST /verify``: a fixed number of requests at a fixed concurrency.

``concurrency`` threads share a request counter; each thread keeps one keep-alive connection (a new one
after a failure) and sends the next pre-built body until the count is reached or the deadline has passed.
``http.client`` rather than an async client: it costs the least CPU per request, and on a 2-core machine the
client's CPU is taken from the server being measured. A level can be sent in several bursts (:func:`send`)
and summarised as one (:func:`summarise`): the service benchmark alternates bursts between servers.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.lfw import PhotoPair

BOUNDARY = "bench-7d1f0c9a4e"


def multipart(pair: PhotoPair) -> bytes:
    """A ``/verify`` body: the two photos as ``image1`` and ``image2`` parts."""
    parts = []
    for name, filename, data in (("image1", pair.first, pair.data1), ("image2", pair.second, pair.data2)):
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def post_verify(connection: http.client.HTTPConnection, body: bytes) -> int:
    """Send one ``/verify`` and read the whole response; returns its status code."""
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(len(body))}
    connection.request("POST", "/verify", body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


@dataclass
class Burst:
    """One burst of requests: the shared state of its worker threads, then its outcome."""

    port: int
    bodies: Sequence[bytes]
    count: int
    deadline: float
    timeout: float
    issued: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    wall: float = 0.0

    def claim(self) -> int | None:
        with self.lock:
            if self.issued >= self.count or time.perf_counter() >= self.deadline:
                return None
            self.issued += 1
            return self.issued - 1

    def record(self, status: str, seconds: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            if status == "200":
                self.latencies.append(seconds)


def _worker(level: Burst, start: threading.Barrier) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", level.port, timeout=level.timeout)
    start.wait()
    while (index := level.claim()) is not None:
        started = time.perf_counter()
        try:
            status = str(post_verify(connection, level.bodies[index % len(level.bodies)]))
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets: counted, never raised
            status = type(exc).__name__
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", level.port, timeout=level.timeout)
        level.record(status, time.perf_counter() - started)
    connection.close()


def send(port: int, bodies: Sequence[bytes], concurrency: int, count: int, deadline_s: float, timeout: float) -> Burst:
    """Send ``count`` requests with ``concurrency`` threads; never runs past ``deadline_s`` + one ``timeout``."""
    start = threading.Barrier(concurrency + 1)
    burst = Burst(port, bodies, count, time.perf_counter() + deadline_s, timeout)
    workers = [threading.Thread(target=_worker, args=(burst, start), daemon=True) for _ in range(concurrency)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join(timeout=deadline_s + timeout + 5)
    burst.wall = time.perf_counter() - began
    return burst


def summarise(bursts: Sequence[Burst], concurrency: int) -> dict[str, Any]:
    """One level's figures from its bursts: counts added up, req/s = answers / the bursts' wall time, latency
    percentiles over every answer."""
    requests, sent, wall = sum(b.count for b in bursts), sum(b.issued for b in bursts), sum(b.wall for b in bursts)
    statuses: Counter[str] = sum((b.statuses for b in bursts), Counter())
    ok = statuses.get("200", 0)
    latencies_ms = np.asarray([s for b in bursts for s in b.latencies]) * 1000
    summary: dict[str, float | None] = dict.fromkeys(("p50_ms", "p95_ms", "p99_ms", "mean_ms"))  # no 200s: no ranks
    if latencies_ms.size:
        summary = {
            "p50_ms": float(np.percentile(latencies_ms, 50)),
            "p95_ms": float(np.percentile(latencies_ms, 95)),
            "p99_ms": float(np.percentile(latencies_ms, 99)),
            "mean_ms": float(latencies_ms.mean()),
        }
    return {
        "concurrency": concurrency,
        "requests": requests,
        "sent": sent,
        "ok": ok,
        "errors": sent - ok,
        "not_sent": requests - sent,
        "statuses": dict(statuses),
        "bursts": len(bursts),
        "wall_s": wall,
        "requests_per_s": ok / wall if wall > 0 else 0.0,
        **summary,
    }


def run_level(
    port: int, bodies: Sequence[bytes], concurrency: int, count: int, deadline_s: float, timeout: float
) -> dict[str, Any]:
    """:func:`send` one burst and :func:`summarise` it."""
    return summarise([send(port, bodies, concurrency, count, deadline_s, timeout)], concurrency)
