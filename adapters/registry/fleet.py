"""Sites, feeders and devices in the registry, and the bridge to :class:`twin.fleet.Fleet`.

Records have the shape of :meth:`twin.fleet.Fleet.to_records` plus a
``status`` and ``tags`` per device; :func:`import_fleet` stores a fleet,
:func:`load_fleet` rebuilds one (validated by ``Fleet.from_records``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from adapters.registry.db import RegistryError
from adapters.registry.models import DeviceRow, FeederRow, FleetStateRow, SiteRow
from twin.fleet import DEVICE_TYPES, Fleet

DEVICE_STATUSES: tuple[str, ...] = ("active", "inactive", "maintenance", "offline")
_SITE_FIELDS = ("name", "lat_deg", "lon_deg", "timezone", "import_limit_kw", "export_limit_kw",
                "feeder_id", "status", "tags")
_DEVICE_SORTS = {"id": DeviceRow.id, "site_id": DeviceRow.site_id, "type": DeviceRow.type,
                 "status": DeviceRow.status}


def site_record(r: SiteRow) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "lat_deg": r.lat_deg, "lon_deg": r.lon_deg,
            "timezone": r.timezone, "import_limit_kw": r.import_limit_kw,
            "export_limit_kw": r.export_limit_kw, "feeder_id": r.feeder_id, "status": r.status,
            "tags": list(r.tags or [])}


def device_record(r: Any) -> dict[str, Any]:
    """A device as a dict, from its ORM object or a Core row of the ``devices`` table."""
    return {"id": r.id, "site_id": r.site_id, "type": r.type, **r.params, "status": r.status,
            "tags": list(r.tags or [])}


def _device_params(rec: dict[str, Any]) -> dict[str, Any]:
    skip = {"id", "site_id", "type", "status", "tags"}
    return {k: v for k, v in rec.items() if k not in skip}


def fleet_version(s: Session) -> int:
    """The fleet's version: 0 before the first change, then raised by every change."""
    row = s.get(FleetStateRow, 1)
    return 0 if row is None else int(row.version)


def bump_fleet_version(s: Session, t_s: float) -> int:
    """Raise the fleet's version (in the transaction of the change); returns the new one."""
    row = s.get(FleetStateRow, 1, with_for_update=True)
    if row is None:
        row = FleetStateRow(id=1, version=0, changed_s=t_s)
        s.add(row)
    row.version += 1
    row.changed_s = t_s
    s.flush()
    return int(row.version)


def import_fleet(s: Session, fleet: Fleet) -> int:
    """Store every feeder, site and device of ``fleet`` (existing ids are replaced).

    Returns the number of devices stored. The caller raises the fleet's version.
    """
    recs = fleet.to_records()
    for f in recs["feeders"]:
        s.merge(FeederRow(id=f["id"], import_limit_kw=f["import_limit_kw"],
                       export_limit_kw=f["export_limit_kw"]))
    s.flush()
    for r in recs["sites"]:
        s.merge(SiteRow(**{**r, "tags": []}))
    s.flush()
    for d in recs["devices"]:
        s.merge(DeviceRow(id=d["id"], site_id=d["site_id"], type=d["type"], params=_device_params(d),
                       status="active", tags=[]))
    return len(recs["devices"])


def load_fleet(s: Session) -> Fleet | None:
    """Rebuild the fleet from the registry; None when it holds no site."""
    sites = [site_record(r) for r in s.scalars(select(SiteRow).order_by(SiteRow.id))]
    if not sites:
        return None
    feeders = [{"id": f.id, "import_limit_kw": f.import_limit_kw,
                "export_limit_kw": f.export_limit_kw} for f in s.scalars(select(FeederRow))]
    devices = []
    for r in s.scalars(select(DeviceRow).order_by(DeviceRow.id)):
        rec = device_record(r)
        rec.pop("status")
        rec.pop("tags")
        devices.append(rec)
    for site in sites:
        site.pop("tags")
    return Fleet.from_records(sites, devices, feeders)


# -- sites ----------------------------------------------------------------------
def list_sites(s: Session) -> list[dict[str, Any]]:
    return [site_record(r) for r in s.scalars(select(SiteRow).order_by(SiteRow.id))]


def get_site(s: Session, site_id: str) -> dict[str, Any] | None:
    r = s.get(SiteRow, site_id)
    return None if r is None else site_record(r)


def _validate_site(rec: dict[str, Any]) -> None:
    # Reuse the fleet's own validation on a one-site fleet (no devices).
    probe = {k: v for k, v in rec.items() if k not in ("tags", "feeder_id")}
    Fleet.from_records([probe], [])


def create_site(s: Session, rec: dict[str, Any]) -> dict[str, Any]:
    """Add a site; ``feeder_id`` defaults to a one-site feeder named like the site."""
    if s.get(SiteRow, rec["id"]) is not None:
        raise RegistryError(f"site {rec['id']!r} already exists")
    _validate_site(rec)
    feeder_id = rec.get("feeder_id") or rec["id"]
    if s.get(FeederRow, feeder_id) is None:
        if rec.get("feeder_id"):
            raise RegistryError(f"unknown feeder {feeder_id!r}")
        s.add(FeederRow(id=feeder_id, import_limit_kw=None, export_limit_kw=None))
        s.flush()
    row = SiteRow(id=rec["id"], name=rec.get("name") or rec["id"], lat_deg=rec["lat_deg"],
               lon_deg=rec["lon_deg"], timezone=rec.get("timezone", "UTC"),
               import_limit_kw=rec["import_limit_kw"], export_limit_kw=rec["export_limit_kw"],
               feeder_id=feeder_id, status=rec.get("status", "active"),
               tags=list(rec.get("tags") or []))
    s.add(row)
    s.flush()
    return site_record(row)


