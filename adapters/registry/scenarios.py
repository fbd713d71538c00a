"""Scenario runs requested through the API (status, progress, KPIs)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.registry.models import ScenarioRow


def _record(r: ScenarioRow) -> dict[str, Any]:
    return {"id": r.id, "created_s": r.created_s, "created_by": r.created_by, "status": r.status,
            "progress": r.progress, "kpis": r.kpis, "error": r.error}


def add_scenario(s: Session, scenario_id: str, t_s: float, user: str, spec: str) -> dict[str, Any]:
    r = ScenarioRow(id=scenario_id, created_s=t_s, created_by=user, status="queued", progress=0.0,
                 spec=spec, kpis={})
    s.add(r)
    s.flush()
    return _record(r)


def update_scenario(s: Session, scenario_id: str, **fields: Any) -> None:
    r = s.get(ScenarioRow, scenario_id)
    if r is not None:
        for k, v in fields.items():
            setattr(r, k, v)


def get_scenario(s: Session, scenario_id: str) -> dict[str, Any] | None:
    r = s.get(ScenarioRow, scenario_id)
    return None if r is None else _record(r)


def list_scenarios(s: Session, limit: int = 100) -> list[dict[str, Any]]:
    return [_record(r) for r in s.scalars(select(ScenarioRow).order_by(ScenarioRow.created_s.desc())
                                           .limit(limit))]
