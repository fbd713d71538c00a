"""The live planner's forecast from the telemetry store: PV at 60 % of clear sky,
a flat load, daily EV sessions; the history window read incrementally."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from adapters.history import History, HistoryRead, HistoryWriter
from api.live.planning import HistoryWindow, OptimizerPlanner
from optimizer.ev_forecast import charging_sessions, ev_sessions_forecast
from optimizer.forecast import clear_sky_pv_forecast
from optimizer.synthetic import synthetic_inputs
from tests.twin.test_fleet import small_records
from twin.fleet import Fleet

STEP_S = 900.0
T0 = datetime(2026, 6, 4, 6, tzinfo=UTC).timestamp()  # a Thursday, 06:00 UTC
DAYS = 3
METRICS = ["p_kw", "soc"]


def _fleet() -> Fleet:
    return Fleet.from_records(*small_records())  # rows: A-pv, A-bat, A-ev, A-load, B-bat


def _append(writer: HistoryWriter, t_s: float, p_kw: np.ndarray, soc: np.ndarray) -> None:
    """One snapshot: each value stamped with the snapshot time (NaN: no value)."""
    values = np.column_stack([p_kw, soc])
    writer.append(t_s, METRICS, values, np.where(np.isfinite(values), t_s, np.nan))


def _history(root: Path, fleet: Fleet) -> History:
    """Three days of snapshots, one per 15-minute bucket (at its middle): the PV gives
    60 % of its clear-sky output, the load draws 40 kW, the EV charger draws 11 kW from
    08:00 to 10:00 UTC every day, the batteries idle. The writer stops at the end
    (its open buckets written)."""
    writer = HistoryWriter(root, "test", fleet.device_id.tolist()).open()
    t = T0 - DAYS * 86400.0 + STEP_S * np.arange(DAYS * 96) + STEP_S / 2
    _, clear = clear_sky_pv_forecast(fleet, t)
    hour = (t % 86400.0) / 3600.0
    for i, ti in enumerate(t.tolist()):
        p = np.zeros(fleet.n_devices)
        p[0] = 0.6 * clear[i, 0]
        p[2] = -11.0 if 8.0 <= hour[i] < 10.0 else 0.0
        p[3] = -40.0
        _append(writer, ti, p, np.full(fleet.n_devices, 0.5))
    writer.close(finish=True)
    return History(root)


class _ReadsSeen(History):
    """The real store, noting where each ``read_since`` starts [Unix s]."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.since: list[float] = []

    def read_since(self, since_s: float, *args, **kwargs) -> HistoryRead:
        self.since.append(since_s)
        return super().read_since(since_s, *args, **kwargs)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return _fleet()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, fleet: Fleet) -> History:
    return _history(tmp_path_factory.mktemp("planning"), fleet)


def _state(fleet: Fleet, history: History) -> dict[str, np.ndarray]:
    win = HistoryWindow()
    win.update(history, T0)
    return {"p_kw": np.zeros(fleet.n_devices), "soc": np.full(fleet.n_devices, 0.5),
            **win.series(fleet)}


def test_history_window_means_and_incremental_reads(tmp_path, fleet, history):
    win = HistoryWindow(window_s=86400.0)
    win.update(history, T0)
    s = win.series(fleet)
    assert len(s["history_t_s"]) == 96                  # the last day, one bucket each
    assert s["history_t_s"][0] - T0 == pytest.approx(-86400.0 + 450.0, abs=1e-6)
    assert s["history_p_kw"][:, 3] == pytest.approx(-40.0)
    # two snapshots in one bucket: their mean; the store has a 5-minute bucket once a
    # later snapshot closes it; a read starts at the last bucket held (still filling)
    w = HistoryWriter(tmp_path / "h2", "test", fleet.device_id.tolist()).open()
    other = _ReadsSeen(tmp_path / "h2")
    w2 = HistoryWindow(window_s=3600.0)
    nan_row = np.full(fleet.n_devices, np.nan)
    for t, v in ((T0 + 10.0, -10.0), (T0 + 20.0, -30.0)):
        _append(w, t, np.full(fleet.n_devices, v), nan_row)
        w2.update(other, t)
    assert w2.series(fleet) == {}                         # its 5-minute bucket is open
    _append(w, T0 + 30.0, nan_row, nan_row)              # a snapshot without values
    _append(w, T0 + 900.0, np.full(fleet.n_devices, 5.0), nan_row)
    _append(w, T0 + 1200.0, np.full(fleet.n_devices, 9.0), nan_row)
    w2.update(other, T0 + 1200.0)
    s2 = w2.series(fleet)
    assert s2["history_t_s"] - T0 == pytest.approx([450.0, 1350.0], abs=1e-6)
    assert s2["history_p_kw"][:, 0] == pytest.approx([-20.0, 5.0])   # NaN left out
    _append(w, T0 + 1500.0, np.full(fleet.n_devices, 11.0), nan_row)
    w2.update(other, T0 + 1500.0)
    assert other.since[-1] == T0 + 900.0                 # from the last bucket held only
    s3 = w2.series(fleet)
    assert s3["history_t_s"] - T0 == pytest.approx([450.0, 1350.0], abs=1e-6)
    assert s3["history_p_kw"][:, 0] == pytest.approx([-20.0, 7.0])   # 5 and 9 now
    # a fleet with a new device: its column is NaN, the others keep their history
    grown = Fleet.from_records(*small_records())
    grown.device_id[4] = "new-device"
    s4 = w2.series(grown)
    assert s4["history_p_kw"][:, 0] == pytest.approx([-20.0, 7.0])
    assert np.isnan(s4["history_p_kw"][:, 4]).all()
    w2.update(other, T0 + 3 * 3600.0)                     # everything ages out
    assert w2.series(fleet) == {}
    w.close()
    with pytest.raises(ValueError, match="window_s"):
        HistoryWindow(window_s=0.0)