def update_site(s: Session, site_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    row = s.get(SiteRow, site_id)
    if row is None:
        raise RegistryError(f"no site {site_id!r}")
    unknown = set(changes) - set(_SITE_FIELDS)
    if unknown:
        raise RegistryError(f"site fields {sorted(unknown)} cannot be changed")
    merged = {**site_record(row), **changes}
    _validate_site(merged)
    if "feeder_id" in changes and s.get(FeederRow, changes["feeder_id"]) is None:
        raise RegistryError(f"unknown feeder {changes['feeder_id']!r}")
    for k, v in changes.items():
        setattr(row, k, v)
    return site_record(row)


def delete_site(s: Session, site_id: str) -> None:
    row = s.get(SiteRow, site_id)
    if row is None:
        raise RegistryError(f"no site {site_id!r}")
    s.execute(DeviceRow.__table__.delete().where(DeviceRow.site_id == site_id))
    s.delete(row)


# -- devices --------------------------------------------------------------------
def list_devices(s: Session, *, site_id: str | None = None, type: str | None = None,
                 status: str | None = None, tag: str | None = None, q: str | None = None,
                 sort: str = "id", offset: int = 0, limit: int = 100
                 ) -> tuple[list[dict[str, Any]], int]:
    """Devices matching the filters, sorted and paged; returns ``(page, total)``.

    ``sort`` is a column name (``id``, ``site_id``, ``type``, ``status``), with a
    leading ``-`` for descending order; ``q`` searches the id and site id.
    """
    desc = sort.startswith("-")
    column = _DEVICE_SORTS.get(sort.lstrip("-"))
    if column is None:
        raise RegistryError(f"sort {sort!r}: use one of {sorted(_DEVICE_SORTS)} (prefix - "
                            "for descending)")
    cond = []
    if site_id:
        cond.append(DeviceRow.site_id == site_id)
    if type:
        if type not in DEVICE_TYPES:
            raise RegistryError(f"type {type!r} is not one of {DEVICE_TYPES}")
        cond.append(DeviceRow.type == type)
    if status:
        cond.append(DeviceRow.status == status)
    if q:
        like = f"%{q}%"
        cond.append(or_(DeviceRow.id.ilike(like), DeviceRow.site_id.ilike(like)))
    query = select(DeviceRow.__table__).where(*cond)  # Core rows: no ORM object per device
    rows = s.execute(query.order_by(column.desc() if desc else column, DeviceRow.id)).all()
    if tag:
        rows = [r for r in rows if tag in (r.tags or [])]
    total = len(rows)
    return [device_record(r) for r in rows[offset:offset + limit]], total


def device_ids(s: Session) -> set[str]:
    """The ids of every device in the registry."""
    return set(s.scalars(select(DeviceRow.id)))


def count_devices(s: Session) -> int:
    return int(s.scalar(select(func.count()).select_from(DeviceRow)) or 0)


def get_device(s: Session, device_id: str) -> dict[str, Any] | None:
    r = s.get(DeviceRow, device_id)
    return None if r is None else device_record(r)


def _validate_device(s: Session, rec: dict[str, Any]) -> None:
    site = s.get(SiteRow, rec.get("site_id"))
    if site is None:
        raise RegistryError(f"device {rec.get('id')!r}: unknown site {rec.get('site_id')!r}")
    probe = {k: v for k, v in rec.items() if k not in ("status", "tags")}
    site_rec = site_record(site)
    site_rec.pop("tags")
    site_rec.pop("feeder_id")
    Fleet.from_records([site_rec], [probe])
    status = rec.get("status", "active")
    if status not in DEVICE_STATUSES:
        raise RegistryError(f"device status {status!r} is not one of {DEVICE_STATUSES}")


def create_device(s: Session, rec: dict[str, Any]) -> dict[str, Any]:
    if s.get(DeviceRow, rec["id"]) is not None:
        raise RegistryError(f"device {rec['id']!r} already exists")
    _validate_device(s, rec)
    row = DeviceRow(id=rec["id"], site_id=rec["site_id"], type=rec["type"],
                 params=_device_params(rec), status=rec.get("status", "active"),
                 tags=list(rec.get("tags") or []))
    s.add(row)
    s.flush()
    return device_record(row)


def update_device(s: Session, device_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    row = s.get(DeviceRow, device_id)
    if row is None:
        raise RegistryError(f"no device {device_id!r}")
    if "id" in changes or "type" in changes:
        raise RegistryError("a device's id and type cannot be changed")
    merged = {**device_record(row), **changes}
    _validate_device(s, merged)
    row.site_id = merged["site_id"]
    row.status = merged["status"]
    row.tags = list(merged["tags"] or [])
    row.params = _device_params(merged)
    return device_record(row)


def delete_device(s: Session, device_id: str) -> None:
    row = s.get(DeviceRow, device_id)
    if row is None:
        raise RegistryError(f"no device {device_id!r}")
    s.delete(row)
