"""The live ``ecogrid demo``: everything on one machine - broker, device emulator, service, API.

Uses the broker at ``ECOGRID_MQTT_URL`` when it answers, else starts a
private Mosquitto (``adapters.broker``) under ``$ECOGRID_DATA_DIR``; runs
the device emulator for the registry's fleet in a child process
(``ecogrid devices simulate``); serves the live service and its API on
http://127.0.0.1:8000 and prints the URL and a first admin's credentials
(``ECOGRID_ADMIN_USER``/``ECOGRID_ADMIN_PASSWORD``, or generated). Ctrl-C
stops it all.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import Any

log = logging.getLogger(__name__)


def broker_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when a TCP connection to the broker URL's host and port succeeds."""
    from adapters.mqtt.client import parse_broker_url

    try:
        target = parse_broker_url(url)
        socket.create_connection((target.host, target.port), timeout=timeout_s).close()
    except (OSError, ValueError):
        return False
    return True


def run_live_demo(args: argparse.Namespace) -> int:
    """Start broker (if needed), emulator, service and API; block until Ctrl-C."""
    import uvicorn

    from adapters.broker import Broker, BrokerError
    from adapters.registry import RegistryError, open_registry
    from api.app import create_app, load_or_import_fleet
    from api.settings import load_settings
    from twin.fleet import FleetError, save_fleet

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
    broker: Any = None
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

        def ready(svc: Any) -> None:
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
            svc.warm_up()

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
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The live demo's options (added to ``ecogrid demo``)."""
    p.add_argument("--host", default="127.0.0.1", help="API address")
    p.add_argument("--port", type=int, default=8000, help="API port")


__all__ = ["add_arguments", "broker_answers", "run_live_demo"]
