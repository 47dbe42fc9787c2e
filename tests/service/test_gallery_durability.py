"""Concurrency and durability: 8 clients enrol and identify at once, the server is SIGKILLed mid-run and restarted.

Real ``python -m service`` under uvicorn on 127.0.0.1, both backends. Bounded: the load runs for
``LOAD_SECONDS``, longer (up to ``MAX_LOAD_SECONDS``) on a slow machine until ``ENOUGH`` enrolments and searches
were answered; each client stops at its first failed request once the server is killed, every request has a
timeout. After the restart:
* every enrolment answered 201 is there (subject and face), none is there twice, and nothing was stored that
  was not requested (at most the requests in flight at the kill, one per client, are stored unanswered);
* every face any search returned during the run is there: searches only ever saw committed faces.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import photo
from gallery_fixtures import make_gallery_url, postgres_server  # noqa: F401 - fixtures
from test_gallery import PEOPLE, STRANGER
from test_server import start

CLIENTS, ENROLLERS, LOAD_SECONDS, MAX_LOAD_SECONDS, ENOUGH, REQUEST_TIMEOUT = 8, 4, 10.0, 60.0, 50, 30.0
PHOTOS = [p for _, first, second in PEOPLE for p in (first, second)] + [STRANGER]


@dataclass
class Observed:
    """What the clients were told, shared by their threads (appends are atomic under the GIL)."""

    subjects: list[str] = field(default_factory=list)
    faces: list[tuple[str, str]] = field(default_factory=list)  # (subject, face) answered 201
    attempted: list[str] = field(default_factory=list)  # "subject" or "face", one per request sent
    seen_faces: set[str] = field(default_factory=set)  # face ids in any /identify answer
    searches: int = 0
    errors: list[str] = field(default_factory=list)  # non-201/200 answers before the kill


def wait_ready(url: str, process: Any, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server not ready in 90 s:\n{log.read_text()}")


@pytest.fixture
def server(manifest_path: Path, tmp_path: Path) -> Iterator[Any]:
    started: list[Any] = []

    def run(gallery: str, name: str) -> str:
        log = tmp_path / f"{name}.log"
        process, url = start(manifest_path, log, FACE_GALLERY_URL=gallery, FACE_THREADS="1")
        started.append(process)
        wait_ready(url, process, log)
        return url

    run.processes = started  # type: ignore[attr-defined]
    yield run
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)


def enroller(url: str, index: int, observed: Observed, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        n = 0
        while not stop.is_set():
            try:
                observed.attempted.append("subject")
                created = client.post("/subjects", json={"name": f"client {index} subject {n}"})
                if created.status_code != 201:
                    observed.errors.append(created.text)
                    continue
                subject = created.json()["id"]
                observed.subjects.append(subject)
                for k in range(2):  # two faces per subject
                    name = PHOTOS[(index + n + k) % len(PHOTOS)]
                    observed.attempted.append("face")
                    face = client.post(f"/subjects/{subject}/faces", files={"image": (name, photo(name), "image/jpeg")})
                    if face.status_code != 201:
                        observed.errors.append(face.text)
                        continue
                    observed.faces.append((subject, face.json()["face_id"]))
                n += 1
            except httpx.TransportError:
                return  # the server was killed


def searcher(url: str, index: int, observed: Observed, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        n = 0
        while not stop.is_set():
            name = PHOTOS[(index + n) % len(PHOTOS)]
            n += 1
            try:
                found = client.post(
                    "/identify", files={"image": (name, photo(name), "image/jpeg")}, params={"top_k": 20}
                )
            except httpx.TransportError:
                return
            if found.status_code != 200:
                observed.errors.append(found.text)
                continue
            observed.searches += 1
            observed.seen_faces.update(m["face_id"] for m in found.json()["matches"])


def stored(url: str) -> tuple[list[str], list[tuple[str, str]]]:
    subjects: list[str] = []
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        total = client.get("/subjects", params={"limit": 1}).json()["total"]
        for offset in range(0, total, 1000):
            page = client.get("/subjects", params={"limit": 1000, "offset": offset}).json()
            subjects += [s["id"] for s in page["subjects"]]
        faces = [(s, f["face_id"]) for s in subjects for f in client.get(f"/subjects/{s}/faces").json()["faces"]]
    return subjects, faces


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_enrolments_survive_sigkill_and_searches_see_only_committed_faces(
    server: Any,
    make_gallery_url: Any,  # noqa: F811 - the fixture
    backend: str,
) -> None:
    gallery = make_gallery_url(backend)
    url = server(gallery, "first")
    observed, stop = Observed(), threading.Event()
    threads = [
        threading.Thread(target=enroller if i < ENROLLERS else searcher, args=(url, i, observed, stop))
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    while time.monotonic() - started < MAX_LOAD_SECONDS and not (
        time.monotonic() - started >= LOAD_SECONDS and min(len(observed.faces), observed.searches) >= ENOUGH
    ):
        time.sleep(0.2)
    server.processes[0].send_signal(signal.SIGKILL)  # mid-run: requests are in flight
    server.processes[0].wait(timeout=20)
    stop.set()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads)
    assert not observed.errors, observed.errors[:3]
    assert len(observed.faces) >= 20 and observed.searches >= 20, (len(observed.faces), observed.searches)

    url = server(gallery, "restarted")
    subjects, faces = stored(url)
    print(
        f"{backend}: {len(observed.faces)} faces and {len(observed.subjects)} subjects answered 201, "
        f"{observed.searches} searches; stored after the kill: {len(faces)} faces, {len(subjects)} subjects"
    )
    assert len(set(subjects)) == len(subjects) and len({f for _, f in faces}) == len(faces)
    assert set(observed.subjects) <= set(subjects), "a subject answered 201 is missing after the restart"
    assert set(observed.faces) <= set(faces), "a face answered 201 is missing after the restart"
    # Unanswered but stored: only requests in flight at the kill (one per enrolling client at most).
    assert len(subjects) - len(observed.subjects) <= ENROLLERS
    assert len(faces) - len(observed.faces) <= ENROLLERS
    assert len(subjects) <= observed.attempted.count("subject") and len(faces) <= observed.attempted.count("face")
    assert observed.seen_faces <= {f for _, f in faces}, "a search returned a face that was never committed"
    # And the restarted server searches what is stored.
    subject, face = observed.faces[0]
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        listed = [f["face_id"] for f in client.get(f"/subjects/{subject}/faces").json()["faces"]]
        assert face in listed
