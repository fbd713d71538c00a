"""KPIs, plans and their approval, setpoints and commands, the audit log.

Each handler takes the one part it needs (``Depends(part(...))``): the approvals
(plans, setpoints, commands), the planning (a plan now), the KPIs; on a replica
the writes never get here (they go to the leader).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from adapters.registry import RegistryError
from adapters.registry import audit as audit_repo
from adapters.registry import commands as cmd_repo
from adapters.registry import plans as plan_repo
from api.http.deps import Admin, Live, Operator, Viewer, part
from api.http.schemas import GroupSetpointIn, RejectIn, SetpointIn
from api.live.approvals import Approvals
from api.live.hub import dumps
from api.live.ledger import LiveKpis
from api.live.planning import PlanRequests
from api.live.replica import RelayedKpis

router = APIRouter(tags=["operations"])

Approve = Annotated[Approvals, Depends(part("approvals"))]
Plans = Annotated[PlanRequests, Depends(part("planning"))]
Kpis = Annotated[LiveKpis | RelayedKpis, Depends(part("kpis"))]


@router.get("/kpis", summary="Fleet KPIs: sites, capacity [MW], live generation and "
            "consumption [MW], CO2 avoided [t] and revenue [EUR] today and to date")
async def kpis(user: Viewer, figures: Kpis) -> dict[str, Any]:
    # The service recomputes the figures every second; compute here only when they are stale.
    return figures.cached() or await run_in_threadpool(figures.refresh)


@router.post("/plans", status_code=201, summary="Ask for a plan now (operator)")
async def request_plan(user: Operator, plans: Plans) -> dict[str, Any]:
    return await plans.request_async(user.name)


@router.get("/plans", summary="Plans, newest first")
def list_plans(user: Viewer, rt: Live, status: str | None = None,
               limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    return rt.query(plan_repo.list_plans, status, limit)


@router.get("/plans/{plan_id}", summary="One plan with its setpoint series",
            response_model=dict[str, Any])
def get_plan(plan_id: str, user: Viewer, rt: Live,
             setpoints: bool = Query(True, description="include the setpoint series")
             ) -> Response:
    rec = rt.query(plan_repo.get_plan, plan_id, setpoints)
    if rec is None:
        raise RegistryError(f"no plan {plan_id!r}")
    # A plan's series are ~10^6 numbers for the reference fleet: orjson, not the generic
    # encoder (which took a second of the service's GIL per request).
    return Response(dumps(rec), media_type="application/json")


@router.post("/plans/{plan_id}/approve", summary="Approve a proposed plan (operator)")
def approve(plan_id: str, user: Operator, approvals: Approve) -> dict[str, Any]:
    return approvals.approve(plan_id, user.name)


@router.post("/plans/{plan_id}/reject", summary="Reject a proposed plan (operator)")
def reject(plan_id: str, user: Operator, approvals: Approve, body: RejectIn | None = None
           ) -> dict[str, Any]:
    return approvals.reject(plan_id, user.name, reason=body.reason if body else None)


@router.post("/devices/{device_id}/setpoint", status_code=201,
             summary="Manual setpoint [kW]: now, at a time, or a series (operator)")
def setpoint(device_id: str, body: SetpointIn, user: Operator, approvals: Approve
             ) -> dict[str, Any]:
    if body.values_kw is not None:
        at = body.at_s if isinstance(body.at_s, list) else None
        cmds = approvals.setpoint(device_id, 0.0, user.name, at_s=at, values_kw=body.values_kw)
    else:
        if body.value_kw is None:
            raise ValueError("give value_kw (or values_kw with at_s for a series)")
        if isinstance(body.at_s, list):
            raise ValueError("at_s is a list only for a series (values_kw)")
        at = [body.at_s] if body.at_s is not None else None
        cmds = approvals.setpoint(device_id, body.value_kw, user.name, at_s=at)
    return {"commands": cmds}


@router.post("/groups/setpoint", status_code=201,
             summary="The same setpoint to a group: by site, feeder, type or tag (operator)")
def group_setpoint(body: GroupSetpointIn, user: Operator, approvals: Approve
                   ) -> dict[str, Any]:
    selector = {k: v for k, v in body.model_dump().items()
                if k in ("site_id", "feeder_id", "type", "tag") and v is not None}
    if not selector:
        raise ValueError("choose the group: give site_id, feeder_id, type and/or tag")
    cmds = approvals.group_setpoint(selector, body.value_kw, user.name, body.at_s)
    return {"count": len(cmds), "commands": cmds[:100]}


@router.get("/commands", summary="Commands, newest first")
def list_commands(user: Viewer, rt: Live, device_id: str | None = None,
                  status: str | None = None, plan_id: str | None = None,
                  site_id: str | None = None,
                  limit: int = Query(200, ge=1, le=5000)) -> list[dict[str, Any]]:
    if site_id is not None and site_id not in rt.fleet.fleet.site_row:
        raise RegistryError(f"no site {site_id!r}")
    return rt.query(cmd_repo.list_commands, site_id=site_id, device_id=device_id,
                          status=status, plan_id=plan_id, limit=limit)


@router.get("/commands/{command_id}", summary="One command")
def get_command(command_id: int, user: Viewer, rt: Live) -> dict[str, Any]:
    rec = rt.query(cmd_repo.get_command, command_id)
    if rec is None:
        raise RegistryError(f"no command {command_id}")
    return rec


@router.post("/commands/{command_id}/cancel",
             summary="Cancel a scheduled setpoint before it goes out (operator)")
def cancel_command(command_id: int, user: Operator, approvals: Approve) -> dict[str, Any]:
    return approvals.cancel(command_id, user.name)


@router.get("/audit", summary="The audit log (admin)")
def audit(user: Admin, rt: Live, by: str | None = None, action: str | None = None,
          limit: int = Query(100, ge=1, le=5000)) -> list[dict[str, Any]]:
    return rt.query(audit_repo.entries, user=by, action=action, limit=limit)
