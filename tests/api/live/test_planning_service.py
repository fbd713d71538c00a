"""The live service hands its zarr telemetry history to the planner: a plan requested
through the API is made with PV at the clear-sky index the history shows (0.6)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from api.live.planning import OptimizerPlanner
from api.settings import Settings
from optimizer.forecast import clear_sky_pv_forecast
from optimizer.synthetic import synthetic_inputs
from tests.api.server import login, running_app
from twin.fleet import PV

pytestmark = pytest.mark.timeout(300)

ADMIN = ("root", "root-pass-1")
T0 = datetime(2026, 6, 4, 9, 7, tzinfo=UTC).timestamp()  # the service's (fixed) clock


def test_a_requested_plan_uses_the_history(tmp_path):
    settings = Settings(data_dir=tmp_path, mode="offline", fleet_sites=2, admin_user=ADMIN[0],
                        admin_password=ADMIN[1], optimizer_enabled=False,
                        plan_horizon_s=4 * 3600.0)
    planner = OptimizerPlanner(time_limit_s=60.0)
    with running_app(settings, planner=planner, clock=lambda: T0) as (url, app):
        svc = app.state.service
        fleet = svc.fleet
        pv = fleet.device_type == PV
        start = np.floor(T0 / 900.0) * 900.0                       # the plan's first step
        t = start - 2 * 86400.0 + 900.0 * np.arange(2 * 96) + 450.0  # bucket middles
        _, clear = clear_sky_pv_forecast(fleet, t)
        for i, ti in enumerate(t.tolist()):
            p = np.where(pv, 0.6 * clear[i], 0.0)
            svc.history.append(ti, {"p_kw": p, "soc": np.full(fleet.n_devices, np.nan)})
        with httpx.Client(base_url=url, timeout=120) as c:
            r = c.post("/api/v1/plans", headers=login(c, *ADMIN))
        assert r.status_code in (200, 201), r.text
        used = planner.last_forecast
        base = synthetic_inputs(fleet, n_steps=16, t0_s=start, dt_s=900.0)
        day = base.pv_kw > 1.0
        assert day.sum() >= 16
        assert used.pv_kw[day] == pytest.approx(0.6 * base.pv_kw[day], rel=1e-3)
        # the service's window read every snapshot once
        assert len(svc.history_window.series()["history_t_s"]) == 2 * 96
