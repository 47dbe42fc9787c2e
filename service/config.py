"""Service settings, read from ``FACE_*`` environment variables (pydantic-settings).

Built in :func:`service.main.create_app` (or by the caller), never at import time.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def available_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity mask (taskset, cpusets), capped by a cgroup v2 CPU quota.

    A container limited to 2 CPUs on a 64-core host still sees 64 cores in its affinity mask; sizing ONNX
    Runtime's pool by that would oversubscribe the quota, hence the ``cpu.max`` cap.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota readable: the affinity mask is the limit
    return count


class Settings(BaseSettings):
    """Everything an operator may tune; each field is ``FACE_<NAME>`` in the environment."""

    # env_ignore_empty: FACE_THRESHOLD= (as docker compose passes an unset ${VAR:-}) means "default".
    model_config = SettingsConfigDict(env_prefix="FACE_", extra="ignore", frozen=True, env_ignore_empty=True)

    manifest: Path = REPO_ROOT / "models" / "manifest.json"
    """Model manifest (file names inside it are relative to it)."""
    model: str | None = None
    """Which of the manifest's models to serve; default: its ``default_model``."""
    threads: int = Field(default_factory=lambda: available_cpus(), ge=1)
    """ONNX Runtime intra-op threads per embedding-model session (inter-op is 1: the graphs are sequential)."""
    detector_threads: int = Field(default=1, ge=1)
    """ONNX Runtime intra-op threads of the face detector's session. YuNet's inputs here are small (256 px for
    an LFW-size photo, ~288 px for the quick pass, ~192 px close-ups), where a second thread made each call
    slower (256x256: 1.17 vs 1.03 ms) and two concurrent callers 29-35 % slower; only the 640 px pass gains."""
    photo_threads: int = Field(default_factory=lambda: available_cpus(), ge=1)
    """Most photos of one request decoded and searched at once while it is the only request in the engine
    (:mod:`service.fanout`); 1: always one after the other."""
    ort_spinning: bool = False
    """Let ORT's idle worker threads spin-wait: a few ms faster on dedicated cores, but they burn CPU that
    concurrent requests (or neighbours on shared cores) need; measured 2x slower under contention."""
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Default cosine threshold; unset = the calibrated one from the manifest."""
    require_single_face: bool = False
    """Default for the per-request option: several faces in a photo is an error instead of taking the main one."""
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    max_pixels: int = Field(default=40_000_000, ge=1)
    """Width x height limit read from the image header before decoding (decompression bombs)."""
    pixel_budget: int = Field(default=40_000_000, ge=1)
    """Decoded pixels all requests together may hold at once (3 bytes each, RGB); a request that does not fit
    waits up to ``pixel_budget_wait`` seconds, then gets 503 ``overloaded`` with ``Retry-After``."""
    pixel_budget_wait: float = Field(default=10.0, ge=0.0)
    max_images: int = Field(default=16, ge=1)
    """Most ``image`` parts one /embed request may carry."""
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated; when set, every route but /healthz and /readyz needs ``X-API-Key``."""
    gallery_url: str = Field(default="sqlite:///gallery.db", pattern=r"^(sqlite:///.+|postgres(ql)?://.*)$")
    """Enrolled subjects: ``sqlite:///<file>`` (embedded, one process) or ``postgresql://...`` (pgvector, shared)."""
    gallery_keep_crops: bool = False
    """Keep each enrolled face's aligned crop (biometric data) so the gallery can be re-embedded by a new model."""
    gallery_ef_search: int = Field(default=100, ge=1, le=1000)
    """pgvector HNSW search breadth (recall against speed); the embedded gallery searches exactly."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def max_body_bytes(self) -> int:
        """Whole-request cap: every allowed image at its limit plus room for the multipart framing."""
        return self.max_upload_bytes * max(self.max_images, 2) + 1024 * 1024


def get_settings() -> Settings:
    """Settings from the environment."""
    return Settings()
