"""The registry's devices held in memory, for ``GET /devices`` without a database query.

:class:`DeviceView` loads every device record once (one query), indexes them
by site and answers the same filters, sort and paging as
:func:`adapters.registry.fleet.list_devices`. The live service drops the
view after each registry change it makes (:meth:`DeviceView.invalidate`;
the next request reloads it). Records older than ``max_age_s`` are still
served while a background thread reloads them, so a change made by another
process shows up within about that time and no request waits for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from adapters.registry import Registry, RegistryError
from adapters.registry import fleet as fleet_repo
from twin.fleet import DEVICE_TYPES

SORTS: tuple[str, ...] = ("id", "site_id", "type", "status")


class DeviceView:
    """Device records in memory, indexed by site.

    Parameters
    ----------
    registry : Registry
        Where the devices live.
    max_age_s : float
        Reload when the loaded records are older than this [s].
    clock : callable
        ``() -> s``, monotonic.
    """

    def __init__(self, registry: Registry, max_age_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.registry = registry
        self.max_age_s = max_age_s
        self.clock = clock
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        # (records sorted by id, records by site), or None until loaded
        self._data: tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]] | None = None
        self._generation = 0  # rises with each invalidate: a load begun before is discarded
        self._loaded_s = 0.0
        self._reloading = False

    @property
    def fresh(self) -> bool:
        """True when :meth:`list_devices` answers without waiting for the database."""
        return self._data is not None

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._reloading:
                return
            self._reloading = True

        def reload() -> None:
            try:
                self.load(force=True)
            finally:
                self._reloading = False

        threading.Thread(target=reload, name="device-view-reload", daemon=True).start()

    def invalidate(self) -> None:
        """Forget the records (after a change to sites or devices)."""
        self._generation += 1
        self._data = None

    def load(self, force: bool = False) -> None:
        """Read every device record from the registry (one query), unless loaded
        already and ``force`` is False."""
        with self._load_lock:
            if self._data is not None and not force:
                return
            t, generation = self.clock(), self._generation
            with self.registry.session() as s:
                records, _ = fleet_repo.list_devices(s, limit=10**9)
            records.sort(key=lambda r: r["id"])
            by_site: dict[str, list[dict[str, Any]]] = {}
            for r in records:
                by_site.setdefault(r["site_id"], []).append(r)
            if generation == self._generation:
                self._data, self._loaded_s = (records, by_site), t

    def list_devices(self, *, site_id: str | None = None, type: str | None = None,
                     status: str | None = None, tag: str | None = None, q: str | None = None,
                     sort: str = "id", offset: int = 0, limit: int = 100
                     ) -> tuple[list[dict[str, Any]], int]:
        """Devices matching the filters, sorted and paged; returns ``(page, total)``.

        Same arguments and answers as :func:`adapters.registry.fleet.list_devices`.
        Loads the records first when they are not in memory (a database query).
        """
        data = self._data
        if data is None:
            self.load()
            data = self._data or ([], {})
        return self._select(data, site_id=site_id, type=type, status=status, tag=tag, q=q,
                            sort=sort, offset=offset, limit=limit)

    def list_loaded_devices(self, *, site_id: str | None = None, type: str | None = None,
                            status: str | None = None, tag: str | None = None,
                            q: str | None = None, sort: str = "id", offset: int = 0,
                            limit: int = 100) -> tuple[list[dict[str, Any]], int] | None:
        """:meth:`list_devices` from the records in memory, or None when they are not
        loaded; never waits for the database (for callers on the event loop)."""
        data = self._data
        if data is None:
            return None
        return self._select(data, site_id=site_id, type=type, status=status, tag=tag, q=q,
                            sort=sort, offset=offset, limit=limit)

    def _select(self, data: tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]], *,
                site_id: str | None, type: str | None, status: str | None, tag: str | None,
                q: str | None, sort: str, offset: int, limit: int
                ) -> tuple[list[dict[str, Any]], int]:
        desc = sort.startswith("-")
        key = sort.lstrip("-")
        if key not in SORTS:
            raise RegistryError(f"sort {sort!r}: use one of {sorted(SORTS)} (prefix - "
                                "for descending)")
        if type and type not in DEVICE_TYPES:
            raise RegistryError(f"type {type!r} is not one of {DEVICE_TYPES}")
        if self.clock() - self._loaded_s > self.max_age_s:
            self._refresh_in_background()
        records, by_site = data
        rows = by_site.get(site_id, []) if site_id else records  # by site: no scan
        if type:
            rows = [r for r in rows if r["type"] == type]
        if status:
            rows = [r for r in rows if r["status"] == status]
        if q:
            needle = q.lower()
            rows = [r for r in rows if needle in r["id"].lower() or needle in r["site_id"].lower()]
        if tag:
            rows = [r for r in rows if tag in r["tags"]]
        if key != "id" or desc:
            rows = sorted(rows, key=lambda r: r["id"])  # ties in id order, as in SQL
            rows = sorted(rows, key=lambda r: r[key], reverse=desc)
        return [dict(r) for r in rows[offset:offset + limit]], len(rows)
