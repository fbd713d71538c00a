"""``/history`` (fleet and site power over time), ``/analytics`` (energy, money, CO2 per
period) and ``/reports``: all read from the one telemetry store, from the tier the range
and ``every`` call for; every answer states the resolution it was computed at."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.history import History
from api.analytics import energy, reports
from api.analytics.energy import AnalyticsError
from api.http.deps import Live, Viewer, part
from api.live.runtime import Runtime

router = APIRouter(tags=["analytics"])

_MEDIA = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet",
          "html": "text/html; charset=utf-8", "pdf": "application/pdf"}
_START = Query(None, description="Unix s; default end - 1 h")
_END = Query(None, description="Unix s; default now")
_EVERY = Query(None, description="bucket [s] for averages; default: the finest tier that "
               "gives at most 20,000 points")

Store = Annotated[History, Depends(part("history"))]


def _raw(rt: Runtime) -> dict[str, float]:
    return {"raw_step_s": rt.settings.history_flush_s, "raw_days": rt.settings.history_raw_days}


def _flows(rt: Runtime, start: float | None, end: float | None, every: float | None,
           site_id: str | None) -> dict[str, Any]:
    now = rt.clock()
    end_s = end if end is not None else now
    start_s = start if start is not None else end_s - 3600.0
    t_s, flows, plan = energy.power_flows(rt.history, rt.fleet.fleet, start_s, end_s,
                                          now_s=now, every_s=every, site_id=site_id, **_raw(rt))
    return {"start_s": start_s, "end_s": end_s, "every_s": every,
            "tier": plan.tier, "resolution_s": plan.resolution_s, "t_s": t_s.tolist(),
            **{k: [None if v != v else round(v, 4) for v in f.tolist()]
               for k, f in flows.items()}}


@router.get("/history/metrics", summary="The metrics the telemetry store holds")
def history_metrics(user: Viewer, history: Store) -> dict[str, Any]:
    return {"metrics": history.metrics()}


@router.get("/history/fleet", summary="Fleet power history [kW]: generation, consumption, "
            "battery (discharge +) and grid (export +), raw or averaged per bucket")
def fleet_history(user: Viewer, rt: Live, start: float | None = _START,
                  end: float | None = _END, every: float | None = _EVERY) -> dict[str, Any]:
    return {"site_id": None, **_flows(rt, start, end, every, None)}


@router.get("/history/sites/{site_id}", summary="One site's power history [kW]: generation, "
            "consumption, battery (discharge +) and grid (export +)")
def site_history(site_id: str, user: Viewer, rt: Live, start: float | None = _START,
                 end: float | None = _END, every: float | None = _EVERY) -> dict[str, Any]:
    return {"site_id": site_id, **_flows(rt, start, end, every, site_id)}


def _energy(rt: Runtime, start_s: float, end_s: float, every: str, scope: str,
            site_id: str | None) -> tuple[Any, energy.ReadPlan]:
    df, plan = energy.energy_table(rt.history, rt.fleet.fleet, start_s, end_s,
                                   rt.market.tariff, now_s=rt.clock(), every=every,
                                   scope=scope, site_id=site_id, **_raw(rt))
    return df, plan


@router.get("/analytics/energy", summary="Generation, consumption, import, export, "
            "self-consumption [kWh], cost, revenue [EUR], CO2 avoided [kg] per period")
async def energy_aggregates(user: Viewer, rt: Live,
                            start_s: float = Query(..., description="range start [Unix s]"),
                            end_s: float = Query(..., description="range end, excluded "
                                                 "[Unix s]"),
                            every: Literal["hour", "day", "month"] = "day",
                            scope: Literal["fleet", "site"] = "fleet", site_id: str | None = None,
                            format: Literal["json", "csv", "parquet"] = "json") -> Any:
    if not end_s > start_s:
        raise AnalyticsError(f"end_s ({end_s}) must be after start_s ({start_s})")
    df, plan = await run_in_threadpool(_energy, rt, start_s, end_s, every, scope, site_id)
    if format == "csv":
        return Response(energy.to_csv(df), media_type=_MEDIA["csv"])
    if format == "parquet":
        return Response(energy.to_parquet(df), media_type=_MEDIA["parquet"])
    return {"every": every, "scope": scope, "tier": plan.tier,
            "resolution_s": plan.resolution_s, "rows": energy.records(df)}


@router.get("/reports/{period}", summary="Report of a month (YYYY-MM), ISO week (YYYY-Www) or "
            "day (YYYY-MM-DD) as csv, html or pdf")
async def report(period: str, user: Viewer, rt: Live,
                 format: Literal["csv", "html", "pdf"] = "html") -> Response:
    def make() -> bytes:
        rep = reports.build_report(rt.history, rt.fleet.fleet, period, rt.market.tariff,
                                   now_s=rt.clock(), **_raw(rt))
        return reports.render(rep, format)

    body = await run_in_threadpool(make)
    return Response(body, media_type=_MEDIA[format], headers={
        "Content-Disposition": f'attachment; filename="report-{period}.{format}"'})
