"""The fleet in force in a running process: its version, its edits, its device records.

:class:`LiveFleet` holds the :class:`~twin.fleet.Fleet` loaded from the registry
and the registry's fleet version. Every change to sites or devices goes through
:meth:`LiveFleet.edit`: one transaction writes the change, its audit entry
(with the scheduled and pending commands of deleted devices cancelled and
named) and a new fleet version; then :meth:`LiveFleet.reload` builds the new
fleet and hands it to every listener (the runtime registers the twin's
arrays, the ingest decoder, the command publisher, the approvals, the alerts,
the history writer, the gateway credentials), and a ``fleet`` event goes out on
the WebSocket (relayed to the replicas). A process that did not make the change
(a replica, an ingest worker, a second API process) sees the new version in
its next poll (:meth:`LiveFleet.run`, every ``fleet_poll_s``) and reloads.

:class:`DeviceView` holds the registry's device records in memory, for ``GET
/devices`` without a database query: loaded once (one query), indexed by site,
answering the same filters, sort and paging as
:func:`adapters.registry.fleet.list_devices`; it reloads with the fleet.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from adapters.registry import Registry, RegistryError
from adapters.registry import audit as audit_repo
from adapters.registry import commands as cmd_repo
from adapters.registry import fleet as fleet_repo
from api.live.types import Clock, Notify
from api.settings import Settings
from twin.fleet import DEVICE_TYPES, Fleet, read_fleet
from twin.generator import generate_fleet

log = logging.getLogger(__name__)

SORTS: tuple[str, ...] = ("id", "site_id", "type", "status")
#: ``fn(fleet, version)``, called after the fleet changed.
FleetListener = Callable[[Fleet, int], None]


def load_or_import_fleet(registry: Registry, settings: Settings) -> Fleet:
    """The registry's fleet; an empty registry first gets the configured or generated one."""
    with registry.session() as s:
        fleet = fleet_repo.load_fleet(s)
    if fleet is not None:
        return fleet
    fleet = (read_fleet(settings.fleet_file) if settings.fleet_file is not None
             else generate_fleet(n_sites=settings.fleet_sites))
    with registry.session() as s:
        n = fleet_repo.import_fleet(s, fleet)
        fleet_repo.bump_fleet_version(s, time.time())
    log.info("registry was empty: imported %d sites and %d devices", fleet.n_sites, n)
    with registry.session() as s:
        loaded = fleet_repo.load_fleet(s)
    if loaded is None:
        raise RegistryError("the fleet just imported cannot be read back from the registry")
    return loaded


def registry_fleet(registry: Registry, leader_url: str | None = None) -> Fleet:
    """The registry's fleet for a process that never imports one (a replica, a worker).

    Raises
    ------
    RegistryError
        When the registry holds no fleet yet.
    """
    with registry.session() as s:
        fleet = fleet_repo.load_fleet(s)
    if fleet is None:
        where = f" ({leader_url})" if leader_url else ""
        raise RegistryError(f"the registry has no fleet yet: start the leader{where} first; "
                            "only the leader imports one")
    return fleet


class LiveFleet:
    """The fleet in force, its version and its edits.

    Parameters
    ----------
    registry : Registry
        Where sites and devices live.
    fleet : Fleet
        The fleet loaded at start.
    version : int
        Its fleet version (:func:`adapters.registry.fleet.fleet_version`).
    clock : callable
        ``() -> Unix s``.
    notify : callable
        ``notify(channel, message)`` for the WebSocket hub.
    """

    def __init__(self, registry: Registry, fleet: Fleet, version: int, *, clock: Clock,
                 notify: Notify):
        self.registry = registry
        self.clock = clock
        self.notify = notify
        self._fleet = fleet
        self.version = version
        self.devices = DeviceView(registry, max_age_s=300.0)  # reloads with each fleet version
        self._listeners: list[FleetListener] = []
        self._reload_lock = threading.Lock()

    @property
    def fleet(self) -> Fleet:
        """The fleet in force now."""
        return self._fleet

    def add_listener(self, fn: FleetListener) -> None:
        """Call ``fn(fleet, version)`` after each reload (in the order added)."""
        self._listeners.append(fn)

    # -- edits -----------------------------------------------------------------------
    def query(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one registry repository function ``fn(session, ...)`` in a transaction."""
        with self.registry.session() as s:
            return fn(s, *args, **kwargs)

    def edit(self, user: str, action: str, target: str, fn: Callable[..., Any], *args: Any
             ) -> Any:
        """Change sites or devices with ``fn(session, *args)``, record it in the audit log,
        raise the fleet version (one transaction), then reload the fleet here.

        The scheduled and pending commands of devices the change deletes are cancelled
        with the reason named, and listed in the audit entry.
        """
        now = self.clock()
        before = set(self._fleet.device_id.tolist())
        with self.registry.session() as s:
            out = fn(s, *args)
            s.flush()
            gone = sorted(before - fleet_repo.device_ids(s))
            cancelled = cmd_repo.cancel_device_commands(
                s, gone, now, f"device deleted by {user} ({action} {target})")
            detail: dict[str, Any] | None = None
            if gone:
                detail = {"deleted_devices": gone[:200],
                          "cancelled_commands": [c["id"] for c in cancelled][:1000]}
            audit_repo.record(s, now, user, action, target, detail)
            fleet_repo.bump_fleet_version(s, now)
        for rec in cancelled[:200]:
            self.notify("commands", {"event": "cancelled", "command": rec})
        self.reload()
        return out

    def reload(self, force: bool = False) -> bool:
        """Load the registry's fleet when its version differs from the one held (or
        ``force``); hand it to the listeners. Returns True when the fleet changed."""
        with self._reload_lock:
            with self.registry.session() as s:
                version = fleet_repo.fleet_version(s)
                if version == self.version and not force:
                    return False
                fleet = fleet_repo.load_fleet(s)
            if fleet is None:
                log.warning("the registry holds no site any more; keeping the fleet in force")
                return False
            self._fleet, self.version = fleet, version
            self.devices.invalidate()
            for fn in self._listeners:
                try:
                    fn(fleet, version)
                except Exception:
                    log.exception("a part failed to take fleet version %d", version)
        log.info("fleet version %d: %d sites, %d devices", version, fleet.n_sites,
                 fleet.n_devices)
        self.notify("fleet", {"event": "changed", "version": version,
                              "sites": fleet.n_sites, "devices": fleet.n_devices})
        return True

    async def run(self, poll_s: float) -> None:
        """Reload when another process changed the fleet (checked every ``poll_s`` [s])."""
        while True:
            await asyncio.sleep(poll_s)
            try:
                await asyncio.to_thread(self.reload)
            except Exception:
                log.exception("checking the fleet version failed; continuing")


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
