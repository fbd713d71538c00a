"""``ecogrid demo``: the whole system on one machine, or the one-day twin run.

The demo is the README's main job. ``ecogrid demo`` starts a broker (the one
at ``ECOGRID_MQTT_URL`` when it answers, else a private Mosquitto), the device
emulator with the reference fleet, the live service and its API on
http://127.0.0.1:8000, and prints the URL and a first admin's credentials;
Ctrl-C stops it all (:func:`run_live_demo`).

``ecogrid demo --twin-only`` generates the reference fleet, drives the numba
twin through one day at 15-minute steps under clear-sky weather, typical load
shapes, EV arrivals and a day-ahead-like price curve, and prints the fleet KPIs.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
import uvicorn

from adapters.broker import Broker, BrokerError
from adapters.mqtt.client import parse_broker_url
from adapters.registry import RegistryError, open_registry
from api.app import create_app
from api.live.fleet import load_or_import_fleet
from api.live.runtime import Runtime
from api.settings import load_settings
from twin.fleet import EV_CHARGER, FleetError, save_fleet
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
    p.add_argument("--host", default="127.0.0.1", help="API address")
    p.add_argument("--port", type=int, default=8000, help="API port")
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


# -- the live demo -------------------------------------------------------------------
def broker_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when a TCP connection to the broker URL's host and port succeeds."""
    try:
        target = parse_broker_url(url)
        socket.create_connection((target.host, target.port), timeout=timeout_s).close()
    except (OSError, ValueError):
        return False
    return True


def run_live_demo(args: argparse.Namespace) -> int:
    """Start broker (if needed), emulator, service and API; block until Ctrl-C."""
    # --sites sizes the generated fleet unless the environment says otherwise.
    sites = getattr(args, "sites", None)
    overrides = {"fleet_sites": sites} if sites and "ECOGRID_FLEET_SITES" not in os.environ \
        else {}
    try:
        settings = load_settings(None, **overrides)
    except ValueError as exc:
        print(f"ecogrid demo: {exc}", file=sys.stderr)
        return 2
    data = settings.data_dir
    broker: Broker | None = None
    emulator: subprocess.Popen[bytes] | None = None
    try:
        try:
            registry = open_registry(settings.registry_url())
            fleet = load_or_import_fleet(registry, settings)
            registry.close()
        except (RegistryError, FleetError, OSError) as exc:
            print(f"ecogrid demo: {exc}", file=sys.stderr)
            return 1
        url = settings.mqtt_url
        if broker_answers(url):
            print(f"using the MQTT broker at {url}")
        else:
            try:
                broker = Broker(data / "mosquitto").start()
            except BrokerError as exc:
                print(f"ecogrid demo: no broker at {url} and none could be started: {exc}",
                      file=sys.stderr)
                return 1
            url = broker.url
            print(f"started a private Mosquitto at {url}")
        settings = settings.model_copy(update={"mqtt_url": url})
        fleet_file = data / "demo-fleet.json"
        save_fleet(fleet, fleet_file)
        data.mkdir(parents=True, exist_ok=True)
        with (data / "emulator.log").open("ab") as out:
            emulator = subprocess.Popen(
                [sys.executable, "-m", "api.cli.main", "devices", "simulate", "--broker", url,
                 "--fleet", str(fleet_file), "--interval", "1"], stdout=out,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        print(f"device emulator: {fleet.n_sites} sites, {fleet.n_devices} devices "
              f"(log: {data / 'emulator.log'})")

        def ready(rt: Runtime) -> None:
            created = app.state.first_admin
            base = f"http://{args.host}:{args.port}"
            print(f"\nEcoGrid is running: {base}  (API docs: {base}/docs)")
            if created:
                print(f"admin user: {created[0]}   password: {created[1]}")
            elif settings.admin_user:
                print(f"admin user: {settings.admin_user} (password from "
                      "ECOGRID_ADMIN_PASSWORD)")
            else:
                print("an admin exists already; `ecogrid users passwd NAME` sets a password")
            print("Ctrl-C stops everything.\n", flush=True)
            rt.warm_up()

        app = create_app(settings, on_ready=ready)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                lifespan="on", ws="websockets-sansio",
                                ws_per_message_deflate=False)
        server = uvicorn.Server(config)
        try:
            socket.create_connection((args.host, args.port), timeout=0.5).close()
            print(f"ecogrid demo: port {args.port} on {args.host} is taken; use --port",
                  file=sys.stderr)
            return 1
        except OSError:
            pass
        server.run()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if emulator is not None and emulator.poll() is None:
            emulator.send_signal(signal.SIGINT)
            try:
                emulator.wait(15)
            except subprocess.TimeoutExpired:
                emulator.kill()
        if broker is not None:
            broker.stop()
        print("stopped.")


def _die_with_parent() -> None:
    """In the child: ask Linux to stop it when the demo dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


