"""Service settings, read from ``FACE_*`` environment variables (pydantic-settings).

Built in :func:`service.main.create_app` (or by the caller), never at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup cpusets, unlike ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    """Everything an operator may tune; each field is ``FACE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="FACE_", extra="ignore", frozen=True)

    manifest: Path = REPO_ROOT / "models" / "manifest.json"
    """Model manifest (file names inside it are relative to it)."""
    model: str | None = None
    """Which of the manifest's models to serve; default: its ``default_model``."""
    threads: int = Field(default_factory=available_cpus, ge=1)
    """ONNX Runtime intra-op threads per session (inter-op is 1: the graphs are sequential)."""
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
    max_images: int = Field(default=16, ge=1)
    """Most ``image`` parts one /embed request may carry."""
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated; when set, every route but /healthz and /readyz needs ``X-API-Key``."""
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
