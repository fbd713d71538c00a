"""``ecogrid serve`` (the live service and its API) and ``ecogrid users ...``.

    ecogrid serve [--host 127.0.0.1] [--port 8000] [--config FILE] [--offline]
    ecogrid users create NAME --role admin|operator|viewer [--password PW]
    ecogrid users list
    ecogrid users passwd NAME [--password PW]

Settings come from ``ECOGRID_*`` environment variables and the optional
``--config`` file (see docs/configuration.md).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the live service and its REST/WebSocket API")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--config", default=None, help=".env-style settings file (ECOGRID_*)")
    p.add_argument("--offline", action="store_true",
                   help="no broker connection (API and registry only)")
    p.set_defaults(func=serve)

    u = subparsers.add_parser("users", help="manage API users in the registry")
    u.add_argument("--config", default=None, help=".env-style settings file (ECOGRID_*)")
    us = u.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    c = us.add_parser("create", help="create a user")
    c.add_argument("name")
    c.add_argument("--role", required=True, choices=("admin", "operator", "viewer"))
    c.add_argument("--password", default=None, help="asked for when not given")
    c.set_defaults(func=users_create)
    pw = us.add_parser("passwd", help="set a user's password (revokes their refresh tokens)")
    pw.add_argument("name")
    pw.add_argument("--password", default=None, help="asked for when not given")
    pw.set_defaults(func=users_passwd)
    ls = us.add_parser("list", help="list users")
    ls.set_defaults(func=users_list)


def _settings(args: argparse.Namespace, **overrides: Any) -> Any:
    from api.settings import load_settings

    try:
        return load_settings(args.config, **overrides)
    except ValueError as exc:
        print(f"ecogrid: {exc}", file=sys.stderr)
        return None


def _ask_password() -> str | None:
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        return line or None
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        print("ecogrid: the passwords differ", file=sys.stderr)
        return None
    return first


def _accounts(settings: Any) -> Any:
    from adapters.registry import RegistryError, open_registry
    from api.accounts import Accounts

    try:
        registry = open_registry(settings.registry_url())
    except RegistryError as exc:
        print(f"ecogrid: {exc}", file=sys.stderr)
        return None
    return Accounts(registry, settings.secret())


def _with_password(args: argparse.Namespace, action: Callable[[Any, str], str]) -> int:
    """Ask for a password if none was given, then run ``action(accounts, password)``.

    ``action`` returns the line to print on success; registry and value errors
    are printed as one line, and the registry is closed in every case.
    """
    from adapters.registry import RegistryError

    settings = _settings(args)
    if settings is None:
        return 2
    password = args.password or _ask_password()
    if not password:
        print("ecogrid: no password given", file=sys.stderr)
        return 2
    accounts = _accounts(settings)
    if accounts is None:
        return 1
    try:
        done = action(accounts, password)
    except (RegistryError, ValueError) as exc:
        print(f"ecogrid: {exc}", file=sys.stderr)
        return 1
    finally:
        accounts.registry.close()
    print(done)
    return 0


def users_create(args: argparse.Namespace) -> int:
    def create(accounts: Any, password: str) -> str:
        rec = accounts.create_user(args.name, password, args.role, time.time(), by="cli")
        return f"created user {rec['name']!r} with role {rec['role']}"

    return _with_password(args, create)


def users_passwd(args: argparse.Namespace) -> int:
    def reset(accounts: Any, password: str) -> str:
        accounts.reset_password(args.name, password, "cli", time.time())
        return f"password of {args.name!r} changed"

    return _with_password(args, reset)


def users_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 2
    accounts = _accounts(settings)
    if accounts is None:
        return 1
    try:
        for u in accounts.list_users():
            print(f"{u['name']:24s} {u['role']}")
    finally:
        accounts.registry.close()
    return 0


def preflight(settings: Any) -> str | None:
    """Check what the service needs before it starts; the problem as a message, or None.

    Opens (and migrates) the registry, loads the fleet into an empty one, and
    checks that the broker accepts a TCP connection (unless offline).
    """
    import socket

    from adapters.registry import RegistryError, open_registry
    from api.app import load_or_import_fleet
    from twin.fleet import FleetError

    try:
        registry = open_registry(settings.registry_url())
    except RegistryError as exc:
        return str(exc)
    try:
        if settings.mode == "replica":  # a replica never imports a fleet (api.live.replica)
            from api.live.replica import replica_fleet

            replica_fleet(registry, settings)
        else:
            load_or_import_fleet(registry, settings)
    except (FleetError, OSError, ValueError, RuntimeError) as exc:
        return f"cannot load the fleet: {exc}"
    finally:
        registry.close()
    if settings.mode == "offline":
        return None
    from adapters.mqtt.client import parse_broker_url

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
    import uvicorn

    from api.app import create_app

    overrides: dict[str, Any] = {"mode": "offline"} if args.offline else {}
    settings = _settings(args, **overrides)
    if settings is None:
        return 2
    logging.getLogger().setLevel(settings.log_level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    problem = preflight(settings)
    if problem:
        print(f"ecogrid serve: {problem}", file=sys.stderr)
        return 1

    def ready(svc: Any) -> None:
        print(f"EcoGrid service on http://{args.host}:{args.port} (API docs at /docs); "
              f"{svc.fleet.n_sites} sites, {svc.fleet.n_devices} devices", flush=True)
        svc.warm_up()

    from api.live.logs import configure_logging

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
