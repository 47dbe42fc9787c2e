"""The embedded gallery's in-memory exact search agrees with brute force, through adds and removes."""

from __future__ import annotations

import threading
import time

import numpy as np

from service.gallery.exact import ExactIndex
from service.similarity import l2_normalise


def brute_force(rows: dict[str, tuple[str, np.ndarray]], query: np.ndarray, top_k: int) -> list[tuple[str, float]]:
    best: dict[str, float] = {}
    for subject, embedding in rows.values():
        best[subject] = max(best.get(subject, -2.0), float(embedding @ query))
    return sorted(best.items(), key=lambda item: -item[1])[:top_k]


def test_exact_search_matches_brute_force_through_adds_and_removes() -> None:
    rng = np.random.default_rng(0)
    dim, index, rows = 16, ExactIndex(16), {}
    # 300 subjects with 1-6 faces each, in a random order, so the index grows past its first capacity.
    faces = [(f"s{s}", f"s{s}-f{f}") for s in range(300) for f in range(rng.integers(1, 7))]
    for i in rng.permutation(len(faces)):
        subject, face = faces[i]
        embedding = l2_normalise(rng.normal(size=dim))
        index.add("owner", face, subject, embedding)
        rows[face] = (subject, embedding)
    index.add("someone else", "x", "x", l2_normalise(rng.normal(size=dim)))  # never in "owner"'s answers
    removed = [faces[i][1] for i in rng.choice(len(faces), size=len(faces) // 3, replace=False)]
    index.remove("owner", removed)
    for face in removed:
        rows.pop(face)
    assert index.size("owner") == len(rows) and index.size() == len(rows) + 1
    for _ in range(50):
        query = l2_normalise(rng.normal(size=dim))
        for top_k in (1, 5, 40):
            found = index.search("owner", query, top_k)
            expected = brute_force(rows, query, top_k)
            assert [s for s, _, _ in found] == [s for s, _ in expected]
            assert np.allclose([sim for _, _, sim in found], [sim for _, sim in expected], atol=1e-5)
            assert all(rows[face][0] == subject for subject, face, _ in found)  # the face is the subject's
    assert index.search("nobody", l2_normalise(rng.normal(size=dim)), 5) == []


def test_searches_during_writes_answer_consistently() -> None:
    """Searches run outside the lock on a snapshot: an answer must never mix a face id with another row's score."""
    rng = np.random.default_rng(1)
    dim, index = 32, ExactIndex(32)
    size, writes = 40_000, 4000
    vectors = l2_normalise(rng.normal(size=(size + writes, dim)))
    embeddings = {f"f{i}": vectors[i] for i in range(size + writes)}
    for i in range(size):
        index.add("owner", f"f{i}", f"s{i % 500}", embeddings[f"f{i}"])
    stop, problems, searches = threading.Event(), [], []

    def writer() -> None:
        for i in range(size, size + writes):  # add one, remove a random old one: rows move under the searches
            index.add("owner", f"f{i}", f"s{i % 500}", embeddings[f"f{i}"])
            index.remove("owner", [f"f{i - size}"])
            time.sleep(0.0002)
        stop.set()

    def searcher(seed: int) -> None:
        local = np.random.default_rng(seed)
        while not stop.is_set():
            query = l2_normalise(local.normal(size=dim))
            searches.append(1)
            for subject, face, similarity in index.search("owner", query, 10):
                if f"s{int(face[1:]) % 500}" != subject or abs(float(embeddings[face] @ query) - similarity) > 1e-4:
                    problems.append((subject, face, similarity))

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=searcher, args=(s,)) for s in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not problems, problems[:3]
    assert index.size("owner") == size and len(searches) > 100
