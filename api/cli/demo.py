"""``ecogrid demo``: the whole system on one machine, or the one-day twin run.

The demo is the README's main job. ``ecogrid demo`` starts a broker (the one
at ``ECOGRID_MQTT_URL`` when it answers, else a private Mosquitto), the device
emulator with the reference fleet, the live service and its API on
http://127.0.0.1:8000, and prints the URL and a first admin's credentials;
Ctrl-C stops it all (see :mod:`api.cli.demo_live`).

``ecogrid demo --twin-only`` generates the reference fleet, drives the numba
twin through one day at 15-minute steps under clear-sky weather, typical load
shapes, EV arrivals and a day-ahead-like price curve, and prints the fleet KPIs.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

import numpy as np

from twin.fleet import EV_CHARGER
from twin.generator import generate_fleet
from twin.kpis import fleet_kpis
from twin.model import Twin
from twin.profiles import load_fraction, utc_offset_s
from twin.solar import clear_sky, sun_position
from twin.state import StepInputs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run everything on this machine: broker, device "
                              "emulator, service and API (--twin-only: one simulated day)")
    p.add_argument("--twin-only", action="store_true",
                   help="only simulate one day of the twin and print the KPIs")
    from api.cli.demo_live import add_arguments

    add_arguments(p)  # --host, --port of the live demo's API
    p.add_argument("--date", default="2026-06-21", help="--twin-only: simulated day (UTC), "
                   "YYYY-MM-DD")
    p.add_argument("--seed", type=int, default=0, help="fleet and EV arrivals seed")
    p.add_argument("--sites", type=int, default=342, help="number of sites (342 = reference)")
    p.add_argument("--step-min", type=float, default=15.0, help="step [min]")
    p.add_argument("--json", action="store_true", help="print the twin run's KPIs as JSON "
                   "only (implies --twin-only)")
    p.set_defaults(func=run)


def simulate_day(twin: Twin, start_s: float, dt_s: float, seed: int = 0) -> float:
    """Drive ``twin`` for 24 h from ``start_s``; returns the wall time spent [s]."""
    fleet = twin.fleet
    n_steps = round(86400.0 / dt_s)
    times = start_s + dt_s * np.arange(n_steps)
    mid = times + dt_s / 2.0
    zen, az = sun_position(fleet.lat_deg, fleet.lon_deg, mid)
    ghi, dni, dhi = clear_sky(zen, mid)
    load = load_fraction(mid, utc_offset_s(fleet.timezone, start_s))
    hour = (mid % 86400.0) / 3600.0
    # Day-ahead-like price [EUR/MWh]: morning and evening peaks, a midday solar dip.
    price = 90.0 + 40.0 * np.exp(-((hour - 8.0) ** 2) / 4.0) + 70.0 * np.exp(
        -((hour - 19.0) ** 2) / 5.0) - 45.0 * np.exp(-((hour - 13.0) ** 2) / 6.0)
    rng = np.random.default_rng(seed)
    chargers = np.flatnonzero(fleet.device_type == EV_CHARGER)
    n_sites = fleet.n_sites
    wall = time.perf_counter()
    for k, t in enumerate(times):
        # EV arrivals: each charger sees a car with a chance that peaks in the morning.
        p_arrive = 0.02 + 0.10 * np.exp(-((hour[k] - 9.0) ** 2) / 6.0)
        arriving = chargers[rng.random(len(chargers)) < p_arrive * dt_s / 900.0]
        if len(arriving):
            twin.plug_in(arriving, rng.uniform(10.0, 60.0, len(arriving)),
                         t + rng.uniform(1.0, 8.0, len(arriving)) * 3600.0)
        inputs = StepInputs(
            ghi=ghi[k], dni=dni[k], dhi=dhi[k], zenith_deg=zen[k], azimuth_deg=az[k],
            temp_air_c=np.full(n_sites, 15.0 + 10.0 * np.sin(np.pi * (hour[k] - 8.0) / 12.0)),
            wind_m_s=np.full(n_sites, 2.0), load_frac=load[k],
            price_eur_per_mwh=np.full(n_sites, price[k]),
            feed_in_eur_per_mwh=np.full(n_sites, 0.6 * price[k]),
            co2_kg_per_mwh=np.full(n_sites, 350.0),
        )
        twin.step(t, dt_s, inputs)
    return time.perf_counter() - wall


def run(args: argparse.Namespace) -> int:
    if not (args.twin_only or args.json):  # --json is the twin run's output: implies it
        from api.cli.demo_live import run_live_demo

        return run_live_demo(args)
    try:
        day = datetime.strptime(args.date, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        print(f"ecogrid demo: --date {args.date!r} is not a date like 2026-06-21")
        return 2
    fleet = generate_fleet(n_sites=args.sites, seed=args.seed)
    twin = Twin(fleet, t_s=day.timestamp())
    wall_s = simulate_day(twin, day.timestamp(), args.step_min * 60.0, seed=args.seed)
    kpis = fleet_kpis(twin.params, twin.state, hours=24.0)
    if args.json:
        print(json.dumps({"fleet": fleet.summary(), "kpis": kpis}))
        return 0
    s = fleet.summary()
    print(f"EcoGrid twin demo - {args.date}, {s['sites']} sites, {s['devices']} devices, "
          f"{s['installed_capacity_mw']:,.1f} MW installed")
    print(f"  devices by type: {s['devices_by_type']}")
    print(f"  simulated 24 h at {args.step_min:g}-minute steps in {wall_s:.2f} s "
          f"({twin.backend} backend)")
    for key, value in kpis.items():
        if value is not None and key != "hours":
            print(f"  {key:28s} {value:14,.3f}")
    return 0
