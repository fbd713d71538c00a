"""The generator reproduces the reference fleet, deterministically."""

import numpy as np
import pytest

from twin.generator import generate_fleet


@pytest.fixture(scope="module")
def reference():
    return generate_fleet()


def test_reference_fleet_size_and_capacity(reference):
    assert reference.n_sites == 342
    assert abs(reference.installed_capacity_kw() / 1000.0 - 2450.0) <= 2.45  # 0.1 %
    assert 9_000 <= reference.n_devices <= 11_000
    counts = reference.count_by_type()
    assert all(counts[t] > 100 for t in ("pv", "battery", "ev_charger", "load"))


def test_reference_fleet_is_plausible(reference):
    # European sites with matching time zones, limits that are positive.
    assert reference.lat_deg.min() > 34 and reference.lat_deg.max() < 56
    assert reference.lon_deg.min() > -10 and reference.lon_deg.max() < 20
    assert set(reference.timezone) <= {"Europe/Berlin", "Europe/Amsterdam", "Europe/Madrid",
                                       "Europe/Rome", "Europe/Paris"}
    assert (reference.export_limit_kw > 0).all() and (reference.import_limit_kw > 0).all()
    # Feeders group several sites, and every site has devices.
    assert reference.n_feeders < reference.n_sites
    assert (reference.site_stop > reference.site_start).all()


def test_same_seed_same_fleet_other_seed_other_fleet(reference):
    again = generate_fleet()
    assert list(again.device_id) == list(reference.device_id)
    for name, col in reference.device_float.items():
        np.testing.assert_array_equal(again.device_float[name], col)
    np.testing.assert_array_equal(again.lat_deg, reference.lat_deg)
    other = generate_fleet(seed=1)
    assert not np.array_equal(other.lat_deg, reference.lat_deg)


def test_scaled_fleet_keeps_the_mix():
    small = generate_fleet(n_sites=34, seed=5)
    assert small.n_sites == 34
    assert abs(small.installed_capacity_kw() / 1000.0 - 2450.0 * 34 / 342) < 0.01
    with pytest.raises(ValueError, match="n_sites"):
        generate_fleet(n_sites=0)
