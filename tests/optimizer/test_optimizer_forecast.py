"""optimizer.forecast: the physics forecasts agree with the twin they are built on; the
telemetry forecasts against hand calculations; live_forecast on a history; the forecast
benchmark on a short run."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from benchmarks.bench_forecast import main as bench_forecast
from optimizer.forecast import (
    clear_sky_index_by_time,
    clear_sky_pv_forecast,
    live_forecast,
    load_deviation_forecast,
    load_forecast,
    load_profile,
    pv_forecast,
    pv_index_forecast,
    recent_clear_sky_index,
)
from optimizer.synthetic import synthetic_inputs
from tests.optimizer.small import T0
from tests.twin.test_fleet import small_records
from twin.fleet import LOAD_PROFILES, Fleet
from twin.generator import generate_fleet
from twin.model import Twin
from twin.solar import clear_sky, sun_position
from twin.state import FLOW, StepInputs

FLEET = generate_fleet(8, seed=9)
SAT = datetime(2026, 11, 28, tzinfo=UTC).timestamp()  # a Saturday, 00:00 UTC


def test_pv_forecast_equals_the_twin_pv_output():
    t = T0 + 11 * 3600.0
    zen, az = sun_position(FLEET.lat_deg, FLEET.lon_deg, np.array([t]))
    ghi, dni, dhi = clear_sky(zen, np.array([t]))
    site_kw, dev_kw = pv_forecast(FLEET, np.array([t]), ghi, dni, dhi, 25.0, 2.0, zen, az)
    twin = Twin(FLEET, backend="numpy", t_s=t)
    n = FLEET.n_sites
    inputs = StepInputs.constant(n, temp_air_c=25.0, wind_m_s=2.0)
    inputs.ghi, inputs.dni, inputs.dhi = ghi[0], dni[0], dhi[0]
    inputs.zenith_deg, inputs.azimuth_deg = zen[0], az[0]
    twin.step(t, 900.0, inputs)
    assert site_kw[0].sum() > 1000.0
    np.testing.assert_allclose(site_kw[0], twin.state.site_flows[:, FLOW["pv_kw"]], rtol=1e-9)
    pv = FLEET.rows_of_type("pv")
    np.testing.assert_allclose(dev_kw[0, pv], twin.state.p_kw[pv], rtol=1e-9)


def test_load_forecast_equals_the_twin_load():
    frac = np.random.default_rng(1).uniform(0.2, 1.0, (1, FLEET.n_sites, len(LOAD_PROFILES)))
    twin = Twin(FLEET, backend="numpy", t_s=T0)
    inputs = StepInputs.constant(FLEET.n_sites)
    inputs.load_frac = frac[0]
    twin.step(T0, 900.0, inputs)
    np.testing.assert_allclose(load_forecast(FLEET, frac)[0],
                               -twin.state.site_flows[:, FLOW["load_kw"]], rtol=1e-12)


def test_recent_clear_sky_index_is_a_ratio_of_sums():
    m = np.array([[1.0, np.nan], [3.0, 2.0], [0.5, 1.0]])
    c = np.array([[2.0, 4.0], [4.0, 4.0], [0.1, 0.1]])
    k = recent_clear_sky_index(m, c, min_clear_kw=1.0)
    assert k[0] == pytest.approx(4.0 / 6.0)                    # third row below 1 kW
    assert k[1] == pytest.approx(2.0 / 4.0)                    # NaN reading skipped
    assert np.isnan(recent_clear_sky_index(m[2:], c[2:], 1.0)).all()


def test_pv_index_forecast_relaxes_from_now_to_climatology():
    clear = np.full((3, 1), 100.0)
    h = np.array([0.0, 3 * 3600.0, 1e9])
    f = pv_index_forecast(clear, h, np.array([0.4]), np.array([0.8]), tau_s=3 * 3600.0)
    assert f[:, 0] == pytest.approx([40.0, 100 * (0.8 - 0.4 * np.exp(-1.0)), 80.0])
    nan_now = pv_index_forecast(clear, h, np.array([np.nan]), np.array([0.8]))
    assert nan_now[:, 0] == pytest.approx([80.0, 80.0, 80.0])


def test_clear_sky_index_by_time_per_bin():
    t = SAT + np.array([0.0, 900.0, 86400.0, 86400.0 + 900.0])
    m = np.array([[5.0], [0.0], [7.0], [0.0]])
    c = np.array([[10.0], [0.0], [10.0], [0.0]])
    k = clear_sky_index_by_time(t, m, c, 900.0)
    assert k[0, 0] == pytest.approx(12.0 / 20.0)
    assert k[1, 0] == pytest.approx(0.6)                     # no daylight: all-day index


def test_load_profile_and_deviation_forecast_by_hand():
    # two Mondays' worth of one bin: 10 and 20 kW at 08:00; a Saturday at 08:00: 4 kW
    mon = SAT + 2 * 86400.0
    t = np.array([mon + 8 * 3600, mon + 7 * 86400 + 8 * 3600, SAT + 8 * 3600])
    load = np.array([[10.0], [20.0], [4.0]])
    prof = load_profile(t, load, bin_s=3600.0)
    assert prof.shape == (3, 24, 1)
    assert prof[0, 8, 0] == 15.0 and prof[1, 8, 0] == 4.0
    assert prof[2, 8, 0] == pytest.approx(34.0 / 3)          # Sunday unseen: all days' mean
    assert prof[0, 3, 0] == pytest.approx(34.0 / 3)          # empty bin: overall mean
    t0 = mon + 14 * 86400 + 8 * 3600                         # a Monday 08:00, measured 25 kW
    f = load_deviation_forecast(prof, t0, np.array([t0, t0 + 7200.0]), np.array([25.0]),
                                tau_s=7200.0)
    assert f[0, 0] == pytest.approx(25.0)
    assert f[1, 0] == pytest.approx(34.0 / 3 + 10.0 * np.exp(-1.0))


def test_forecast_benchmark_short_run_prints_figures():
    out = bench_forecast(["--sites", "2", "--days", "3"])
    assert out["benchmark"] == "forecast" and out["origins"] == 72
    for k in ("pv", "load", "ev"):
        assert set(out[k]["skill"]) == {1, 2, 3, 6, 12, 18, 24}
        assert all(np.isfinite(v) for v in out[k]["mae_" + ("arrivals" if k == "ev" else "kw")]
                   .values())
    assert out["load"]["skill"][6] > 0                        # profile beats persistence


def test_live_forecast_corrects_pv_and_load_from_history():
    fleet = Fleet.from_records(*small_records())  # rows: A-pv, A-bat, A-ev, A-load, B-bat
    t0 = datetime(2026, 6, 3, 10, tzinfo=UTC).timestamp()
    base = synthetic_inputs(fleet, n_steps=8, t0_s=t0, dt_s=900.0)
    hist_t = t0 - 3 * 86400 + 60.0 * np.arange(3 * 1440)
    _, dev = clear_sky_pv_forecast(fleet, hist_t)
    p = np.zeros((len(hist_t), fleet.n_devices))
    p[:, 0] = 0.5 * dev[:, 0]         # a PV that always gives half its clear-sky output
    p[:, 3] = -40.0                   # a flat 40 kW load
    out = live_forecast(fleet, base, t0, 900.0, hist_t, p)
    day = base.pv_kw[:, 0] > 1.0
    assert out.pv_kw[day, 0] == pytest.approx(0.5 * base.pv_kw[day, 0], rel=0.05)
    assert out.pv_device_kw[day, 0] == pytest.approx(out.pv_kw[day, 0], rel=1e-9)
    assert out.load_kw[:, 0] == pytest.approx(40.0)
    assert out.load_kw[:, 1] == pytest.approx(0.0)
    short = live_forecast(fleet, base, t0, 900.0, hist_t[-100:], p[-100:])
    assert short is base                # under a day of history: unchanged
