"""Device physics against pvlib's own chain and against hand calculations."""

import numpy as np
import pvlib
import pytest

from twin.physics import battery_step, ev_allocate, pv_ac_power, pv_geometry, sun_geometry


def pvlib_chain(ghi, dni, dhi, zen, sun_az, temp_air, wind, tilt, az, kwp, inv_kw, gamma):
    poa = pvlib.irradiance.get_total_irradiance(
        tilt, az, zen, sun_az, dni, ghi, dhi, albedo=0.25, model="isotropic")["poa_global"]
    t_cell = pvlib.temperature.faiman(poa, temp_air, wind_speed=wind)
    pdc = pvlib.pvsystem.pvwatts_dc(poa, t_cell, kwp * 1000.0, gamma)
    return pvlib.inverter.pvwatts(pdc, inv_kw / 0.96 * 1000.0) / 1000.0


def test_pv_matches_pvlib_chain_within_one_percent():
    rng = np.random.default_rng(7)
    n = 2000
    zen = rng.uniform(0, 85, n)
    sun_az = rng.uniform(60, 300, n)
    dni = rng.uniform(0, 950, n)
    dhi = rng.uniform(20, 300, n)
    ghi = dni * np.cos(np.radians(zen)) + dhi
    temp_air, wind = rng.uniform(-10, 40, n), rng.uniform(0, 8, n)
    tilt, az = rng.uniform(0, 60, n), rng.uniform(90, 270, n)
    kwp = rng.uniform(5, 3000, n)
    inv_kw = kwp / rng.uniform(1.0, 1.4, n)
    gamma = rng.uniform(-0.005, -0.003, n)
    ours = pv_ac_power(ghi, dni, dhi, sun_geometry(zen, sun_az), temp_air, wind,
                       pv_geometry(tilt, az), kwp, inv_kw, gamma)
    ref = np.asarray(pvlib_chain(ghi, dni, dhi, zen, sun_az, temp_air, wind, tilt, az, kwp,
                                 inv_kw, gamma))
    significant = ref > 0.01 * inv_kw
    assert significant.sum() > 1500
    rel = np.abs(ours[significant] - ref[significant]) / ref[significant]
    assert rel.max() < 0.01
    assert (ours <= inv_kw + 1e-9).all() and (ours >= 0).all()


def test_pv_is_zero_at_night_and_clipped_at_the_inverter():
    sun = sun_geometry(np.array([95.0, 10.0]), np.array([180.0, 180.0]))
    p = pv_ac_power(np.array([0.0, 1100.0]), np.array([0.0, 1000.0]), np.array([0.0, 100.0]),
                    sun, np.array([10.0, 10.0]), np.array([1.0, 1.0]),
                    pv_geometry(np.array([30.0, 30.0]), np.array([180.0, 180.0])),
                    np.array([100.0, 100.0]), np.array([50.0, 50.0]),
                    np.array([-0.004, -0.004]))
    assert p[0] == 0.0
    assert p[1] == pytest.approx(50.0)


def one(x):
    return np.array([float(x)])


def test_battery_hand_calculation():
    # 100 kWh, 50 kW, SoC window 0.1..0.9, 0.95/0.9 efficiencies, one hour.
    args = (one(100.0), one(50.0), one(50.0), one(0.95), one(0.9), one(0.1), one(0.9), 1.0)
    p, e = battery_step(one(40.0), one(80.0), *args)  # discharge 40 kW for 1 h
    assert p[0] == pytest.approx(40.0) and e[0] == pytest.approx(80.0 - 40.0 / 0.9)
    p, e = battery_step(one(-40.0), one(50.0), *args)  # charge 40 kW for 1 h
    assert p[0] == pytest.approx(-40.0) and e[0] == pytest.approx(50.0 + 40.0 * 0.95)
    p, e = battery_step(one(80.0), one(80.0), *args)  # power limit
    assert p[0] == pytest.approx(50.0)
    p, e = battery_step(one(50.0), one(20.0), *args)  # only 10 kWh above soc_min
    assert p[0] == pytest.approx(10.0 * 0.9) and e[0] == pytest.approx(10.0)
    p, e = battery_step(one(-50.0), one(85.0), *args)  # only 5 kWh of room
    assert p[0] == pytest.approx(-5.0 / 0.95) and e[0] == pytest.approx(90.0)


def test_ev_water_filling_hand_calculation():
    # 22 kW charger, three sessions wanting 4, 30 and 30 kW: 4, then 9 and 9.
    given = ev_allocate(np.array([22.0, 10.0]), np.array([[4.0, 30.0, 30.0], [0.0, 3.0, 0.0]]))
    np.testing.assert_allclose(given, [[4.0, 9.0, 9.0], [0.0, 3.0, 0.0]])
