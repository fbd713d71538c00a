"""``ecogrid users ...``: API users in the registry.

    ecogrid users create NAME --role admin|operator|viewer [--password PW]
    ecogrid users list
    ecogrid users passwd NAME [--password PW]

Settings come from ``ECOGRID_*`` environment variables and the optional
``--config`` file (see docs/configuration.md).
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable

from adapters.registry import RegistryError, open_registry
from api.accounts import Accounts
from api.settings import Settings, load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
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


def settings_or_none(config: str | None, **overrides: object) -> Settings | None:
    """The settings, or None after printing what is wrong with them."""
    try:
        return load_settings(config, **overrides)
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


def _accounts(settings: Settings) -> Accounts | None:
    try:
        registry = open_registry(settings.registry_url())
    except RegistryError as exc:
        print(f"ecogrid: {exc}", file=sys.stderr)
        return None
    return Accounts(registry, settings.secret())


def _with_password(args: argparse.Namespace, action: Callable[[Accounts, str], str]) -> int:
    """Ask for a password if none was given, then run ``action(accounts, password)``.

    ``action`` returns the line to print on success; registry and value errors
    are printed as one line, and the registry is closed in every case.
    """
    settings = settings_or_none(args.config)
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
    def create(accounts: Accounts, password: str) -> str:
        rec = accounts.create_user(args.name, password, args.role, time.time(), by="cli")
        return f"created user {rec['name']!r} with role {rec['role']}"

    return _with_password(args, create)


def users_passwd(args: argparse.Namespace) -> int:
    def reset(accounts: Accounts, password: str) -> str:
        accounts.reset_password(args.name, password, "cli", time.time())
        return f"password of {args.name!r} changed"

    return _with_password(args, reset)


def users_list(args: argparse.Namespace) -> int:
    settings = settings_or_none(args.config)
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
