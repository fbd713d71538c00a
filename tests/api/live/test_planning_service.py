"""The live service hands the telemetry store to the planner: a plan requested through
the API is made with PV at the clear-sky index the stored history shows (0.6)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from adapters.history import HistoryWriter
from api.live.planning import OptimizerPlanner
from api.settings import Settings
from optimizer.forecast import clear_sky_pv_forecast
from optimizer.synthetic import synthetic_inputs
from tests.api.server import ADMIN, login, running_app
from twin.fleet import PV

pytestmark = pytest.mark.timeout(300)

T0 = datetime(2026, 6, 4, 9, 7, tzinfo=UTC).timestamp()  # the service's (fixed) clock


def test_a_requested_plan_uses_the_history(tmp_path):
    settings = Settings(data_dir=tmp_path, mode="offline", fleet_sites=2, admin_user=ADMIN[0],
                        admin_password=ADMIN[1], optimizer_enabled=False,
                        plan_horizon_s=4 * 3600.0)
    planner = OptimizerPlanner(time_limit_s=60.0)
    with running_app(settings, planner=planner, clock=lambda: T0) as (url, app):
        rt = app.state.runtime
        fleet = rt.fleet.fleet
        pv = fleet.device_type == PV
        start = np.floor(T0 / 900.0) * 900.0                       # the plan's first step
        t = start - 2 * 86400.0 + 900.0 * np.arange(2 * 96) + 450.0  # bucket middles
        _, clear = clear_sky_pv_forecast(fleet, t)
        # An offline service writes no telemetry: the test writes the store as an ingest
        # worker does (and stops, its last buckets written).
        writer = HistoryWriter(rt.settings.history_root(), "test", fleet.device_id.tolist(),
                               rt.fleet.version).open()
        for i, ti in enumerate(t.tolist()):
            p = np.where(pv, 0.6 * clear[i], 0.0)
            values = np.column_stack([p, np.full(fleet.n_devices, np.nan)])
            ts = np.column_stack([np.full(fleet.n_devices, ti),
                                  np.full(fleet.n_devices, np.nan)])
            writer.append(ti, ["p_kw", "soc"], values, ts)
        writer.close(finish=True)
        with httpx.Client(base_url=url, timeout=120) as c:
            r = c.post("/api/v1/plans", headers=login(c, *ADMIN))
        assert r.status_code in (200, 201), r.text
        used = planner.last_forecast
        base = synthetic_inputs(fleet, n_steps=16, t0_s=start, dt_s=900.0)
        day = base.pv_kw > 1.0
        assert day.sum() >= 16
        assert used.pv_kw[day] == pytest.approx(0.6 * base.pv_kw[day], rel=1e-3)
        # the service's window holds every 15-minute bucket of the two days once
        series = rt.planning.window.series(fleet)
        assert series["history_t_s"] - start == pytest.approx(t - start)
        assert series["history_p_kw"][:, pv] == pytest.approx(0.6 * clear[:, pv], rel=1e-5,
                                                              abs=1e-4)
