"""Energy analytics (per site or fleet, per hour/day/month) and reports, from the history."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api import analytics as an
from api import reports as rp
from api.http.deps import Service, Viewer

router = APIRouter(tags=["analytics"])

_MEDIA = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet",
          "html": "text/html; charset=utf-8", "pdf": "application/pdf"}


def _energy(svc: Any, start_s: float, end_s: float, every: str, scope: str,
            site_id: str | None) -> Any:
    if not end_s > start_s:
        raise an.AnalyticsError(f"end_s ({end_s}) must be after start_s ({start_s})")
    if end_s - start_s > 400 * 86400:
        raise an.AnalyticsError("a range is at most 400 days")
    t, p, _ = an.read_history(svc.settings.history_dir(), start_s, end_s)
    return an.aggregate(svc.fleet, t, p, rp.tariff_from_settings(svc.settings), every=every,
                        scope=scope, site_id=site_id,
                        max_gap_s=3 * svc.settings.history_flush_s)


@router.get("/analytics/energy", summary="Generation, consumption, import, export, "
            "self-consumption [kWh], cost, revenue [EUR], CO2 avoided [kg] per period")
async def energy(user: Viewer, svc: Service,
                 start_s: float = Query(..., description="range start [Unix s]"),
                 end_s: float = Query(..., description="range end, excluded [Unix s]"),
                 every: Literal["hour", "day", "month"] = "day",
                 scope: Literal["fleet", "site"] = "fleet", site_id: str | None = None,
                 format: Literal["json", "csv", "parquet"] = "json") -> Any:
    df = await run_in_threadpool(_energy, svc, start_s, end_s, every, scope, site_id)
    if format == "csv":
        return Response(an.to_csv(df), media_type=_MEDIA["csv"])
    if format == "parquet":
        return Response(an.to_parquet(df), media_type=_MEDIA["parquet"])
    return {"every": every, "scope": scope, "rows": an.records(df)}


@router.get("/reports/{period}", summary="Report of a month (YYYY-MM), ISO week (YYYY-Www) or "
            "day (YYYY-MM-DD) as csv, html or pdf")
async def report(period: str, user: Viewer, svc: Service,
                 format: Literal["csv", "html", "pdf"] = "html") -> Response:
    def make() -> bytes:
        rep = rp.build_report(svc.fleet, svc.settings.history_dir(), period,
                              rp.tariff_from_settings(svc.settings),
                              max_gap_s=3 * svc.settings.history_flush_s)
        return rp.render(rep, format)

    body = await run_in_threadpool(make)
    return Response(body, media_type=_MEDIA[format], headers={
        "Content-Disposition": f'attachment; filename="report-{period}.{format}"'})
