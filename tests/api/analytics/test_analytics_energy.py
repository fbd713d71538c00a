"""Analytics against a hand calculation on a small fixed case, read from the one telemetry
store (written by a :class:`adapters.history.HistoryWriter`, read by ``History``)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adapters.history import History, HistoryWriter, UnknownDeviceError
from adapters.registry import RegistryError
from api.analytics import energy as an
from api.analytics import market
from tests.twin.test_fleet import small_records
from twin.fleet import Fleet
from twin.kpis import Tariff

T0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
# rows: A-pv, A-bat, A-ev, A-load, B-bat; snapshots every 30 min, held 30 min each
P = np.array([[100.0, 0.0, -20.0, -50.0, -10.0],
              [40.0, -20.0, 0.0, -60.0, 0.0],
              [0.0, 30.0, 0.0, -30.0, 20.0],
              [999.0, 0.0, 0.0, 0.0, 0.0]])   # the last snapshot counts for nothing
T = T0 + np.array([0.0, 1800.0, 3600.0, 5400.0])
TARIFF = Tariff(import_price_eur_per_mwh=250.0, export_price_eur_per_mwh=90.0,
                co2_kg_per_mwh=300.0)
NOW_S = T0 + 86400.0  # the readers' "now": the snapshots are inside raw retention


def write_history(root: Path, device_ids: list[str], times, p_kw, writer_id: str = "test",
                  fleet_version: int = 0) -> None:
    """Snapshots of ``p_kw`` (NaN: no value) and an unknown ``soc`` into the store at ``root``,
    through the store's writer."""
    n = len(device_ids)
    with HistoryWriter(root, writer_id, device_ids, fleet_version) as w:
        for t, p in zip(times, p_kw, strict=True):
            p = np.asarray(p, dtype=np.float64)
            values = np.column_stack([p, np.full(n, np.nan)])
            ts = np.column_stack([np.where(np.isfinite(p), float(t), np.nan),
                                  np.full(n, np.nan)])
            w.append(float(t), ["p_kw", "soc"], values, ts)


def read_p(root: Path, start_s: float, end_s: float):
    """Raw ``p_kw`` snapshots in ``[start_s, end_s)``: times, powers, device ids."""
    got = History(root).read(start_s, end_s, "p_kw", now_s=NOW_S)
    assert got.tier == "raw"
    return got.t_s, got.values, got.device_ids


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet.from_records(*small_records())


@pytest.fixture(scope="module")
def history(tmp_path_factory, fleet):
    root = tmp_path_factory.mktemp("hist") / "history"
    write_history(root, fleet.device_id.tolist(), T, P)
    return root


def test_day_totals_per_site_and_fleet_by_hand(fleet, history):
    t, p, ids = read_p(history, T0, T0 + 86400)
    assert ids == fleet.device_id.tolist() and len(t) == 4
    tariff = TARIFF
    site = an.aggregate(fleet, t, p, tariff, every="day", scope="site", max_gap_s=1800)
    a = site[site.site_id == "A"].iloc[0]
    b = site[site.site_id == "B"].iloc[0]
    assert a.generation_kwh == pytest.approx(70.0)       # (100 + 40 + 0) x 0.5 h
    assert a.consumption_kwh == pytest.approx(80.0)      # (70 + 60 + 30) x 0.5 h
    assert a.export_kwh == pytest.approx(15.0) and a.import_kwh == pytest.approx(20.0)
    assert a.self_consumption_kwh == pytest.approx(55.0)  # (50 - 15) + 20 + 0
    assert b.import_kwh == pytest.approx(5.0) and b.export_kwh == pytest.approx(10.0)
    fleet_day = an.aggregate(fleet, t, p, tariff, every="day", max_gap_s=1800).iloc[0]
    assert fleet_day.period == pd.Timestamp("2026-11-01", tz="UTC")
    assert fleet_day.import_kwh == pytest.approx(25.0)
    assert fleet_day.cost_eur == pytest.approx(6.25)      # 25 kWh x 250 EUR/MWh
    assert fleet_day.revenue_eur == pytest.approx(2.25)   # 25 kWh x 90 EUR/MWh
    assert fleet_day.co2_avoided_kg == pytest.approx(21.0)  # 70 kWh x 300 kg/MWh
    # The store-reading path (what /analytics and reports use) gives the same table.
    table, plan = an.energy_table(History(history), fleet, T0, T0 + 86400, tariff, now_s=NOW_S,
                                  raw_step_s=1800.0, raw_days=7.0, every="day", scope="site")
    assert (plan.tier, plan.resolution_s) == ("raw", 1800.0)
    pd.testing.assert_frame_equal(table, site, check_dtype=False)


