"""Engine, sessions and migrations of the registry.

:func:`open_registry` makes the engine for a URL (SQLite file or
PostgreSQL), applies the Alembic migrations shipped in this package, and
returns a :class:`Registry` whose :meth:`Registry.session` is a
commit-on-success context manager.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class RegistryError(RuntimeError):
    """The registry cannot be opened or a record is missing or invalid."""


class Registry:
    """The registry's engine and session factory.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Engine on a migrated database (see :func:`open_registry`).
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends normally, else rolls back."""
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def checkpoint(self) -> None:
        """SQLite: fold the write-ahead log into the database file now (a plan's rows are
        megabytes; otherwise the next commits, an approval's among them, do it). Readers
        are not waited for; other databases: nothing to do."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def json_dumps(value: object) -> str:
    """JSON columns are written with orjson (a plan's setpoint series are megabytes); NaN
    becomes null, as JSON (and PostgreSQL) require."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY
                        | orjson.OPT_NON_STR_KEYS).decode()


def json_loads(text: str | bytes) -> object:
    """JSON columns are read with orjson; rows written by an older version with the
    standard library may hold NaN, which only it reads."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str, schema: str | None = None) -> Engine:
    """Create an engine for ``url``; SQLite files get WAL and foreign keys.

    ``schema`` (PostgreSQL only) puts every table in that schema, used by the
    tests to isolate runs.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False},
                               json_serializer=json_dumps, json_deserializer=json_loads)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        kwargs: dict[str, object] = {"json_serializer": json_dumps,
                                     "json_deserializer": json_loads}
        if schema:
            kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
        return create_engine(url, pool_pre_ping=True, pool_size=10, **kwargs)
    except ModuleNotFoundError as exc:
        raise RegistryError(f"database URL {url!r} needs the driver {exc.name!r}: "
                            "pip install 'psycopg[binary]'") from exc


def migrate(engine: Engine) -> None:
    """Bring the database schema up to the newest migration (Alembic ``upgrade head``)."""

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_registry(url: str, schema: str | None = None) -> Registry:
    """Open (and migrate) the registry at ``url``.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:///data/ecogrid.db`` or
        ``postgresql+psycopg://user@host:5432/db``.
    schema : str, optional
        PostgreSQL schema to hold the tables (it must exist).

    Raises
    ------
    RegistryError
        When the database cannot be reached or migrated; the message names the URL.
    """
    engine = make_engine(url, schema)
    try:
        migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        safe = engine.url.render_as_string(hide_password=True)
        raise RegistryError(f"cannot open the registry at {safe}: {exc.__class__.__name__}: "
                            f"{str(exc).splitlines()[0]}") from exc
    return Registry(engine)
