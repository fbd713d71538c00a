"""Registry fixtures: the same tests on SQLite (a file) and on the machine's PostgreSQL.

PostgreSQL runs in a schema made for the test and dropped after it; where no
server answers, those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from adapters.registry import Registry, open_registry

PG_URL = os.environ.get("ECOGRID_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def postgres_schema() -> Iterator[tuple[str, str]]:
    """Yield ``(url, schema)`` of a fresh schema; skip when PostgreSQL is not reachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    try:
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, ModuleNotFoundError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {str(exc).splitlines()[0]}")
    schema = f"ecogrid_test_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield PG_URL, schema
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[str, str | None]]:
    """``(url, schema)`` of an empty database of either kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'reg.db'}", None
    else:
        yield from postgres_schema()


@pytest.fixture
def registry(registry_url: tuple[str, str | None]) -> Iterator[Registry]:
    url, schema = registry_url
    reg = open_registry(url, schema=schema)
    yield reg
    reg.close()
