"""Reports: periods, the numbers of a small fixed case, the three formats, the scheduler
and ``ecogrid report`` end to end."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from adapters.history import History
from adapters.registry import fleet as fleet_repo
from adapters.registry import open_registry
from api.analytics import reports as rp
from api.cli.main import main as ecogrid
from tests.api.analytics.test_analytics_energy import NOW_S, TARIFF, P, T, write_history
from tests.twin.test_fleet import small_records
from twin.fleet import Fleet

# The snapshots are 30 min apart: the raw tier's snapshot period; read inside raw retention.
RAW = {"now_s": NOW_S, "raw_step_s": 1800.0, "raw_days": 7.0}


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet.from_records(*small_records())


def _history(root, fleet, times) -> History:
    write_history(root, fleet.device_id.tolist(), times, P)
    return History(root)


def test_parse_period():
    nov = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    assert rp.parse_period("2026-11") == (nov, datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    assert rp.parse_period("2026-12")[1] == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    w48 = rp.parse_period("2026-W48")
    assert w48[0] == datetime(2026, 11, 23, tzinfo=UTC).timestamp() and w48[1] - w48[0] == 7 * 86400
    assert rp.parse_period("2026-11-27")[1] - rp.parse_period("2026-11-27")[0] == 86400
    for bad in ("2026-13", "Nov 2026", "2026-W60"):
        with pytest.raises(rp.ReportError, match="is not YYYY-MM"):
            rp.parse_period(bad)


def test_report_numbers_and_formats(tmp_path, fleet):
    history = _history(tmp_path / "history", fleet, T)
    rep = rp.build_report(history, fleet, "2026-11", TARIFF, **RAW)
    assert rep.resolution_s == 1800.0  # read from the raw snapshots
    assert rep.totals["generation_kwh"] == pytest.approx(70.0)
    assert rep.totals["cost_eur"] == pytest.approx(6.25)
    assert rep.totals["co2_avoided_kg"] == pytest.approx(21.0)
    assert rep.sites.set_index("site_id").loc["B", "export_kwh"] == pytest.approx(10.0)
    csv = rp.render(rep, "csv").decode()
    assert csv.startswith("# EcoGrid report 2026-11")
    daily = pd.read_csv(io.StringIO(csv.split("# fleet per day\n")[1].split("\n#")[0]))
    assert daily.generation_kwh.tolist() == pytest.approx([70.0])
    page = rp.render(rep, "html").decode()
    assert "<h1>EcoGrid report 2026-11</h1>" in page and "70.00" in page
    pdf = rp.render(rep, "pdf")
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    with pytest.raises(rp.ReportError, match="format must be one of"):
        rp.render(rep, "docx")
    empty = rp.build_report(history, fleet, "2026-10", TARIFF, **RAW)
    assert len(empty.daily) == 0 and empty.totals["generation_kwh"] == 0.0
    assert rp.render(empty, "pdf").startswith(b"%PDF")


def test_scheduler_writes_each_period_once(tmp_path, fleet):
    history = _history(tmp_path / "history", fleet, T)
    announced = []
    sched = rp.ReportScheduler(
        lambda period: rp.build_report(history, fleet, period, TARIFF, **RAW),
        tmp_path / "out", ["daily", "monthly"], announce=announced.append)
    now = datetime(2026, 12, 2, 0, 5, tzinfo=UTC).timestamp()
    files = sched.run_due(now)
    assert sorted(p.name for p in files) == sorted(
        f"report-{p}.{f}" for p in ("2026-12-01", "2026-11") for f in ("csv", "html", "pdf"))
    assert [a["period"] for a in announced] == ["2026-12-01", "2026-11"]
    assert sched.run_due(now + 60) == []          # once only
    assert rp.last_complete_periods(now, ["weekly"]) == ["2026-W48"]
    with pytest.raises(rp.ReportError, match="schedule 'hourly'"):
        rp.ReportScheduler(lambda p: None, tmp_path, ["hourly"])  # type: ignore[arg-type]


def test_ecogrid_report_cli(tmp_path, fleet, capsys):
    data = tmp_path / "data"
    reg = open_registry(f"sqlite:///{(data / 'ecogrid.db').resolve()}")
    with reg.session() as s:
        fleet_repo.import_fleet(s, fleet)
    with reg.session() as s:
        stored = fleet_repo.load_fleet(s)
    reg.close()
    # Yesterday (UTC), 01:00: inside the raw retention of the CLI's default settings, which
    # read at the time of the run; the raw snapshot period is history_flush_s (10 s).
    day = datetime.fromtimestamp(time.time() - 86400, UTC).date()
    t0 = datetime(day.year, day.month, day.day, 1, tzinfo=UTC).timestamp()
    _history(data / "history", stored, t0 + np.array([0.0, 10.0, 20.0, 30.0]))
    out = tmp_path / "r.csv"
    assert ecogrid(["report", "--period", day.isoformat(), "--format", "csv", "--data-dir",
                    str(data), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    text = out.read_text()
    assert "from telemetry at 10 s resolution" in text.splitlines()[0]
    daily = pd.read_csv(io.StringIO(text.split("# fleet per day\n")[1].split("\n#")[0]))
    # rows are in the registry's order; PV A: 100 and 40 kW for 10 s each
    assert daily.generation_kwh.iloc[0] == pytest.approx(140.0 * 10 / 3600, rel=1e-6)
    assert ecogrid(["report", "--period", "2026-xx", "--data-dir", str(data)]) == 2
    assert "is not YYYY-MM" in capsys.readouterr().err
