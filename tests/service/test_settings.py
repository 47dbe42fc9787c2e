"""Settings come from FACE_* environment variables."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from service.config import REPO_ROOT, get_settings


def test_defaults() -> None:
    settings = get_settings()
    assert settings.manifest == REPO_ROOT / "models" / "manifest.json"
    assert settings.model is None and settings.threshold is None and settings.api_keys == []
    assert settings.threads == len(os.sched_getaffinity(0))
    assert settings.max_upload_bytes == 10 * 1024 * 1024 and settings.max_pixels == 40_000_000
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)


def test_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"FACE_API_KEYS": " one ,two,, ", "FACE_MAX_UPLOAD_BYTES": "1234", "FACE_THREADS": "1",
                        "FACE_MODEL": "student", "FACE_THRESHOLD": "0.42", "FACE_LOG_LEVEL": "debug",
                        "FACE_PORT": "9000", "FACE_MANIFEST": "/tmp/m.json"}.items():
        monkeypatch.setenv(name, value)
    settings = get_settings()
    assert settings.api_keys == ["one", "two"]
    assert (settings.max_upload_bytes, settings.threads, settings.model) == (1234, 1, "student")
    assert (settings.threshold, settings.log_level, settings.port) == (0.42, "DEBUG", 9000)
    assert str(settings.manifest) == "/tmp/m.json"


@pytest.mark.parametrize(("name", "value"), [("FACE_THREADS", "0"), ("FACE_THRESHOLD", "2"), ("FACE_PORT", "x")])
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        get_settings()
