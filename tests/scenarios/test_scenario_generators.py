"""Weather, prices, loads and EV arrivals: physics bounds, correlation, seeds, time zones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scenarios.ev import EvArrivals
from scenarios.loads import load_shapes
from scenarios.markets import CsvSeries, SyntheticPrices, local_hours
from scenarios.weather import CloudWeather, clear_sky_index, distance_km
from twin.solar import clear_sky, sun_position

T0 = pd.Timestamp("2025-06-02T00:00Z").timestamp()


def test_distance_munich_berlin() -> None:
    d = distance_km(np.array([48.137, 52.520]), np.array([11.575, 13.405]))
    assert d[0, 1] == pytest.approx(504.0, abs=5.0)  # great-circle distance


def test_clear_sky_index_is_kasten_czeplak() -> None:
    np.testing.assert_allclose(clear_sky_index(np.array([0.0, 1.0, 0.5])),
                               [1.0, 0.25, 1 - 0.75 * 0.5 ** 3.4])


def test_clouds_are_correlated_between_nearby_sites_and_ghi_below_clear_sky() -> None:
    lat = np.array([48.0, 48.05, 52.5])  # two sites 5.6 km apart, one 500 km away
    lon = np.array([11.0, 11.0, 13.4])
    w = CloudWeather(lat, lon, 900.0, np.random.default_rng(0), correlation_km=60.0)
    cover = w.cloud_cover(20_000)
    c = np.corrcoef(cover.T)
    assert c[0, 1] > 0.8 and abs(c[0, 2]) < 0.2
    t = T0 + 900.0 * np.arange(96)
    out = CloudWeather(lat, lon, 900.0, np.random.default_rng(1)).generate(t)
    zen, _ = sun_position(lat, lon, t + 450.0)
    ghi_cs = clear_sky(zen, t + 450.0)[0]
    assert np.all(out["ghi"] <= ghi_cs + 1e-9) and out["ghi"].max() > 300
    assert np.all(out["ghi"][zen > 90] == 0.0)


def test_weather_in_chunks_equals_weather_in_one_go() -> None:
    lat, lon = np.array([48.0, 45.0]), np.array([11.0, 9.0])
    t = T0 + 900.0 * np.arange(192)
    one = CloudWeather(lat, lon, 900.0, np.random.default_rng(5)).generate(t)
    w = CloudWeather(lat, lon, 900.0, np.random.default_rng(5))
    two = [w.generate(t[:96]), w.generate(t[96:])]
    for key in ("ghi", "dni", "temp_air_c", "cloud_cover"):
        np.testing.assert_array_equal(one[key], np.vstack([two[0][key], two[1][key]]))


def test_local_hours_follow_the_clock_change() -> None:
    # 2025-03-30 01:00 UTC: Berlin goes from UTC+1 to UTC+2.
    t = pd.Timestamp("2025-03-29T22:00Z").timestamp() + 900.0 * np.arange(24)
    hour, weekday = local_hours(t, "Europe/Berlin")
    ref = pd.DatetimeIndex(pd.to_datetime(t, unit="s", utc=True)).tz_convert("Europe/Berlin")
    np.testing.assert_allclose(hour, ref.hour + ref.minute / 60.0)
    np.testing.assert_array_equal(weekday, ref.day_of_week)
    hour2, wd2 = local_hours(t[:4], "Europe/Berlin")  # no change inside: the fast path
    np.testing.assert_allclose(hour2, hour[:4])
    np.testing.assert_array_equal(wd2, weekday[:4])


def test_prices_are_hourly_and_seeded() -> None:
    t = T0 + 900.0 * np.arange(96)
    a = SyntheticPrices(T0, "Europe/Berlin", np.random.default_rng(3)).generate(t)
    b = SyntheticPrices(T0, "Europe/Berlin", np.random.default_rng(3)).generate(t)
    np.testing.assert_array_equal(a, b)
    assert np.all(a.reshape(24, 4) == a.reshape(24, 4)[:, :1])  # constant within each hour
    assert a.reshape(24, 4)[19, 0] > a.reshape(24, 4)[11, 0]  # evening above midday


def test_csv_prices_are_held_and_must_cover_the_start(tmp_path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("time,price_eur_per_mwh\n2025-06-02T00:00Z,10\n2025-06-02T01:00Z,20\n"
                    "2025-06-03T01:00Z,30\n")
    series = CsvSeries(str(path), "price_eur_per_mwh", T0, T0 + 86400.0)
    np.testing.assert_array_equal(series.generate(T0 + np.array([0.0, 2700.0, 3600.0, 7200.0])),
                                  [10, 10, 20, 20])
    with pytest.raises(ValueError, match="after the period start"):
        CsvSeries(str(path), "price_eur_per_mwh", T0 - 3600.0, T0 + 86400.0)
    path.write_text("time,price\n2025-06-02T00:00Z,10\n")
    with pytest.raises(ValueError, match="missing column"):
        CsvSeries(str(path), "price_eur_per_mwh", T0, T0 + 3600.0)


def test_load_shapes_stay_within_peak() -> None:
    hour = np.linspace(0, 24, 97)
    weekday = np.zeros_like(hour, dtype=int)
    shapes = load_shapes(hour, weekday)
    assert shapes.shape == (97, 4) and shapes.min() >= 0.0 and shapes.max() <= 1.0
    assert shapes[48, 1] > shapes[8, 1]  # commercial: noon above 2 am


def test_ev_arrivals_follow_the_rate() -> None:
    t = T0 + 900.0 * np.arange(96 * 20)
    ev = EvArrivals(np.array([3, 7]), np.array([2, 2]), "UTC", 900.0, np.random.default_rng(0),
                    sessions_per_connector_per_day=1.5, growth=2.0, arrival_hour_mean=9.0,
                    arrival_hour_sd=2.0, dwell_h_mean=3.0, energy_kwh_mean=20.0,
                    energy_kwh_sd=5.0)
    step, charger, need, departure = ev.generate(t)
    per_day = len(step) / 20
    assert per_day == pytest.approx(1.5 * 2.0 * 4, rel=0.15)
    assert set(np.unique(charger)) == {3, 7}
    assert np.all(departure >= t[step] + 900.0) and np.all((need >= 2) & (need <= 120))
    hours = (t[step] % 86400) / 3600
    assert abs(np.median(hours) - 9.0) < 1.0
