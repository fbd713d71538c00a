"""``/sites``, ``/devices`` (read for all, change for admins) and device telemetry.

A change to sites or devices takes effect in the running service at once
(:meth:`api.live.fleet.LiveFleet.edit`): the twin's arrays, the ingest, the
command publisher, the approvals, the alerts and the planner take the new fleet,
and other processes reload it within ``ECOGRID_FLEET_POLL_S``.
"""

from __future__ import annotations

import csv
import io
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.history import History
from adapters.registry import RegistryError
from adapters.registry import fleet as fleet_repo
from api.http.deps import Admin, Viewer, part
from api.http.schemas import DeviceIn, SiteIn, SitePatch, drop_none
from api.live.fleet import LiveFleet
from api.live.types import Clock
from twin.telemetry import Telemetry

router = APIRouter(tags=["fleet"])

Fleet = Annotated[LiveFleet, Depends(part("fleet"))]


def _not_found(kind: str, key: str) -> Exception:
    return RegistryError(f"no {kind} {key!r}")


def _applied(rec: dict[str, Any], fleet: LiveFleet) -> dict[str, Any]:
    return {**rec, "fleet_version": fleet.version}


@router.get("/sites", summary="All sites")
def list_sites(user: Viewer, fleet: Fleet) -> list[dict[str, Any]]:
    return fleet.query(fleet_repo.list_sites)


@router.get("/sites/{site_id}", summary="One site")
def get_site(site_id: str, user: Viewer, fleet: Fleet) -> dict[str, Any]:
    rec = fleet.query(fleet_repo.get_site, site_id)
    if rec is None:
        raise _not_found("site", site_id)
    return rec


@router.post("/sites", status_code=201, summary="Create a site (admin); live at once")
def create_site(body: SiteIn, user: Admin, fleet: Fleet) -> dict[str, Any]:
    rec = fleet.edit(user.name, "site.create", f"site:{body.id}", fleet_repo.create_site,
                     body.model_dump())
    return _applied(rec, fleet)


@router.patch("/sites/{site_id}", summary="Update a site (admin); live at once")
def update_site(site_id: str, body: SitePatch, user: Admin, fleet: Fleet) -> dict[str, Any]:
    rec = fleet.edit(user.name, "site.update", f"site:{site_id}", fleet_repo.update_site,
                     site_id, drop_none(body))
    return _applied(rec, fleet)


@router.delete("/sites/{site_id}", summary="Delete a site and its devices (admin); their "
               "scheduled and pending commands are cancelled")
def delete_site(site_id: str, user: Admin, fleet: Fleet) -> dict[str, Any]:
    fleet.edit(user.name, "site.delete", f"site:{site_id}", fleet_repo.delete_site, site_id)
    return {"deleted": site_id, "fleet_version": fleet.version}


@router.get("/devices", summary="Devices: filter, search, sort, page")
async def list_devices(user: Viewer, fleet: Fleet, site_id: str | None = None,
                       type: Literal["pv", "battery", "ev_charger", "load"] | None = None,
                       status: str | None = None, tag: str | None = None,
                       q: str | None = Query(None, description="text search in device and "
                                             "site ids"),
                       sort: str = Query("id", description="id, site_id, type or status; "
                                         "prefix - for descending"),
                       offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)
                       ) -> dict[str, Any]:
    # From the registry's devices held in memory, on the loop: no database query per
    # request; only when they are not loaded (first use, after a change) does a thread wait
    # for the database.
    query: dict[str, Any] = {"site_id": site_id, "type": type, "status": status, "tag": tag, "q": q,
                             "sort": sort, "offset": offset, "limit": limit}
    page = fleet.devices.list_loaded_devices(**query)
    if page is None:
        page = await run_in_threadpool(partial(fleet.devices.list_devices, **query))
    items, total = page
    return {"items": items, "total": total, "offset": offset, "limit": limit}


@router.get("/devices/{device_id}", summary="One device with its live state")
def get_device(device_id: str, user: Viewer, fleet: Fleet,
               telemetry: Annotated[Telemetry, Depends(part("telemetry"))]) -> dict[str, Any]:
    rec = fleet.query(fleet_repo.get_device, device_id)
    if rec is None:
        raise _not_found("device", device_id)
    return {**rec, "live": telemetry.device_state(device_id) or {}}


@router.post("/devices", status_code=201, summary="Create a device (admin); live at once")
def create_device(body: DeviceIn, user: Admin, fleet: Fleet) -> dict[str, Any]:
    rec = fleet.edit(user.name, "device.create", f"device:{body.id}", fleet_repo.create_device,
                     body.model_dump())
    return _applied(rec, fleet)


@router.patch("/devices/{device_id}", summary="Update a device's parameters, status or tags "
              "(admin); live at once")
def update_device(device_id: str, body: dict[str, Any], user: Admin, fleet: Fleet
                  ) -> dict[str, Any]:
    rec = fleet.edit(user.name, "device.update", f"device:{device_id}",
                     fleet_repo.update_device, device_id, body)
    return _applied(rec, fleet)


@router.delete("/devices/{device_id}", summary="Delete a device (admin); its scheduled and "
               "pending commands are cancelled")
def delete_device(device_id: str, user: Admin, fleet: Fleet) -> dict[str, Any]:
    fleet.edit(user.name, "device.delete", f"device:{device_id}", fleet_repo.delete_device,
               device_id)
    return {"deleted": device_id, "fleet_version": fleet.version}


@router.get("/devices/{device_id}/telemetry", summary="Telemetry history of one metric: raw "
            "or aggregated, from the tier the range and every call for; JSON or CSV",
            response_model=None)
def telemetry(device_id: str, user: Viewer,
              history: Annotated[History, Depends(part("history"))],
              clock: Annotated[Clock, Depends(part("clock"))],
              metric: str = Query("p_kw", description="any stored metric: p_kw, q_kvar, v, "
                                  "soc, e_kwh, temp_c, online, ... (GET /history/metrics)"),
              start: float | None = Query(None, description="Unix s; default end - 1 h"),
              end: float | None = Query(None, description="Unix s; default now"),
              every: float | None = Query(None, gt=0, description="bucket [s] for averages"),
              stat: Literal["mean", "min", "max", "last"] = "mean",
              format: Literal["json", "csv"] = "json") -> dict[str, Any] | Response:
    end_s = end if end is not None else clock()
    start_s = start if start is not None else end_s - 3600.0
    got = history.read(start_s, end_s, metric, devices=[device_id], every_s=every, stat=stat,
                       now_s=clock())
    times, values = got.t_s, got.values[:, 0]
    if format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["t_s", metric])
        for t, v in zip(times.tolist(), values.tolist(), strict=True):
            w.writerow([t, "" if v != v else v])
        return Response(buf.getvalue(), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{device_id}-{metric}.csv"'})
    return {"device_id": device_id, "metric": metric, "stat": got.stat, "start_s": start_s,
            "end_s": end_s, "every_s": every, "tier": got.tier,
            "resolution_s": got.resolution_s, "t_s": times.tolist(),
            "values": [None if v != v else v for v in values.tolist()]}