def test_hours_gaps_and_carbon_series(fleet, history):
    t, p, _ = read_p(history, T0, T0 + 86400)
    series = (np.array([T0, T0 + 1800]), np.array([400.0, 200.0]))
    hours = an.aggregate(fleet, t, p, Tariff(250.0, 90.0, co2_kg_per_mwh=series), every="hour",
                         max_gap_s=1800)
    assert len(hours) == 2
    assert hours.generation_kwh.tolist() == pytest.approx([70.0, 0.0])
    assert hours.import_kwh.tolist() == pytest.approx([25.0, 0.0])
    assert hours.export_kwh.tolist() == pytest.approx([15.0, 10.0])
    assert hours.co2_avoided_kg.iloc[0] == pytest.approx(50 * 0.4 + 20 * 0.2)
    # with a 10-minute gap limit each snapshot counts for 1/6 h only
    short = an.aggregate(fleet, t, p, TARIFF, every="month", max_gap_s=600)
    assert short.generation_kwh.iloc[0] == pytest.approx(140.0 / 6)


def test_site_filter_range_and_errors(fleet, history):
    t, p, _ = read_p(history, T0 + 1800, T0 + 3600)  # one snapshot
    assert len(t) == 1
    one = an.aggregate(fleet, t, p, TARIFF, every="day", site_id="B", scope="site")
    assert one.generation_kwh.tolist() == [0.0]                # a lone snapshot holds nothing
    with pytest.raises(an.AnalyticsError, match="every must be one of"):
        an.aggregate(fleet, t, p, TARIFF, every="week")
    with pytest.raises(RegistryError, match="no site 'Z'"):  # HTTP 404, as /history's
        an.aggregate(fleet, t, p, TARIFF, site_id="Z")
    with pytest.raises(UnknownDeviceError, match="no history for device"):
        History(history.parent / "nope").read(0, 1, "p_kw", devices=["A-pv"], now_s=NOW_S)


def test_csv_and_parquet_exports_round_trip(fleet, history):
    t, p, _ = read_p(history, T0, T0 + 86400)
    df = an.aggregate(fleet, t, p, TARIFF, every="hour", scope="site", max_gap_s=1800)
    csv = pd.read_csv(io.BytesIO(an.to_csv(df)))
    assert list(csv.columns) == ["period", "site_id", *an.QUANTITIES]
    assert csv.period.iloc[0] == "2026-11-01T00:00:00+00:00"
    back = pd.read_parquet(io.BytesIO(an.to_parquet(df)))
    assert back.generation_kwh.sum() == pytest.approx(70.0)
    assert an.records(df)[0]["period"] == "2026-11-01T00:00:00+00:00"


def test_carbon_csv(tmp_path):
    f = tmp_path / "co2.csv"
    f.write_text("time,co2_kg_per_mwh\n2026-11-01T00:00:00Z,400\n2026-11-01T12:00:00Z,100\n")
    s = market.read_carbon_csv(f)
    assert s[0].tolist() == [T0, T0 + 12 * 3600] and s[1].tolist() == [400.0, 100.0]
    tariff = Tariff(250.0, 90.0, co2_kg_per_mwh=s)
    assert tariff.at(np.array([T0 - 10, T0 + 3600, T0 + 13 * 3600]))[2].tolist() == [
        400.0, 400.0, 100.0]
    nan = tmp_path / "nan.csv"
    nan.write_text("time,co2_kg_per_mwh\n2026-11-01T00:00:00Z,high\n")
    with pytest.raises(market.MarketError, match="a number co2_kg_per_mwh"):
        market.read_carbon_csv(nan)
    bad = tmp_path / "bad.csv"
    bad.write_text("t,value\n1,2\n")
    with pytest.raises(market.MarketError, match="lacks column"):
        market.read_carbon_csv(bad)
