"""Reports: the analytics of a period as CSV, HTML or PDF, on demand or on a schedule.

A period is a month (``2026-11``), an ISO week (``2026-W48``) or a day
(``2026-11-27``), in UTC. :func:`build_report` reads the period from the one
telemetry store and aggregates it per day (fleet) and per site (period totals)
with :func:`api.analytics.energy.energy_table`; :func:`render` writes it as ``csv`` (the daily fleet
table then the site table), ``html`` (one self-contained page) or ``pdf``
(matplotlib's ``PdfPages``: totals and tables, a daily energy chart).

:class:`ReportScheduler` writes the reports of periods that just ended
(``daily``, ``weekly``, ``monthly``) into a folder, once each, and announces
them through a callback (the live service pushes them on the WebSocket).
"""

from __future__ import annotations

import asyncio
import html
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from adapters.history import History
from api.analytics.energy import energy_table, to_csv
from api.analytics.market import Market
from api.settings import Settings
from twin.fleet import Fleet
from twin.kpis import QUANTITIES, Tariff

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("csv", "html", "pdf")
SCHEDULES: tuple[str, ...] = ("daily", "weekly", "monthly")


class ReportError(ValueError):
    """A bad report request (period, format); names what is wrong."""


def parse_period(period: str) -> tuple[float, float]:
    """``(start_s, end_s)`` [Unix s, UTC] of ``YYYY-MM``, ``YYYY-Www`` or ``YYYY-MM-DD``."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}", period):
            y, m = map(int, period.split("-"))
            start = datetime(y, m, 1, tzinfo=UTC)
            end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
        elif re.fullmatch(r"\d{4}-W\d{2}", period):
            y, w = int(period[:4]), int(period[6:])
            start = datetime.combine(date.fromisocalendar(y, w, 1), datetime.min.time(), UTC)
            end = start + timedelta(days=7)
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", period):
            start = datetime.fromisoformat(period).replace(tzinfo=UTC)
            end = start + timedelta(days=1)
        else:
            raise ValueError("unknown form")
    except ValueError:
        raise ReportError(f"period {period!r} is not YYYY-MM, YYYY-Www or YYYY-MM-DD") from None
    return start.timestamp(), end.timestamp()


@dataclass
class Report:
    """The numbers of one report: ``daily`` fleet rows, ``sites`` period totals, ``totals``."""

    period: str
    start_s: float
    end_s: float
    daily: pd.DataFrame
    sites: pd.DataFrame
    totals: dict[str, float]
    resolution_s: float


def build_report(history: History, fleet: Fleet, period: str, tariff: Tariff, *,
                 now_s: float, raw_step_s: float, raw_days: float) -> Report:
    """Aggregate the store over ``period`` (see the module docstring); ``raw_step_s`` is
    the snapshot period of the raw tier [s], ``raw_days`` its retention [days]."""
    start, end = parse_period(period)
    kw = dict(now_s=now_s, raw_step_s=raw_step_s, raw_days=raw_days)
    daily, plan = energy_table(history, fleet, start, end, tariff, every="day", **kw)
    by_site, _ = energy_table(history, fleet, start, end, tariff, scope="site",
                              every="month" if end - start > 86400 * 7 else "day", **kw)
    sites = (by_site.groupby("site_id", as_index=False)[list(QUANTITIES)].sum()
             if len(by_site) else pd.DataFrame(columns=["site_id", *QUANTITIES]))
    totals = {q: float(daily[q].sum()) if len(daily) else 0.0 for q in QUANTITIES}
    return Report(period, start, end, daily, sites, totals, plan.resolution_s)


def render(report: Report, fmt: str) -> bytes:
    """The report as ``csv``, ``html`` or ``pdf`` bytes."""
    if fmt == "csv":
        return _csv(report)
    if fmt == "html":
        return _html(report).encode()
    if fmt == "pdf":
        return _pdf(report)
    raise ReportError(f"format must be one of {list(FORMATS)}, got {fmt!r}")


def _csv(r: Report) -> bytes:
    head = (f"# EcoGrid report {r.period} (UTC), from telemetry at {r.resolution_s:g} s "
            "resolution\n# fleet per day\n")
    mid = "\n# per site, period totals\n"
    return head.encode() + to_csv(r.daily) + mid.encode() + r.sites.to_csv(
        index=False).encode()


def _table(df: pd.DataFrame) -> str:
    out = df.copy()
    if "period" in out:
        out["period"] = out["period"].map(lambda x: pd.Timestamp(x).strftime("%Y-%m-%d"))
    return out.to_html(index=False, float_format=lambda x: f"{x:,.2f}", border=0)


def _html(r: Report) -> str:
    totals = "".join(f"<tr><th>{html.escape(k)}</th><td>{v:,.2f}</td></tr>"
                     for k, v in r.totals.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>EcoGrid report "
            f"{html.escape(r.period)}</title><style>body{{font-family:sans-serif}}"
            f"td,th{{padding:2px 8px;text-align:right}}</style></head><body>"
            f"<h1>EcoGrid report {html.escape(r.period)}</h1>"
            f"<p>UTC, from telemetry at {r.resolution_s:g} s resolution. Energies in kWh, "
            f"money in EUR, "
            f"CO2 in kg.</p><h2>Totals</h2><table>{totals}</table>"
            f"<h2>Fleet per day</h2>{_table(r.daily)}<h2>Per site</h2>{_table(r.sites)}"
            f"</body></html>")


def _pdf(r: Report) -> bytes:
    buf = io.BytesIO()
    with PdfPages(buf, metadata={"Title": f"EcoGrid report {r.period}"}) as pdf:
        fig = Figure(figsize=(8.27, 11.69))
        ax = fig.add_subplot(2, 1, 1)
        ax.axis("off")
        ax.set_title(f"EcoGrid report {r.period} (UTC)")
        rows = [[k, f"{v:,.2f}"] for k, v in r.totals.items()]
        ax.table(cellText=rows, colLabels=["quantity", "total"], loc="center")
        ax2 = fig.add_subplot(2, 1, 2)
        if len(r.daily):
            days = pd.to_datetime(r.daily["period"]).dt.strftime("%d")
            ax2.bar(days, r.daily["generation_kwh"], label="generation")
            ax2.bar(days, -r.daily["consumption_kwh"], label="consumption")
            ax2.legend()
        ax2.set_ylabel("kWh per day")
        pdf.savefig(fig)
        if len(r.sites):
            fig2 = Figure(figsize=(11.69, 8.27))
            ax3 = fig2.add_subplot(1, 1, 1)
            ax3.axis("off")
            ax3.set_title("per site (kWh, EUR, kg)")
            shown = r.sites.head(40)
            ax3.table(cellText=[[row[0], *(f"{x:,.1f}" for x in row[1:])]
                                for row in shown.itertuples(index=False)],
                      colLabels=[c.replace("_", " ") for c in shown.columns], loc="center")
            pdf.savefig(fig2)
    return buf.getvalue()


def write_report(report: Report, fmt: str, folder: str | Path) -> Path:
    """Write ``report-{period}.{fmt}`` into ``folder`` (atomically); returns the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"report-{report.period}.{fmt}"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(render(report, fmt))
    tmp.replace(path)
    return path


