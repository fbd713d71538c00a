"""``ecogrid report``: the analytics report of a period, from the registry's fleet and the
one telemetry store (``ECOGRID_HISTORY_URL``).

    ecogrid report --period 2026-11 --format html [--out FILE] [--config FILE]
    ecogrid report --period 2026-W48 --format pdf --data-dir ./data
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from adapters.history import History, HistoryError
from adapters.registry import RegistryError, open_registry
from adapters.registry import fleet as fleet_repo
from api.analytics import reports
from api.analytics.energy import AnalyticsError
from api.analytics.market import service_market
from api.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="write the energy report of a month, week or day",
                              description="Generation, consumption, import/export, "
                              "self-consumption, cost, revenue and CO2 avoided of a period "
                              "(UTC), per day and per site.")
    p.add_argument("--period", required=True,
                   help="YYYY-MM (month), YYYY-Www (ISO week) or YYYY-MM-DD (day)")
    p.add_argument("--format", default="html", choices=("html", "pdf", "csv"))
    p.add_argument("--out", default=None, help="output file (default: report-PERIOD.FORMAT "
                   "in the report folder)")
    p.add_argument("--config", default=None, help=".env-style settings file (ECOGRID_*)")
    p.add_argument("--data-dir", default=None, help="data folder (registry, history)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        overrides = {"data_dir": Path(args.data_dir)} if args.data_dir else {}
        settings = load_settings(args.config, **overrides)
        reports.parse_period(args.period)
        registry = open_registry(settings.registry_url())
        try:
            with registry.session() as s:
                fleet = fleet_repo.load_fleet(s)
        finally:
            registry.close()
        if fleet is None:
            print(f"error: the registry at {settings.registry_url()} holds no fleet yet",
                  file=sys.stderr)
            return 2
        history = History(settings.history_root(), raw_days=settings.history_raw_days)
        rep = reports.build_report(history, fleet, args.period,
                                   service_market(settings).tariff, now_s=time.time(),
                                   raw_step_s=settings.history_flush_s,
                                   raw_days=settings.history_raw_days)
        body = reports.render(rep, args.format)
    except (ValueError, RegistryError, AnalyticsError, HistoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (settings.report_dir or settings.data_dir / "reports"
                                           ) / f"report-{args.period}.{args.format}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(body)
    print(f"wrote {out} (telemetry at {rep.resolution_s:g} s resolution, generation "
          f"{rep.totals['generation_kwh']:,.1f} kWh)")
    return 0
