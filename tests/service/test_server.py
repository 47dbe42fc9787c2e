"""``python -m service`` really serves over HTTP, logs JSON lines, and refuses to start on a bad model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, SAME, edited_manifest, photo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(manifest: Path, log: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FACE_")}
    environment["FACE_GALLERY_URL"] = f"sqlite:///{log.parent / 'gallery.db'}"
    environment.update(FACE_MANIFEST=str(manifest), FACE_HOST="127.0.0.1", FACE_PORT=str(port), **env)
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=environment, stderr=stderr)
    return process, f"http://127.0.0.1:{port}"


def json_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def server(manifest_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("server") / "stderr.log"
    process, url = start(manifest_path, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"server not ready in 60 s:\n{log.read_text()}")
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serves_verify_and_logs_json(server: tuple[str, Path]) -> None:
    url, log = server
    files = {"image1": ("a.jpg", photo(SAME[0][0]), "image/jpeg"), "image2": ("b.jpg", photo(SAME[0][1]), "image/jpeg")}
    response = httpx.post(f"{url}/verify", files=files, headers={"X-Request-ID": "e2e-1"}, timeout=30)
    assert response.status_code == 200 and response.json()["verified"] is True
    assert response.headers["x-request-id"] == "e2e-1"
    time.sleep(0.2)  # let the access line reach the log
    lines = json_lines(log)
    access = [line for line in lines if line.get("request_id") == "e2e-1" and line.get("path") == "/verify"]
    assert access and access[0]["status"] == 200 and access[0]["duration_ms"] > 0
    assert any(line["message"] == "ready" for line in lines)


def test_bad_model_file_stops_start_up(manifest_path: Path, tmp_path: Path) -> None:
    def corrupt(data: dict[str, Any]) -> None:
        data["models"][data["default_model"]]["components"][0]["sha256"] = "0" * 64

    log = tmp_path / "stderr.log"
    process, _ = start(edited_manifest(manifest_path, tmp_path, corrupt), log)
    try:
        assert process.wait(timeout=60) != 0
    finally:
        if process.poll() is None:
            process.kill()
    critical = [line for line in json_lines(log) if line["level"] == "CRITICAL"]
    assert critical and "start-up failed" in critical[0]["message"] and "sha256" in critical[0]["message"]
