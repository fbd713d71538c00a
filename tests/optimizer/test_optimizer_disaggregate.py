"""Disaggregation: a site's battery power shared so that SoCs level out."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import OptimizerConfig
from optimizer.disaggregate import disaggregate
from optimizer.sitedata import build_site_data
from optimizer.validate import check_forecast
from tests.optimizer.small import T0, battery, fleet, forecast, site

FLEET = fleet([site("A")], [battery("B1", "A"), battery("B2", "A")])  # 10 kWh, 5 kW, lossless
CFG = OptimizerConfig(n_steps=1, dt_s=3600.0)


def share(site_kw: float, soc: tuple[float, float]) -> np.ndarray:
    fc = forecast(1, 1)
    sd = build_site_data(FLEET, np.array(soc), check_forecast(FLEET, fc, CFG), CFG, T0, fc)
    zero = np.zeros((1, 1))
    out = disaggregate(FLEET, sd, np.array([0]), np.array([[site_kw]]), zero, zero)
    return out.setpoints[0]


@pytest.mark.parametrize(("site_kw", "expected"), [
    (5.0, [5.0, 0.0]),     # the fuller battery (0.9) drains first, to the other's level
    (8.0, [5.0, 3.0]),     # its rating caps it; the emptier one gives the rest
    (-4.0, [0.0, -4.0]),   # charging fills the emptier one (0.3) first
    (-5.5, [-0.5, -5.0]),  # the emptier one at its rating, the other takes the rest
    (0.0, [0.0, 0.0]),
])
def test_battery_power_levels_the_soc(site_kw, expected):
    np.testing.assert_allclose(share(site_kw, (0.9, 0.3)), expected, atol=1e-6)


def test_site_power_beyond_the_batteries_is_reported_as_gap():
    fc = forecast(1, 1)
    sd = build_site_data(FLEET, np.array([0.2, 0.1]), check_forecast(FLEET, fc, CFG), CFG, T0,
                         fc)
    zero = np.zeros((1, 1))
    out = disaggregate(FLEET, sd, np.array([0]), np.array([[6.0]]), zero, zero)
    np.testing.assert_allclose(out.setpoints[0], [2.0, 1.0], atol=1e-9)  # all they hold
    assert out.battery_gap_kw[0, 0] == pytest.approx(3.0)
