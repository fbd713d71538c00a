"""``/history``: fleet and site power (generation, consumption, battery, grid) over time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from api.history import power_flows
from api.http.deps import Service, Viewer
from api.live.service import LiveService

router = APIRouter(tags=["history"])

_START = Query(None, description="Unix s; default end - 1 h")
_END = Query(None, description="Unix s; default now")
_EVERY = Query(None, description="bucket [s] for averages; default: every snapshot")


def _flows(svc: LiveService, start: float | None, end: float | None, every: float | None,
           site_id: str | None) -> dict[str, Any]:
    end_s = end if end is not None else svc.clock()
    start_s = start if start is not None else end_s - 3600.0
    t_s, flows = power_flows(svc.history, svc.fleet, start_s, end_s, every, site_id)
    return {"start_s": start_s, "end_s": end_s, "every_s": every, "t_s": t_s.tolist(),
            **{k: [None if v != v else round(v, 4) for v in f.tolist()]
               for k, f in flows.items()}}


@router.get("/history/fleet", summary="Fleet power history [kW]: generation, consumption, "
            "battery (discharge +) and grid (export +), raw or averaged per bucket")
def fleet_history(user: Viewer, svc: Service, start: float | None = _START,
                  end: float | None = _END, every: float | None = _EVERY) -> dict[str, Any]:
    return {"site_id": None, **_flows(svc, start, end, every, None)}


@router.get("/history/sites/{site_id}", summary="One site's power history [kW]: generation, "
            "consumption, battery (discharge +) and grid (export +)")
def site_history(site_id: str, user: Viewer, svc: Service, start: float | None = _START,
                 end: float | None = _END, every: float | None = _EVERY) -> dict[str, Any]:
    return {"site_id": site_id, **_flows(svc, start, end, every, site_id)}
