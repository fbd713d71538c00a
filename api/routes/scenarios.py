"""``/scenarios``: submit a scenario file to run in the background, follow its runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from adapters.registry import RegistryError
from adapters.registry import scenarios as scen_repo
from api.deps import Operator, Service, Viewer

router = APIRouter(tags=["scenarios"])


@router.post("/scenarios", status_code=202,
             summary="Run a scenario (the YAML or JSON scenario file as the body; operator)",
             openapi_extra={"requestBody": {"content": {"application/yaml": {
                 "schema": {"type": "string"}}}, "required": True}})
async def submit(request: Request, user: Operator, svc: Service) -> dict[str, Any]:
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the scenario file must be UTF-8 text") from None
    return svc.scenarios.submit(text, user.name)


@router.get("/scenarios", summary="Scenario runs, newest first")
def list_runs(user: Viewer, svc: Service, limit: int = Query(100, ge=1, le=1000)
              ) -> list[dict[str, Any]]:
    return svc.query(scen_repo.list_scenarios, limit)


@router.get("/scenarios/{run_id}", summary="One run: status, progress (0..1), KPIs")
def get_run(run_id: str, user: Viewer, svc: Service) -> dict[str, Any]:
    rec = svc.query(scen_repo.get_scenario, run_id)
    if rec is None:
        raise RegistryError(f"no scenario run {run_id!r}")
    return rec