def test_pv_forecast_follows_sixty_percent_of_clear_sky(fleet, history):
    planner = OptimizerPlanner(time_limit_s=30.0)
    n = 24
    fc = planner.forecast(fleet, _state(fleet, history), T0, STEP_S, n)
    base = synthetic_inputs(fleet, n_steps=n, t0_s=T0, dt_s=STEP_S)
    day = base.pv_kw[:, 0] > 5.0
    assert day.sum() >= 20
    # hand check: index 0.6 in every daylight bin of the last days, and 0.6 / 0.6 = 1
    # in the last two hours, so the forecast is 0.6 x clear sky at every lead time
    assert fc.pv_kw[day, 0] == pytest.approx(0.6 * base.pv_kw[day, 0], rel=1e-3)
    assert fc.pv_device_kw[day, 0] == pytest.approx(fc.pv_kw[day, 0], rel=1e-9)
    assert fc.pv_kw[:, 1] == pytest.approx(0.0)          # site B has no PV
    # load: the load device only (the EV is in the sessions), 40 kW flat
    assert fc.load_kw[:, 0] == pytest.approx(40.0, rel=1e-5)
    # EV: the history has one 2-hour, 22 kWh session a day from 08:00 on the charger
    # (row 2): rate 1/h in hour 8, 0.25 expected arrivals per step from 08:00; the one
    # charger's phase 0.5 makes the cumulative 0.25 + 0.25 + 0.5 reach 1 at the 08:15 step
    ev = fc.ev_sessions
    assert ev.charger_row.tolist() == [2]
    assert ev.arrival_s[0] - T0 == pytest.approx(2 * 3600.0 + 900.0, abs=1e-6)
    assert ev.departure_s[0] - ev.arrival_s[0] == pytest.approx(7200.0, abs=1e-6)
    assert ev.need_kwh[0] == pytest.approx(22.0, rel=1e-5)


def test_plan_uses_the_history_and_falls_back_without_it(fleet, history):
    planner = OptimizerPlanner(time_limit_s=30.0)
    out = planner.plan(fleet, _state(fleet, history), T0, STEP_S, 8)
    assert out["solver_status"] == "optimal"
    used = planner.last_forecast
    assert used.load_kw[:, 0] == pytest.approx(40.0, rel=1e-5)
    # no history (a fresh service): the synthetic stand-in, unchanged
    plain = planner.forecast(fleet, {"p_kw": np.zeros(5), "soc": np.zeros(5)}, T0, STEP_S, 8)
    base = synthetic_inputs(fleet, n_steps=8, t0_s=T0, dt_s=STEP_S)
    assert plain.pv_kw == pytest.approx(base.pv_kw)
    assert plain.load_kw == pytest.approx(base.load_kw)
    bad = {"history_t_s": np.arange(3.0), "history_p_kw": np.zeros((3, 2))}
    with pytest.raises(ValueError, match="history_p_kw has shape"):
        planner.forecast(fleet, bad, T0, STEP_S, 8)


def test_charging_sessions_by_hand():
    t = 900.0 * np.array([0, 1, 2, 3, 4, 6, 7])            # a hole in the history at 5
    p = np.array([[0.0, -4.0], [-8.0, -4.0], [-8.0, 0.0], [0.0, np.nan], [-2.0, -4.0],
                  [-2.0, -4.0], [0.0, -0.2]])
    ch, arr, dep, e = charging_sessions(t, p, 900.0)
    got = sorted(zip(ch.tolist(), (arr / 900).tolist(), (dep / 900).tolist(), e.tolist(),
                     strict=True))
    # charger 0: 8 kW over buckets 1-2 (4 kWh), 2 kW in 4 then (after the hole) in 6
    # charger 1: 4 kW over 0-1 (2 kWh), 4 kW in 4 and in 6; 0.2 kW is not charging
    assert got == [(0, 1.0, 3.0, 4.0), (0, 4.0, 5.0, 0.5), (0, 6.0, 7.0, 0.5),
                   (1, 0.0, 2.0, 2.0), (1, 4.0, 5.0, 1.0), (1, 6.0, 7.0, 1.0)]


def test_a_car_charging_now_continues_with_what_it_still_needs(fleet):
    # three days of one 22 kWh session from 08:00 to 10:00; now 09:00, the car of today
    # has taken 11 kWh: it stays until 10:00 and still needs 11 kWh
    t0 = T0 + 3 * 3600.0                                   # 09:00 UTC
    t = t0 - 3 * 86400.0 + STEP_S * np.arange(3 * 96)
    hour = (t % 86400.0) / 3600.0
    ev = np.where((hour >= 8.0) & (hour < 10.0) & (t < t0), -11.0, 0.0)[:, None]
    s = ev_sessions_forecast(fleet, t0, STEP_S, 8, t, ev)
    assert s.charger_row.tolist() == [2]
    assert s.arrival_s[0] - t0 == pytest.approx(0.0, abs=1e-6)
    assert s.departure_s[0] - t0 == pytest.approx(3600.0, abs=1e-6)
    assert s.need_kwh[0] == pytest.approx(22.0 - 11.0)
