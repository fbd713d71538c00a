"""``/scenarios``: submit a scenario file to run in the background, follow its runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request

from adapters.registry import RegistryError
from adapters.registry import scenarios as scen_repo
from api.history import MAX_POINTS, bucket_means, check_range
from api.http.deps import Operator, Service, Viewer

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


@router.get("/scenarios/{run_id}/series", summary="A finished run's fleet flows over time "
            "[kW]: the sum over sites of every site flow, raw or averaged per bucket")
def get_series(run_id: str, user: Viewer, svc: Service,
               every: float | None = Query(None, description="bucket [s] for averages; "
                                           "default: every step"),
               points: int | None = Query(None, ge=2, le=MAX_POINTS, description="without "
                                          "every: average whole steps down to at most this "
                                          "many points")) -> dict[str, Any]:
    rec = svc.query(scen_repo.get_scenario, run_id)
    if rec is None:
        raise RegistryError(f"no scenario run {run_id!r}")
    if rec["status"] != "done":
        raise ValueError(f"scenario run {run_id!r} is {rec['status']}; its series can be "
                         "read once it is done")
    if every is not None and points is not None:
        raise ValueError("give every or points, not both")
    return {"run_id": run_id, **fleet_flow_series(svc.scenarios.out_dir / run_id, every, points)}


def fleet_flow_series(run_dir: Path, every_s: float | None = None,
                      max_points: int | None = None) -> dict[str, Any]:
    """Fleet totals of a run's site flows (``twin.state.SITE_FLOWS``) [kW] over time.

    Parameters
    ----------
    run_dir : Path
        The run's folder (holding ``results.zarr``).
    every_s : float, optional
        Bucket length [s] for averages (times are the bucket starts); None: every step.
    max_points : int, optional
        Without ``every_s``: buckets of whole steps, so that at most this many remain.

    Returns
    -------
    dict
        ``t_s`` [Unix s], ``every_s`` and one list per flow name [kW] (None for NaN).
    """
    from adapters.storage import StorageError, unix_seconds
    from scenarios.results import open_results
    from twin.state import SITE_FLOWS

    try:
        ds = open_results(run_dir)
    except (StorageError, OSError) as exc:
        raise RegistryError(f"no results for this run: {exc}") from None
    t_s = unix_seconds(ds["time"].values).astype(np.float64)
    names = [n for n in SITE_FLOWS if n in ds]
    series = [ds[n].sum("site").values.astype(np.float64) for n in names]
    if every_s is None and max_points is not None and len(t_s) > max(max_points, 1):
        step_s = float(t_s[1] - t_s[0])
        every_s = step_s * int(np.ceil(len(t_s) / max_points))
    if every_s is not None:
        if len(t_s):
            check_range(float(t_s[0]), float(t_s[-1]) + every_s, every_s)
            t_s, series = bucket_means(t_s, series, float(t_s[0]), every_s)
    elif len(t_s) > MAX_POINTS:
        raise ValueError(f"{len(t_s)} steps; at most {MAX_POINTS} without every: give every "
                         "(a bucket length [s])")
    return {"every_s": every_s, "t_s": t_s.tolist(),
            **{n: [None if v != v else round(v, 3) for v in s.tolist()]
               for n, s in zip(names, series, strict=True)}}
