"""optimizer.ev_forecast: sessions read from a twin state, arrival statistics by hand.

(Sessions found in charger powers and continued over a horizon are tested with the
live planner's history in ``tests/api/test_planning_forecast.py``.)"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from optimizer.ev_forecast import ev_arrival_stats, ev_forecast, sessions_from_state
from tests.optimizer.small import T0
from twin.generator import generate_fleet
from twin.model import Twin

FLEET = generate_fleet(8, seed=9)
SAT = datetime(2026, 11, 28, tzinfo=UTC).timestamp()  # a Saturday, 00:00 UTC


def test_sessions_from_state_reads_connected_cars():
    twin = Twin(FLEET, backend="numpy", t_s=T0)
    ev = FLEET.rows_of_type("ev_charger")[:3]
    twin.plug_in(ev, np.array([10.0, 20.0, 30.0]), np.array([T0 + 3600.0] * 3))
    ses = sessions_from_state(twin.params, twin.state)
    assert sorted(ses.charger_row.tolist()) == sorted(ev.tolist())
    assert sorted(ses.need_kwh.tolist()) == [10.0, 20.0, 30.0]
    assert (ses.arrival_s == T0).all() and (ses.departure_s == T0 + 3600.0).all()


def test_ev_arrival_stats_and_forecast():
    start = SAT + 2 * 86400.0                                 # Monday 00:00, two weekdays
    arrivals = start + np.array([8.2, 8.7, 32.5]) * 3600.0    # Mon 08h x2, Tue 08h x1
    stats = ev_arrival_stats(arrivals, np.array([10.0, 20.0, 30.0]), start,
                             start + 2 * 86400.0)
    assert stats.rate_per_h[0, 8] == pytest.approx(1.5)      # 3 arrivals in 2 hours
    assert stats.rate_per_h[0, 9] == 0.0 and stats.energy_kwh_mean == 20.0
    n, e = ev_forecast(stats, np.array([start + 7 * 86400 + 8 * 3600]), 900.0)
    assert n[0] == pytest.approx(0.375) and e[0] == pytest.approx(7.5)
    with pytest.raises(ValueError, match="end_s"):
        ev_arrival_stats(arrivals, arrivals, start, start)
