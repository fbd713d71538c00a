"""``ecogrid serve``: the live service and its API.

    ecogrid serve [--host 127.0.0.1] [--port 8000] [--config FILE] [--offline]

Settings come from ``ECOGRID_*`` environment variables and the optional
``--config`` file (see docs/configuration.md).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

import uvicorn

from adapters.history import HistoryError, check_layout
from adapters.mqtt.client import parse_broker_url
from adapters.registry import RegistryError, open_registry
from api.app import create_app
from api.cli.users import settings_or_none
from api.live.fleet import load_or_import_fleet, registry_fleet
from api.live.logs import configure_logging
from api.live.runtime import Runtime
from api.settings import Settings
from twin.fleet import FleetError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the live service and its REST/WebSocket API")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--config", default=None, help=".env-style settings file (ECOGRID_*)")
    p.add_argument("--offline", action="store_true",
                   help="no broker connection (API and registry only)")
    p.set_defaults(func=serve)

def preflight(settings: Settings) -> str | None:
    """Check what the service needs before it starts; the problem as a message, or None.

    Checks the telemetry store's layout (an old one names the command that converts it),
    opens (and migrates) the registry, loads the fleet into an empty one, and checks that
    the broker accepts a TCP connection (unless offline).
    """
    try:
        check_layout(settings.data_dir)
    except HistoryError as exc:
        return str(exc)
    try:
        registry = open_registry(settings.registry_url())
    except RegistryError as exc:
        return str(exc)
    try:
        if settings.mode == "replica":  # a replica never imports a fleet
            registry_fleet(registry, settings.leader_url)
        else:
            load_or_import_fleet(registry, settings)
    except (FleetError, OSError, ValueError, RuntimeError) as exc:
        return f"cannot load the fleet: {exc}"
    finally:
        registry.close()
    if settings.mode == "offline":
        return None
    try:
        target = parse_broker_url(settings.mqtt_url)
    except ValueError as exc:
        return f"ECOGRID_MQTT_URL: {exc}"
    try:
        socket.create_connection((target.host, target.port), timeout=3).close()
    except OSError as exc:
        return (f"cannot reach the MQTT broker at {settings.mqtt_url} ({exc.strerror or exc}); "
                "start one, set ECOGRID_MQTT_URL, or run with --offline")
    return None


def serve(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {"mode": "offline"} if args.offline else {}
    settings = settings_or_none(args.config, **overrides)
    if settings is None:
        return 2
    logging.getLogger().setLevel(settings.log_level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    problem = preflight(settings)
    if problem:
        print(f"ecogrid serve: {problem}", file=sys.stderr)
        return 1

    def ready(rt: Runtime) -> None:
        fleet = rt.fleet.fleet
        print(f"EcoGrid service on http://{args.host}:{args.port} (API docs at /docs); "
              f"{fleet.n_sites} sites, {fleet.n_devices} devices", flush=True)
        rt.warm_up()

    # Only once the service really starts: the root logger's handlers are replaced.
    configure_logging(settings.log_level, json=settings.log_format == "json")
    app = create_app(settings, on_ready=ready)
    config = uvicorn.Config(app, host=args.host, port=args.port,
                            log_level=settings.log_level.lower(), lifespan="on",
                            ws="websockets-sansio",
                            # Compressing every message for every client costs the event
                            # loop more than the bandwidth it saves on a LAN.
                            ws_per_message_deflate=False,
                            log_config=None)  # keep configure_logging's handler
    server = uvicorn.Server(config)
    try:
        server.run()
    except (OSError, RuntimeError) as exc:
        print(f"ecogrid serve: {exc}", file=sys.stderr)
        return 1
    return 0 if server.started or not server.should_exit else 1
