"""Shared fixtures: which model manifest the tests use, settings, app clients and test photos.

The tests run the real app (lifespan included) on the real ONNX models and real photos.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.config import Settings
from service.main import create_app

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
COMMITTED_MANIFEST = REPO / "models" / "manifest.json"
# The teacher cache (git-ignored) is a stand-in while no model is committed; never used once one is.
CACHED_MANIFEST = REPO / ".cache" / "teachers" / "manifest.json"

SAME = [
    ("Colin_Powell_0040.jpg", "Colin_Powell_0071.jpg"),
    ("Laura_Bush_0001.jpg", "Laura_Bush_0021.jpg"),
    ("Serena_Williams_0001.jpg", "Serena_Williams_0014.jpg"),
]
DIFFERENT = [
    ("Colin_Powell_0040.jpg", "Laura_Bush_0001.jpg"),
    ("Laura_Bush_0021.jpg", "Serena_Williams_0001.jpg"),
    ("Serena_Williams_0014.jpg", "Colin_Powell_0071.jpg"),
]
GROUP = "Mark_Hurlbert_0004.jpg"  # two faces


def pytest_configure(config: pytest.Config) -> None:
    # Settings come from FACE_* variables: an operator's environment must not leak into the tests.
    for name in [n for n in os.environ if n.startswith("FACE_")]:
        del os.environ[name]


@pytest.fixture(scope="session")
def manifest_path() -> Path:
    """models/manifest.json (the committed default model) whenever it exists, else the teacher cache."""
    if COMMITTED_MANIFEST.is_file():
        return COMMITTED_MANIFEST
    if CACHED_MANIFEST.is_file():
        return CACHED_MANIFEST
    pytest.skip(f"no model manifest: {COMMITTED_MANIFEST} is not committed yet and {CACHED_MANIFEST} is absent")


@pytest.fixture(scope="session")
def make_settings(manifest_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        # Each app gets its own empty gallery file unless the test names one.
        gallery = f"sqlite:///{tmp_path_factory.mktemp('gallery') / 'gallery.db'}"
        return Settings(**{"manifest": manifest_path, "log_level": "WARNING", "gallery_url": gallery, **overrides})

    return make


@pytest.fixture(scope="session")
def make_client(make_settings: Callable[..., Settings]) -> Callable[..., AbstractContextManager[TestClient]]:
    """``with make_client(max_pixels=10) as client:`` an app with its own settings, started and stopped."""

    @contextmanager
    def make(**overrides: Any) -> Iterator[TestClient]:
        with TestClient(create_app(make_settings(**overrides))) as client:
            yield client

    return make


@pytest.fixture(scope="session")
def client(make_client: Callable[..., AbstractContextManager[TestClient]]) -> Iterator[TestClient]:
    """The app with default settings, shared by the tests that do not change settings."""
    with make_client() as shared:
        yield shared


def photo(name: str) -> bytes:
    return (DATA / name).read_bytes()


def part(name: str, data: bytes | None = None, content_type: str = "image/jpeg") -> tuple[str, bytes, str]:
    """A multipart file part: (filename, bytes, content type)."""
    return (name, photo(name) if data is None else data, content_type)


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert an error response's status and code; return its ``error`` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    error: dict[str, Any] = body["error"]
    return error


def edited_manifest(source: Path, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of ``source`` in ``folder`` (its model files linked beside it), changed by ``edit``."""
    data = json.loads(source.read_text())
    entries = [data["detector"], *(c for m in data["models"].values() for c in m["components"])]
    for entry in entries:
        link = folder / entry["file"]
        if not link.exists():
            link.symlink_to((source.parent / entry["file"]).resolve())
    edit(data)
    path = folder / "manifest.json"
    path.write_text(json.dumps(data))
    return path
