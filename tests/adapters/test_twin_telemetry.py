"""twin.telemetry: last values, out-of-order writes, online and stale flags."""

from __future__ import annotations

import numpy as np
import pytest

from twin.generator import generate_fleet
from twin.telemetry import Telemetry


@pytest.fixture()
def tel():
    return Telemetry(generate_fleet(3, seed=2), expected_interval_s=10.0)


def test_newest_value_wins_and_older_is_skipped(tel):
    p = tel.metric_column("p_kw")
    rows = np.array([0, 0, 0, 1])
    cols = np.full(4, p)
    n = tel.write(rows, cols, np.array([1.0, 3.0, 2.0, 7.0]), np.array([100.0, 300.0, 200.0,
                                                                         50.0]))
    assert n == 4
    assert tel.get(tel.fleet.device_id[0], "p_kw") == (3.0, 300.0)
    assert tel.write(np.array([0]), np.array([p]), np.array([9.0]), np.array([250.0])) == 0
    assert tel.value[0, p] == 3.0 and tel.last_seen_s[0] == 300.0 and tel.last_seen_s[1] == 50.0
    assert np.isnan(tel.last_seen_s[2])


def test_gateway_offline_takes_its_devices_offline(tel):
    f = tel.fleet
    rows0 = np.arange(f.site_start[0], f.site_stop[0])
    tel.set_site_online([0], [1], 10.0)
    assert not tel.online[rows0].any()  # devices have not said online yet
    change = tel.set_device_online(rows0, np.ones(len(rows0)), 11.0)
    assert tel.online[rows0].all() and (tel.online_changed_s[rows0] == 11.0).all()
    assert len(change.rows) == len(rows0)
    change = tel.set_site_online([0], [0], 20.0)
    assert not tel.online[rows0].any() and (tel.online_changed_s[rows0] == 20.0).all()
    assert tel.site_online[0] == 0 and tel.site_online_changed_s[0] == 20.0
    assert set(change.rows.tolist()) == set(rows0.tolist())
    others = np.setdiff1d(np.arange(f.n_devices), rows0)
    assert np.isnan(tel.online_changed_s[others]).all()
    # the gateway returns: its devices' own status counts again
    tel.set_site_online([0], [1], 30.0)
    assert tel.online[rows0].all() and (tel.online_changed_s[rows0] == 30.0).all()


def test_stale_after_three_intervals(tel):
    p = tel.metric_column("p_kw")
    tel.write(np.array([0, 1]), np.array([p, p]), np.array([1.0, 1.0]), np.array([100.0, 125.0]))
    assert len(tel.refresh_stale(129.0).rows) == 0
    change = tel.refresh_stale(131.0)  # row 0: 31 s > 3 x 10 s; row 1: 6 s
    assert change.rows.tolist() == [0] and tel.stale[0] and tel.stale_changed_s[0] == 131.0
    assert not tel.stale[2:].any()  # never heard from: not stale
    tel.write(np.array([0]), np.array([p]), np.array([2.0]), np.array([140.0]))
    change = tel.refresh_stale(141.0)
    assert change.rows.tolist() == [0] and not tel.stale[0] and tel.stale_changed_s[0] == 141.0
