"""``/healthz`` and ``/metrics`` (outside ``/api/v1``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api.http.deps import Service
from api.live.metrics import CONTENT_TYPE

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Broker connection, database, last ingest, last plan")
def healthz(svc: Service) -> Any:
    body = svc.health()
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)


@router.get("/metrics", summary="Prometheus metrics (text format)")
def metrics(svc: Service) -> Response:
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)