def last_complete_periods(now_s: float, schedules: list[str]) -> list[str]:
    """The periods that ended most recently before ``now_s`` for each schedule."""
    now = datetime.fromtimestamp(now_s, UTC)
    out = []
    for sch in schedules:
        if sch == "daily":
            out.append((now.date() - timedelta(days=1)).isoformat())
        elif sch == "weekly":
            y, w, _ = (now.date() - timedelta(days=7)).isocalendar()
            out.append(f"{y}-W{w:02d}")
        elif sch == "monthly":
            first = now.date().replace(day=1) - timedelta(days=1)
            out.append(f"{first.year}-{first.month:02d}")
        else:
            raise ReportError(f"schedule {sch!r} is not one of {list(SCHEDULES)}")
    return out


class ReportScheduler:
    """Writes each just-ended period's report once (all formats) and announces it.

    Parameters
    ----------
    make : callable
        ``make(period) -> Report``.
    folder : Path
        Where the reports go.
    schedules : list of str
        Of ``daily``, ``weekly``, ``monthly``.
    announce : callable, optional
        Called with ``{"event": "report", "period", "files"}`` per written report.
    formats : tuple of str
        Formats written.
    """

    def __init__(self, make: Callable[[str], Report], folder: str | Path, schedules: list[str],
                 announce: Callable[[dict[str, Any]], None] | None = None,
                 formats: tuple[str, ...] = FORMATS):
        for s in schedules:
            if s not in SCHEDULES:
                raise ReportError(f"schedule {s!r} is not one of {list(SCHEDULES)}")
        self.make = make
        self.folder = Path(folder)
        self.schedules = schedules
        self.announce = announce
        self.formats = formats

    def run_due(self, now_s: float) -> list[Path]:
        """Write the reports of ended periods that are not in the folder yet."""
        written: list[Path] = []
        for period in last_complete_periods(now_s, self.schedules):
            if all((self.folder / f"report-{period}.{f}").exists() for f in self.formats):
                continue
            rep = self.make(period)
            files = [write_report(rep, f, self.folder) for f in self.formats]
            written.extend(files)
            if self.announce is not None:
                self.announce({"event": "report", "period": period,
                               "files": [p.name for p in files]})
        return written

    async def run(self, clock: Callable[[], float], every_s: float = 300.0) -> None:
        """Check every ``every_s`` until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.run_due, clock())
            except Exception:
                log.exception("scheduled report failed; continuing")
            await asyncio.sleep(every_s)


def report_scheduler(settings: Settings, fleet: Callable[[], Fleet], history: History,
                     market: Market, clock: Callable[[], float],
                     announce: Callable[[dict[str, Any]], None]) -> ReportScheduler | None:
    """The live service's report scheduler (None when ``report_schedule`` is empty).

    Reports go to ``report_dir`` (default ``$ECOGRID_DATA_DIR/reports``) and are
    announced through ``announce`` (the WebSocket ``alerts`` channel) as
    ``{"event": "report", "period", "files"}``.
    """
    schedules = [s.strip() for s in (settings.report_schedule or "").split(",") if s.strip()]
    if not schedules:
        return None
    folder = settings.report_dir or settings.data_dir / "reports"

    def make(period: str) -> Report:
        return build_report(history, fleet(), period, market.tariff, now_s=clock(),
                            raw_step_s=settings.history_flush_s,
                            raw_days=settings.history_raw_days)

    return ReportScheduler(make, folder, schedules, announce=announce)
