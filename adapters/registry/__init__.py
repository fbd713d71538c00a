"""The SQL registry: sites, devices, users, plans, commands, alerts, audit log.

SQLAlchemy 2 models (:mod:`adapters.registry.models`) and plain repository
functions that take a :class:`sqlalchemy.orm.Session`, one module per
concept (``users``, ``fleet``, ``plans``, ``commands``, ``alerts``,
``audit``, ``scenarios``). The schema is created and upgraded by the
Alembic migrations shipped in ``adapters/registry/migrations``;
:func:`open_registry` applies them before handing out the engine.

Public entry points::

    from adapters.registry import open_registry, Registry
    reg = open_registry("sqlite:///data/ecogrid.db")   # or postgresql+psycopg://...
    with reg.session() as s:                           # commits on success
        users.create_user(s, "ada", "secret", "admin")

SQLite is the default (``$ECOGRID_DATA_DIR/ecogrid.db``); PostgreSQL is used
when the URL says so (``pip install psycopg[binary]``).
"""

from adapters.registry.db import Registry, RegistryError, open_registry

__all__ = ["Registry", "RegistryError", "open_registry"]
