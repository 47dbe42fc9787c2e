"""Settings come from FACE_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import REPO_ROOT, available_cpus, get_settings


def test_defaults() -> None:
    settings = get_settings()
    assert settings.manifest == REPO_ROOT / "models" / "manifest.json"
    assert settings.model is None and settings.threshold is None and settings.api_keys == []
    assert settings.threads == available_cpus() <= len(os.sched_getaffinity(0))
    assert settings.detector_threads == 1 and settings.photo_threads == available_cpus()
    assert settings.max_upload_bytes == 10 * 1024 * 1024 and settings.max_pixels == 40_000_000
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)


def test_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "FACE_API_KEYS": " one ,two,, ",
        "FACE_MAX_UPLOAD_BYTES": "1234",
        "FACE_THREADS": "1",
        "FACE_DETECTOR_THREADS": "2",
        "FACE_PHOTO_THREADS": "1",
        "FACE_MODEL": "student",
        "FACE_THRESHOLD": "0.42",
        "FACE_LOG_LEVEL": "debug",
        "FACE_PORT": "9000",
        "FACE_MANIFEST": "/tmp/m.json",
    }.items():
        monkeypatch.setenv(name, value)
    settings = get_settings()
    assert settings.api_keys == ["one", "two"]
    assert (settings.max_upload_bytes, settings.threads, settings.model) == (1234, 1, "student")
    assert (settings.threshold, settings.log_level, settings.port) == (0.42, "DEBUG", 9000)
    assert str(settings.manifest) == "/tmp/m.json"
    assert (settings.detector_threads, settings.photo_threads) == (2, 1)


@pytest.mark.parametrize(
    ("name", "value"), [("FACE_THREADS", "0"), ("FACE_PHOTO_THREADS", "0"), ("FACE_THRESHOLD", "2"), ("FACE_PORT", "x")]
)
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        get_settings()


def test_empty_variables_mean_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FACE_THRESHOLD", "FACE_THREADS", "FACE_MODEL", "FACE_API_KEYS"):
        monkeypatch.setenv(name, "")  # what docker compose passes for an unset ${VAR:-}
    settings = get_settings()
    assert settings.threshold is None and settings.model is None and settings.api_keys == []
    assert settings.threads == available_cpus()


@pytest.mark.parametrize(("cpu_max", "cap"), [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1)])
def test_cgroup_quota_caps_threads(tmp_path: Path, cpu_max: str, cap: int | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max + "\n")
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(path) == (affinity if cap is None else min(cap, affinity))
    assert available_cpus(tmp_path / "absent") == affinity
