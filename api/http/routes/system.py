"""``/healthz`` and ``/metrics`` (outside ``/api/v1``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api.http.deps import Live
from api.live.metrics import CONTENT_TYPE

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Broker connection, database, last ingest, last plan")
def healthz(rt: Live) -> Any:
    body = rt.health()
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)


@router.get("/metrics", summary="Prometheus metrics (text format)")
def metrics(rt: Live) -> Response:
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE)
