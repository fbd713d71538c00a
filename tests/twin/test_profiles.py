"""twin.profiles: the calendar bins by hand, the load shapes' range."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from twin.profiles import day_type, load_shapes, time_bin, weekday_of

SAT = datetime(2026, 11, 28, tzinfo=UTC).timestamp()  # a Saturday, 00:00 UTC


def test_day_type_and_bins():
    t = np.array([SAT - 1.0, SAT, SAT + 86400.0, SAT + 2 * 86400.0])
    assert day_type(t).tolist() == [0, 1, 2, 0]               # Fri, Sat, Sun, Mon
    assert weekday_of(t).tolist() == [4, 5, 6, 0]
    assert day_type(np.array([SAT - 1.0]), utc_offset_s=3600.0).tolist() == [1]
    assert time_bin(np.array([SAT + 3600.0 + 899.0]), 900.0).tolist() == [4]
    assert time_bin(np.array([SAT - 1.0]), 3600.0, utc_offset_s=3600.0).tolist() == [0]


def test_load_shapes_are_fractions_of_peak():
    hour = np.linspace(0.0, 24.0, 97)
    shapes = load_shapes(hour, np.zeros_like(hour, dtype=np.int64))
    assert shapes.shape == (97, 4)
    assert (shapes > 0).all() and (shapes <= 1.0).all()
    assert (shapes[:, 3] == 0.85).all()                     # flat
