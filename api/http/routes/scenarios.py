"""``/scenarios``: submit a scenario file to run in the background, follow its runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from adapters.registry import RegistryError
from adapters.registry import scenarios as scen_repo
from adapters.storage import MAX_POINTS, StorageError
from api.http.deps import Live, Operator, Viewer, part
from api.live.scenario_jobs import ScenarioJobs
from scenarios.results import fleet_flows, open_results

router = APIRouter(tags=["scenarios"])

Jobs = Annotated[ScenarioJobs, Depends(part("scenarios"))]


@router.post("/scenarios", status_code=202,
             summary="Run a scenario (the YAML or JSON scenario file as the body; operator)",
             openapi_extra={"requestBody": {"content": {"application/yaml": {
                 "schema": {"type": "string"}}}, "required": True}})
async def submit(request: Request, user: Operator, jobs: Jobs) -> dict[str, Any]:
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the scenario file must be UTF-8 text") from None
    return jobs.submit(text, user.name)


@router.get("/scenarios", summary="Scenario runs, newest first")
def list_runs(user: Viewer, rt: Live, limit: int = Query(100, ge=1, le=1000)
              ) -> list[dict[str, Any]]:
    return rt.query(scen_repo.list_scenarios, limit)


@router.get("/scenarios/{run_id}", summary="One run: status, progress (0..1), KPIs")
def get_run(run_id: str, user: Viewer, rt: Live) -> dict[str, Any]:
    rec = rt.query(scen_repo.get_scenario, run_id)
    if rec is None:
        raise RegistryError(f"no scenario run {run_id!r}")
    return rec


@router.get("/scenarios/{run_id}/series", summary="A finished run's fleet flows over time "
            "[kW]: the sum over sites of every site flow, raw or averaged per bucket")
def get_series(run_id: str, user: Viewer, rt: Live, jobs: Jobs,
               every: float | None = Query(None, description="bucket [s] for averages; "
                                           "default: every step"),
               points: int | None = Query(None, ge=2, le=MAX_POINTS, description="without "
                                          "every: average whole steps down to at most this "
                                          "many points")) -> dict[str, Any]:
    rec = rt.query(scen_repo.get_scenario, run_id)
    if rec is None:
        raise RegistryError(f"no scenario run {run_id!r}")
    if rec["status"] != "done":
        raise ValueError(f"scenario run {run_id!r} is {rec['status']}; its series can be "
                         "read once it is done")
    if every is not None and points is not None:
        raise ValueError("give every or points, not both")
    try:
        ds = open_results(jobs.out_dir / run_id)
    except (StorageError, OSError) as exc:
        raise RegistryError(f"no results for this run: {exc}") from None
    t_s, flows, every_s = fleet_flows(ds, every, points)
    return {"run_id": run_id, "every_s": every_s, "t_s": t_s.tolist(),
            **{n: [None if v != v else round(v, 3) for v in f.tolist()]
               for n, f in flows.items()}}
