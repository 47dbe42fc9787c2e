"""Prometheus metrics, in a registry per app (several apps in one process, as in tests, do not collide)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.engine import ModelCard

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """Request counts and latencies by route, pipeline stage latencies, faces per photo, the served model."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "face_http_requests",
            "HTTP requests by route template, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "face_http_request_duration_seconds",
            "Time from request to last response byte, by route",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "face_pipeline_stage_duration_seconds",
            "Time per pipeline stage (decode, detect, align, embed)",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.faces_detected = Histogram(
            "face_faces_detected",
            "Faces the detector found per photo",
            buckets=(0, 1, 2, 3, 5, 10, 20),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "face_model_info",
            "The embedding model being served (value 1)",
            ["name", "version", "sha256", "dim"],
            registry=self.registry,
        )
        self.ready = Gauge("face_ready", "1 when the models are loaded and warm", registry=self.registry)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def stage(self, name: str, seconds: float) -> None:
        self.stages.labels(name).observe(seconds)

    def faces(self, count: int) -> None:
        self.faces_detected.observe(count)

    def serving(self, card: ModelCard | None) -> None:
        """Record the model now served (``None``: not ready)."""
        self.model_info.clear()
        if card is not None:
            self.model_info.labels(card.name, card.version, card.sha256, str(card.dim)).set(1)
        self.ready.set(0 if card is None else 1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
