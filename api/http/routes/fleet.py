"""``/sites``, ``/devices`` (read for all, change for admins) and device telemetry."""

from __future__ import annotations

import csv
import io
from functools import partial
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.registry import fleet as fleet_repo
from api.http.deps import Admin, Service, Viewer
from api.http.schemas import DeviceIn, SiteIn, SitePatch, drop_none

router = APIRouter(tags=["fleet"])

LIVE_NOTE = "registry updated; the live twin and MQTT ingest pick it up at the next restart"


def _not_found(kind: str, key: str) -> Exception:
    from adapters.registry import RegistryError

    return RegistryError(f"no {kind} {key!r}")


@router.get("/sites", summary="All sites")
def list_sites(user: Viewer, svc: Service) -> list[dict[str, Any]]:
    return svc.query(fleet_repo.list_sites)


@router.get("/sites/{site_id}", summary="One site")
def get_site(site_id: str, user: Viewer, svc: Service) -> dict[str, Any]:
    rec = svc.query(fleet_repo.get_site, site_id)
    if rec is None:
        raise _not_found("site", site_id)
    return rec


@router.post("/sites", status_code=201, summary="Create a site (admin)")
def create_site(body: SiteIn, user: Admin, svc: Service) -> dict[str, Any]:
    rec = svc.change(user.name, "site.create", f"site:{body.id}", fleet_repo.create_site,
                     body.model_dump())
    return {**rec, "note": LIVE_NOTE}


@router.patch("/sites/{site_id}", summary="Update a site (admin)")
def update_site(site_id: str, body: SitePatch, user: Admin, svc: Service) -> dict[str, Any]:
    rec = svc.change(user.name, "site.update", f"site:{site_id}", fleet_repo.update_site,
                     site_id, drop_none(body))
    return {**rec, "note": LIVE_NOTE}


@router.delete("/sites/{site_id}", summary="Delete a site and its devices (admin)")
def delete_site(site_id: str, user: Admin, svc: Service) -> dict[str, Any]:
    svc.change(user.name, "site.delete", f"site:{site_id}", fleet_repo.delete_site, site_id)
    return {"deleted": site_id, "note": LIVE_NOTE}


@router.get("/devices", summary="Devices: filter, search, sort, page")
async def list_devices(user: Viewer, svc: Service, site_id: str | None = None,
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
    page = svc.devices.list_loaded_devices(**query)
    if page is None:
        page = await run_in_threadpool(partial(svc.devices.list_devices, **query))
    items, total = page
    return {"items": items, "total": total, "offset": offset, "limit": limit}


@router.get("/devices/{device_id}", summary="One device with its live state")
def get_device(device_id: str, user: Viewer, svc: Service) -> dict[str, Any]:
    rec = svc.query(fleet_repo.get_device, device_id)
    if rec is None:
        raise _not_found("device", device_id)
    return {**rec, "live": svc.device_state(device_id)}


@router.post("/devices", status_code=201, summary="Create a device (admin)")
def create_device(body: DeviceIn, user: Admin, svc: Service) -> dict[str, Any]:
    rec = svc.change(user.name, "device.create", f"device:{body.id}", fleet_repo.create_device,
                     body.model_dump())
    return {**rec, "note": LIVE_NOTE}


@router.patch("/devices/{device_id}", summary="Update a device's parameters, status or tags "
              "(admin)")
def update_device(device_id: str, body: dict[str, Any], user: Admin, svc: Service
                  ) -> dict[str, Any]:
    rec = svc.change(user.name, "device.update", f"device:{device_id}",
                     fleet_repo.update_device, device_id, body)
    return {**rec, "note": LIVE_NOTE}


@router.delete("/devices/{device_id}", summary="Delete a device (admin)")
def delete_device(device_id: str, user: Admin, svc: Service) -> dict[str, Any]:
    svc.change(user.name, "device.delete", f"device:{device_id}", fleet_repo.delete_device,
               device_id)
    return {"deleted": device_id, "note": LIVE_NOTE}


@router.get("/devices/{device_id}/telemetry", summary="Telemetry history: raw or aggregated; "
            "JSON or CSV", response_model=None)
def telemetry(device_id: str, user: Viewer, svc: Service,
              metric: Literal["p_kw", "soc"] = "p_kw",
              start: float | None = Query(None, description="Unix s; default end - 1 h"),
              end: float | None = Query(None, description="Unix s; default now"),
              every: float | None = Query(None, gt=0, description="bucket [s] for averages"),
              format: Literal["json", "csv"] = "json") -> dict[str, Any] | Response:
    end_s = end if end is not None else svc.clock()
    start_s = start if start is not None else end_s - 3600.0
    times, values = svc.history.query(device_id, metric, start_s, end_s, every)
    if format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["t_s", metric])
        for t, v in zip(times.tolist(), values.tolist(), strict=True):
            w.writerow([t, "" if v != v else v])
        return Response(buf.getvalue(), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{device_id}-{metric}.csv"'})
    return {"device_id": device_id, "metric": metric, "start_s": start_s, "end_s": end_s,
            "every_s": every, "t_s": times.tolist(),
            "values": [None if v != v else v for v in values.tolist()]}
