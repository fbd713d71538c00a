"""Alembic migrations of the registry (applied by ``adapters.registry.open_registry``)."""
