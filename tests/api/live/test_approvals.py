"""Approvals on a real registry: a plan step goes to the link in chunks (a chunk the
link refuses is queued, not lost); a plan past its horizon is refused and stays expired."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest

from adapters.registry import commands as cmd_repo
from adapters.registry import fleet as fleet_repo
from adapters.registry import plans as plan_repo
from adapters.registry.db import open_registry
from api.live.approvals import SEND_CHUNK, Approvals
from twin.generator import generate_fleet
from twin.limits import SETPOINT_KEY

T0 = 1_800_000_000.0


class _LosingLink:
    """A full :class:`api.live.types.CommandLink` (``send_new`` for a plan step,
    ``send_many`` for queued registry commands); the broker goes away at the
    ``lose_at``-th ``send_new``."""

    def __init__(self, lose_at: int):
        self.lose_at = lose_at
        self.chunks: list[list[str]] = []
        self.sent_queued: list[str] = []  # registry commands, through send_many
        self.reserved: list[str] = []

    def reserve(self, device_ids: list[str]) -> None:
        self.reserved.extend(device_ids)

    def send_new(self, items: list[dict[str, Any]], now_s: float) -> None:
        if len(self.chunks) + 1 == self.lose_at:
            self.lose_at = 0  # back at once: the queued rest goes out through send_many()
            raise ConnectionError("broker connection lost")
        self.chunks.append([it["device_id"] for it in items])

    def send_many(self, commands: list[dict[str, Any]], now_s: float
                  ) -> list[tuple[dict[str, Any], str]]:
        self.sent_queued.extend(c["device_id"] for c in commands)
        return []  # none refused

    def connected(self) -> bool:
        return True

    def set_fleet(self, fleet) -> None:
        pass


@pytest.fixture
def registry_and_fleet(tmp_path):
    registry = open_registry(f"sqlite:///{tmp_path}/ecogrid.db")
    fleet = generate_fleet(40, seed=3)
    with registry.session() as s:
        fleet_repo.import_fleet(s, fleet)
    yield registry, fleet
    registry.close()


def _plan(fleet) -> dict[str, Any]:
    setpoints: dict[str, dict[str, list[float]]] = {}
    for row, d in enumerate(fleet.device_id.tolist()):
        key = SETPOINT_KEY.get(int(fleet.device_type[row]))
        if key is not None:
            setpoints.setdefault(key, {})[d] = [0.0] * 4
    return {"id": "p-chunks", "created_s": T0, "start_s": T0, "step_s": 900.0, "n_steps": 4,
            "initial_state": {}, "setpoints": setpoints, "kpis": {}, "solver_status": "optimal",
            "solver_time_s": 0.1}


@pytest.mark.parametrize("lose_at", [0, 2])
def test_a_plan_step_goes_in_chunks_and_a_refused_chunk_is_queued(registry_and_fleet, lose_at):
    registry, fleet = registry_and_fleet
    plan = _plan(fleet)
    devices = [d for series in plan["setpoints"].values() for d in series]
    assert len(devices) > 2 * SEND_CHUNK  # several chunks
    link = _LosingLink(lose_at)
    disp = Approvals(registry, fleet, link, notify=lambda channel, msg: None)
    disp.add_plan(plan, T0)
    disp.approve(plan["id"], "olga", T0 + 1)
    assert all(len(c) <= SEND_CHUNK for c in link.chunks)
    chunked = [d for c in link.chunks for d in c]
    # every device's setpoint went out exactly once: in a chunk, or queued and sent after
    assert sorted(chunked + link.sent_queued) == sorted(devices)
    assert len(link.chunks) == (1 if lose_at else -(-len(devices) // SEND_CHUNK))
    with registry.session() as s:
        rows = cmd_repo.list_commands(s, limit=10_000)
    assert sorted(r["device_id"] for r in rows) == sorted(link.sent_queued)
    assert sorted(link.reserved) == sorted(link.sent_queued)  # versions reserved first


def test_approving_a_plan_past_its_horizon_is_refused_and_it_stays_expired(registry_and_fleet):
    registry, fleet = registry_and_fleet
    plan = _plan(fleet)  # 4 steps of 900 s from T0
    events: list[dict[str, Any]] = []
    disp = Approvals(registry, fleet, _LosingLink(0),
                      notify=lambda channel, msg: events.append(msg))
    disp.add_plan(plan, T0)
    with pytest.raises(plan_repo.PlanStateError, match="expired"):
        disp.approve(plan["id"], "olga", T0 + 4 * 900.0)
    with registry.session() as s:
        assert plan_repo.get_plan(s, plan["id"], with_setpoints=False)["status"] == "expired"
    assert {"event": "expired", "plan_id": plan["id"]} in events


def test_every_plan_step_goes_out_inside_the_sending_block(registry_and_fleet):
    registry, fleet = registry_and_fleet
    plan = _plan(fleet)
    for series in plan["setpoints"].values():
        for values in series.values():
            values[1] = 1.0  # step 1 changes every value: it goes out whole too
    inside = [False]
    steps: list[tuple[int, bool]] = []  # (chunks the link got, inside the block)

    class _Link(_LosingLink):
        def send_new(self, items: list[dict[str, Any]], now_s: float) -> None:
            super().send_new(items, now_s)
            steps.append((len(self.chunks), inside[0]))

    @contextmanager
    def sending():
        inside[0] = True
        try:
            yield
        finally:
            inside[0] = False

    disp = Approvals(registry, fleet, _Link(0), notify=lambda channel, msg: None)
    disp.sending = sending
    disp.add_plan(plan, T0)
    disp.approve(plan["id"], "olga", T0 + 1)  # step 0, at the approval
    at_approval = len(steps)
    disp.tick(T0 + 900.0 + 1)  # step 1, at its time
    assert at_approval > 1 and len(steps) == 2 * at_approval  # both steps, in chunks
    assert all(was_inside for _, was_inside in steps)
    assert not inside[0]
