"""Detectors against hand calculations."""

from __future__ import annotations

import numpy as np
import pytest

from api.alerts import detectors as det
from twin.fleet import BATTERY, LOAD, PV


def test_threshold_ops_and_nan():
    v = np.array([1.0, 5.0, np.nan, 10.0])
    assert det.threshold(v, ">", 5.0).tolist() == [False, False, False, True]
    assert det.threshold(v, ">=", 5.0).tolist() == [False, True, False, True]
    assert det.threshold(v, "<", 5.0).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="operator '!=' is not one of"):
        det.threshold(v, "!=", 1.0)


def test_device_offline_only_behind_an_online_gateway():
    reported = np.array([0, 0, 1, -1])
    site_online = np.array([1, 0])
    dev_site = np.array([0, 1, 0, 0])
    assert det.device_offline(reported, site_online, dev_site).tolist() == [True, False, False,
                                                                            False]


def test_setpoint_deviation_battery_and_limits():
    types = np.array([BATTERY, BATTERY, BATTERY, PV, PV, LOAD])
    p = np.array([0.0, 19.5, 0.0, 60.0, 40.0, -5.0])
    sp = np.array([20.0, 20.0, 20.0, 50.0, 50.0, np.nan])
    rating = np.array([20.0, 20.0, 20.0, 100.0, 100.0, 10.0])
    soc = np.array([0.5, 0.5, 0.1, np.nan, np.nan, np.nan])
    lo, hi = np.full(6, 0.1), np.full(6, 0.9)
    # tolerance max(1 kW, 10 % of rating): battery 2 kW, PV 10 kW
    got = det.setpoint_deviation(p, sp, types, rating, soc, lo, hi)
    # 0: 20 kW off; 1: 0.5 kW off (ok); 2: empty battery excused; 3: 60 > 50 + 10 false
    # (exactly at tolerance is fine); 4: below limit is fine; 5: no setpoint
    assert got.tolist() == [True, False, False, False, False, False]
    p[3] = 60.5
    assert det.setpoint_deviation(p, sp, types, rating, soc, lo, hi)[3]


def test_pv_shortfall_respects_curtailment_and_low_light():
    p = np.array([40.0, 40.0, 40.0, 1.0])
    exp = np.array([100.0, 100.0, 50.0, 5.0])
    rating = np.full(4, 100.0)
    limit = np.array([np.nan, 45.0, np.nan, np.nan])
    # 0: 40 < 75 -> short; 1: capped at 45, 40 >= 33.75 -> ok; 2: 40 >= 37.5 ok;
    # 3: expected 5 kW < 10 % of rating -> not judged
    assert det.pv_shortfall(p, exp, rating, limit).tolist() == [True, False, False, False]


def test_flatline_needs_a_moving_expectation():
    p = np.array([[5.0, 5.0, 2.0], [5.0, 5.0, 3.0], [5.0, 5.0, 4.0]])
    e = np.array([[5.0, 5.0, 2.0], [8.0, 5.0, 3.0], [11.0, 5.0, 4.0]])
    rating = np.full(3, 100.0)
    # device 0: frozen while expected moves 6 kW > 2 kW; device 1: expected flat; 2: moving
    assert det.flatline(p, e, rating).tolist() == [True, False, False]


def test_soc_balance_residual_hand_case():
    # 100 kWh battery, discharging 50 kW for 0.5 h at 0.95 -> draws 26.3158 kWh
    t = np.array([0.0, 1800.0])
    p = np.array([[50.0], [50.0]])
    soc_ok = np.array([[0.8], [0.8 - 50 * 0.5 / 0.95 / 100.0]])
    cap, ce, de = np.array([100.0]), np.array([0.95]), np.array([0.95])
    assert det.soc_balance_residual(soc_ok, p, t, cap, ce, de)[0] == pytest.approx(0.0, abs=1e-12)
    soc_flat = np.array([[0.8], [0.8]])  # meter says 50 kW, SoC did not move
    assert det.soc_balance_residual(soc_flat, p, t, cap, ce, de)[0] == pytest.approx(
        50 * 0.5 / 0.95 / 100.0)
    # trapezoid: -20 kW for 0.5 h, then a mean of -10 kW for 0.5 h, at 0.9: 9 + 4.5 kWh
    t2 = np.array([0.0, 1800.0, 3600.0])
    p2 = np.array([[-20.0], [-20.0], [0.0]])
    soc2 = np.array([[0.5], [0.59], [0.635]])
    assert det.soc_balance_residual(soc2, p2, t2, cap, np.array([0.9]), de)[0] == pytest.approx(
        0.0, abs=1e-12)


def test_site_over_limit_both_directions():
    net = np.array([105.0, -60.0, 50.0, np.nan])
    imp, exp = np.full(4, 50.0), np.full(4, 100.0)
    assert det.site_over_limit(net, imp, exp, margin_kw=1.0).tolist() == [True, True, False,
                                                                          False]
