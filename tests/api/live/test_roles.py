"""A role is the same runtime with fewer parts: what each role builds (no I/O in the build:
no broker is needed), and the 503 a handler gets for a part its role does not run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adapters.registry import open_registry
from api.live.planning import OptimizerPlanner
from api.live.runtime import Runtime, build_runtime
from api.live.types import ServiceUnavailable
from api.settings import Settings

LEADER_ONLY = ("commands", "approvals", "planning", "alerts", "scenarios")


def _built(tmp_path: Path, **settings: object) -> Runtime:
    """The runtime of these settings, built (not started) on a fresh registry."""
    s = Settings(data_dir=tmp_path, fleet_sites=2, **settings)  # type: ignore[arg-type]
    registry = open_registry(s.registry_url())
    try:
        if s.mode == "replica":  # a replica finds the fleet the leader imported
            build_runtime(s.model_copy(update={"mode": "live", "leader_url": None}), registry,
                          use_default_planner=False)
        return build_runtime(s, registry, planner=OptimizerPlanner())
    finally:
        registry.close()


def test_the_leader_builds_every_part(tmp_path):
    rt = _built(tmp_path)
    assert rt.role == "leader"
    for name in (*LEADER_ONLY, "ingest", "recorder", "fleet", "telemetry", "history", "kpis"):
        assert getattr(rt, name) is not None, name
    assert rt.store_feed is None and rt.leader is None and rt.events_feed is None
    assert rt.recorder.writer.writer_id == "leader"


def test_with_ingest_workers_the_leader_reads_the_store_instead(tmp_path):
    rt = _built(tmp_path, ingest="workers")
    assert rt.ingest is None and rt.recorder is None
    assert rt.store_feed is not None and rt.commands is not None


def test_offline_has_no_broker_parts(tmp_path):
    rt = _built(tmp_path, mode="offline")
    assert rt.role == "offline"
    assert rt.ingest is None and rt.commands is None and rt.events_relay is None
    assert rt.approvals is not None and rt.approvals.link is None  # commands wait as pending


def test_a_replica_builds_no_publisher_approvals_planner_or_writer(tmp_path):
    rt = _built(tmp_path, mode="replica", leader_url="http://leader:8000",
                jwt_secret="a-shared-secret-of-the-pods")
    assert rt.role == "replica"
    for name in (*LEADER_ONLY, "recorder", "store_feed", "planner"):
        assert getattr(rt, name) is None, name
    assert rt.ingest is not None and rt.events_feed is not None and rt.leader is not None
    assert rt.leader_requests is not None and rt.history is not None
    with pytest.raises(ServiceUnavailable, match=r"replica.*runs no approvals"):
        rt.part("approvals")


def test_the_planner_the_ledger_and_the_analytics_count_with_one_market(tmp_path):
    rt = _built(tmp_path, export_price_eur_per_mwh=77.0)
    assert rt.kpis.ledger.tariff is rt.market.tariff
    assert rt.planning.market == rt.market.at
    t = np.array([1_800_000_000.0, 1_800_043_200.0])
    imp, exp, co2 = rt.market.at(t)
    assert exp.tolist() == [77.0, 77.0]  # the constant set
    assert imp[0] != imp[1] and co2[0] != co2[1]  # the day-ahead-like curves otherwise
