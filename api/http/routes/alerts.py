"""Alerts (operators acknowledge them), alert rules (admins manage them; everyone signed in
reads them) and alert life cycles."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from adapters.registry import alerts as alert_repo
from api.alerts.loop import AlertLoop
from api.http.deps import Admin, Live, Operator, Viewer, part
from api.live.runtime import Runtime

router = APIRouter(tags=["alerts"])

Op = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
DeviceType = Literal["pv", "battery", "ev_charger", "load"]


class RuleIn(BaseModel):
    """A threshold rule: ``metric op threshold`` held for ``duration_s`` opens an alert."""

    name: str = Field(min_length=1, max_length=200)
    metric: str = Field(min_length=1, max_length=64, description="telemetry metric, e.g. "
                        "p_kw, soc, temp_c, v")
    op: Op
    threshold: float
    duration_s: float = Field(0.0, ge=0, description="how long it must hold [s]")
    severity: Severity = "warning"
    site_id: str | None = None
    device_id: str | None = None
    device_type: DeviceType | None = None
    enabled: bool = True


class RulePatch(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    metric: str | None = Field(None, min_length=1, max_length=64)
    op: Op | None = None
    threshold: float | None = None
    duration_s: float | None = Field(None, ge=0)
    severity: Severity | None = None
    site_id: str | None = None
    device_id: str | None = None
    device_type: DeviceType | None = None
    enabled: bool | None = None


def _check_scope(rt: Runtime, fields: dict[str, Any]) -> None:
    fleet = rt.fleet.fleet
    if fields.get("site_id") and fields["site_id"] not in fleet.site_row:
        raise ValueError(f"site_id {fields['site_id']!r} is not a site of the fleet")
    if fields.get("device_id") and fields["device_id"] not in fleet.device_row:
        raise ValueError(f"device_id {fields['device_id']!r} is not a device of the fleet")


@router.get("/alerts", summary="Alerts, newest first")
def list_alerts(user: Viewer, rt: Live, acked: bool | None = None,
                limit: int = Query(200, ge=1, le=5000)) -> list[dict[str, Any]]:
    return rt.query(alert_repo.list_alerts, acked=acked, limit=limit)


@router.post("/alerts/{alert_id}/ack", summary="Acknowledge an alert (operator)")
def ack_alert(alert_id: int, user: Operator,
              alerts: Annotated[AlertLoop, Depends(part("alerts"))]) -> dict[str, Any]:
    return alerts.acknowledge(alert_id, user.name)


@router.get("/alert-rules", summary="Alert rules")
def list_rules(user: Viewer, rt: Live) -> list[dict[str, Any]]:
    return rt.query(alert_repo.list_rules)


@router.post("/alert-rules", status_code=201, summary="Create an alert rule (admin)")
def create_rule(body: RuleIn, user: Admin, rt: Live) -> dict[str, Any]:
    fields = body.model_dump()
    _check_scope(rt, fields)
    return rt.change(user.name, "alert_rule.create", f"alert_rule:{body.name}",
                     alert_repo.create_rule, fields, user.name, rt.clock())


@router.get("/alert-rules/{rule_id}", summary="One alert rule")
def get_rule(rule_id: int, user: Viewer, rt: Live) -> dict[str, Any]:
    return rt.query(alert_repo.get_rule, rule_id)


@router.patch("/alert-rules/{rule_id}", summary="Change an alert rule (admin)")
def update_rule(rule_id: int, body: RulePatch, user: Admin, rt: Live) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    for k in ("name", "metric", "op", "threshold", "duration_s", "severity", "enabled"):
        if k in fields and fields[k] is None:
            raise ValueError(f"{k} cannot be null")
    _check_scope(rt, fields)
    return rt.change(user.name, "alert_rule.update", f"alert_rule:{rule_id}",
                     alert_repo.update_rule, rule_id, fields, rt.clock())


@router.delete("/alert-rules/{rule_id}", status_code=204, summary="Delete an alert rule (admin)")
def delete_rule(rule_id: int, user: Admin, rt: Live) -> None:
    rt.change(user.name, "alert_rule.delete", f"alert_rule:{rule_id}", alert_repo.delete_rule,
              rule_id)


@router.get("/alert-states", summary="Alerts with their life cycle (first/last seen, "
            "occurrences, flapping, cleared), newest first")
def alert_states(user: Viewer, rt: Live, open_only: bool = False, kind: str | None = None,
                 site_id: str | None = None, device_id: str | None = None,
                 limit: int = Query(200, ge=1, le=5000)) -> list[dict[str, Any]]:
    return rt.query(alert_repo.list_alert_states, open_only=open_only, kind=kind, site_id=site_id,
                     device_id=device_id, limit=limit)
