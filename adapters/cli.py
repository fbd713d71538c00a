"""``ecogrid devices simulate`` and ``ecogrid mqtt credentials`` (``ecogrid ingest``, which
needs the service's settings and registry, is :mod:`api.cli.ingest`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from adapters.credentials import gateway_user, read_secrets, write_credentials
from adapters.emulator import Emulator
from adapters.mqtt.client import parse_broker_url
from twin.fleet import Fleet, FleetError, read_fleet
from twin.generator import REFERENCE_SITES, generate_fleet

log = logging.getLogger(__name__)


def fleet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fleet", metavar="FILE",
                   help="fleet file (JSON or Parquet); without it the generator makes one")
    p.add_argument("--sites", type=int, default=REFERENCE_SITES,
                   help="generated fleet: number of sites (default: the reference fleet)")
    p.add_argument("--seed", type=int, default=0, help="generated fleet: seed")


def load_fleet(args: argparse.Namespace) -> Fleet:
    """The fleet of ``--fleet FILE``, else the generated one of ``--sites``/``--seed``."""
    if args.fleet:
        return read_fleet(args.fleet)
    return generate_fleet(args.sites, seed=args.seed)


def register(subparsers: Any) -> None:
    devices = subparsers.add_parser("devices", help="device gateways: emulate a fleet")
    dsub = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    sim = dsub.add_parser("simulate", help="run every site's gateway against a broker, "
                          "telemetry from the twin's physics")
    fleet_args(sim)
    sim.add_argument("--broker", required=True, help="broker URL, e.g. mqtt://127.0.0.1:1883")
    sim.add_argument("--interval", type=float, default=1.0, help="telemetry interval [s]")
    sim.add_argument("--duration", type=float, default=None,
                     help="stop after this many seconds (default: until Ctrl-C)")
    sim.add_argument("--credentials", metavar="SECRETS",
                     help="secrets.env from `ecogrid mqtt credentials` (gateway passwords)")
    sim.add_argument("--drop", action="append", default=[], metavar="SITE",
                     help="cut this site's gateway after the first tick (its Will fires); "
                          "repeatable")
    sim.add_argument("--delay", type=float, default=0.0,
                     help="hold every telemetry message back this many seconds")
    sim.add_argument("--jitter", type=float, default=0.0,
                     help="plus a random extra delay of up to this many seconds per message")
    sim.add_argument("--malformed-rate", type=float, default=0.0,
                     help="share (0..1) of messages replaced by malformed ones")
    sim.set_defaults(func=cmd_simulate)

    mqtt = subparsers.add_parser("mqtt", help="MQTT broker set-up")
    msub = mqtt.add_subparsers(dest="mqtt_command", required=True, metavar="ACTION")
    cred = msub.add_parser("credentials", help="write a Mosquitto password file and ACL")
    fleet_args(cred)
    cred.add_argument("--out", required=True, help="directory for passwd, acl, secrets.env")
    cred.add_argument("--service-user", default="ecogrid", help="EcoGrid service account")
    cred.add_argument("--service-password", default=None,
                      help="its password (default: random, written to secrets.env)")
    cred.set_defaults(func=cmd_credentials)


def fail(message: str) -> int:
    """Print ``message`` as the command's error; the exit code 2."""
    print(f"ecogrid: error: {message}", file=sys.stderr)
    return 2


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        return fail(f"--interval must be positive, got {args.interval}")
    if args.delay < 0 or args.jitter < 0:
        return fail("--delay and --jitter must not be negative")
    if not 0.0 <= args.malformed_rate <= 1.0:
        return fail(f"--malformed-rate must be within 0..1, got {args.malformed_rate}")
    try:
        parse_broker_url(args.broker)
        fleet = load_fleet(args)
    except (ValueError, FleetError, OSError) as exc:
        return fail(str(exc))
    unknown = [s for s in args.drop if s not in fleet.site_row]
    if unknown:
        return fail(f"--drop: unknown site(s) {', '.join(unknown)}")
    creds = None
    if args.credentials:
        try:
            secrets = read_secrets(args.credentials)
        except OSError as exc:
            return fail(f"--credentials: {exc}")
        creds = {s: (gateway_user(s), secrets.get(gateway_user(s), ""))
                 for s in fleet.site_id.tolist()}
    emu = Emulator(fleet, args.broker, interval_s=args.interval, credentials=creds,
                   jitter_s=args.jitter, delay_s=args.delay, malformed_rate=args.malformed_rate)
    try:
        emu.connect()
    except (OSError, ConnectionError) as exc:
        return fail(f"cannot reach the broker at {args.broker}: {exc}")
    print(f"emulating {fleet.n_sites} gateways, {fleet.n_devices} devices -> {args.broker} "
          f"every {args.interval:g} s", file=sys.stderr)
    try:
        if args.drop:
            emu.run(args.interval)
            for s in args.drop:
                emu.drop_gateway(s)
        figures = emu.run(args.duration)
    except KeyboardInterrupt:
        figures = {"published": emu.published}
    finally:
        emu.stop()
    print(json.dumps(figures))
    return 0


def cmd_credentials(args: argparse.Namespace) -> int:
    try:
        fleet = load_fleet(args)
        creds = write_credentials(fleet.site_id.tolist(), Path(args.out),
                                  service_user=args.service_user,
                                  service_password=args.service_password)
    except (ValueError, FleetError, OSError) as exc:
        return fail(str(exc))
    print(f"wrote {creds.password_file} and {creds.acl_file} ({len(creds.passwords)} users); "
          f"passwords in {creds.secrets_file} (keep it private)")
    print(f"mosquitto.conf: password_file {creds.password_file.resolve()}\n"
          f"                acl_file {creds.acl_file.resolve()}\n"
          "                allow_anonymous false")
    return 0
