"""``ecogrid devices simulate`` and ``ecogrid mqtt credentials``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from twin.fleet import Fleet, FleetError, read_fleet
from twin.generator import REFERENCE_SITES, generate_fleet

log = logging.getLogger(__name__)


def _fleet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fleet", metavar="FILE",
                   help="fleet file (JSON or Parquet); without it the generator makes one")
    p.add_argument("--sites", type=int, default=REFERENCE_SITES,
                   help="generated fleet: number of sites (default: the reference fleet)")
    p.add_argument("--seed", type=int, default=0, help="generated fleet: seed")


def _load_fleet(args: argparse.Namespace) -> Fleet:
    if args.fleet:
        return read_fleet(args.fleet)
    return generate_fleet(args.sites, seed=args.seed)


def register(subparsers: Any) -> None:
    devices = subparsers.add_parser("devices", help="device gateways: emulate a fleet")
    dsub = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    sim = dsub.add_parser("simulate", help="run every site's gateway against a broker, "
                          "telemetry from the twin's physics")
    _fleet_args(sim)
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
    _fleet_args(cred)
    cred.add_argument("--out", required=True, help="directory for passwd, acl, secrets.env")
    cred.add_argument("--service-user", default="ecogrid", help="EcoGrid service account")
    cred.add_argument("--service-password", default=None,
                      help="its password (default: random, written to secrets.env)")
    cred.set_defaults(func=cmd_credentials)

    ing = subparsers.add_parser("ingest", help="telemetry ingest worker (a shared-"
                                "subscription group member or one site partition): MQTT in, "
                                "zarr history out, /healthz and /metrics")
    _fleet_args(ing)
    ing.add_argument("--broker", default=None,
                     help="broker URL with credentials, e.g. mqtt://user:pw@host:1883 "
                          "(default: $ECOGRID_MQTT_URL)")
    ing.add_argument("--shared", default=None, metavar="GROUP",
                     help="join the MQTT shared-subscription group GROUP ($share/GROUP/...): "
                          "the broker splits the messages over the group's workers, any "
                          "number of them; the alternative to --partition")
    ing.add_argument("--partition", default=None, metavar="K/N",
                     help="take the sites of worker K of N (CRC-32 of the site id); "
                          "auto/N takes K from the StatefulSet pod name's ordinal "
                          "(default without --shared: 0/1, the whole fleet)")
    ing.add_argument("--pod-name", default=None,
                     help="pod name for --partition auto/N and the default client id of "
                          "--shared (default: $POD_NAME, $HOSTNAME)")
    ing.add_argument("--client-id", default=None, help="MQTT client id (default: "
                     "ecogrid-ingest-K; with --shared the pod name, else "
                     "ecogrid-ingest-HOSTNAME: unique per worker, it names the store)")
    ing.add_argument("--data-dir", default=None,
                     help="data folder (default: $ECOGRID_DATA_DIR or ./data)")
    ing.add_argument("--history", default=None, metavar="URL",
                     help="history root, a folder or file:// URL (default: "
                          "$ECOGRID_HISTORY_URL or DATA_DIR/history)")
    ing.add_argument("--flush-interval", type=float, default=5.0,
                     help="history snapshot and flush interval [s], at most 10")
    ing.add_argument("--metrics-port", type=int, default=9100,
                     help="port of /healthz and /metrics (0: any free port)")
    ing.set_defaults(func=cmd_ingest, sites=None)  # sites: --sites, $ECOGRID_FLEET_SITES


def _fail(message: str) -> int:
    print(f"ecogrid: error: {message}", file=sys.stderr)
    return 2


def cmd_simulate(args: argparse.Namespace) -> int:
    from adapters.credentials import gateway_user, read_secrets
    from adapters.emulator import Emulator
    from adapters.mqtt.client import parse_broker_url

    if args.interval <= 0:
        return _fail(f"--interval must be positive, got {args.interval}")
    if args.delay < 0 or args.jitter < 0:
        return _fail("--delay and --jitter must not be negative")
    if not 0.0 <= args.malformed_rate <= 1.0:
        return _fail(f"--malformed-rate must be within 0..1, got {args.malformed_rate}")
    try:
        parse_broker_url(args.broker)
        fleet = _load_fleet(args)
    except (ValueError, FleetError, OSError) as exc:
        return _fail(str(exc))
    unknown = [s for s in args.drop if s not in fleet.site_row]
    if unknown:
        return _fail(f"--drop: unknown site(s) {', '.join(unknown)}")
    creds = None
    if args.credentials:
        try:
            secrets = read_secrets(args.credentials)
        except OSError as exc:
            return _fail(f"--credentials: {exc}")
        creds = {s: (gateway_user(s), secrets.get(gateway_user(s), ""))
                 for s in fleet.site_id.tolist()}
    emu = Emulator(fleet, args.broker, interval_s=args.interval, credentials=creds,
                   jitter_s=args.jitter, delay_s=args.delay, malformed_rate=args.malformed_rate)
    try:
        emu.connect()
    except (OSError, ConnectionError) as exc:
        return _fail(f"cannot reach the broker at {args.broker}: {exc}")
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
    from adapters.credentials import write_credentials

    try:
        fleet = _load_fleet(args)
        creds = write_credentials(fleet.site_id.tolist(), Path(args.out),
                                  service_user=args.service_user,
                                  service_password=args.service_password)
    except (ValueError, FleetError, OSError) as exc:
        return _fail(str(exc))
    print(f"wrote {creds.password_file} and {creds.acl_file} ({len(creds.passwords)} users); "
          f"passwords in {creds.secrets_file} (keep it private)")
    print(f"mosquitto.conf: password_file {creds.password_file.resolve()}\n"
          f"                acl_file {creds.acl_file.resolve()}\n"
          "                allow_anonymous false")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    import os
    import signal

    from adapters.history_legacy import check_layout
    from adapters.ingest_worker import IngestWorker, default_client_id, parse_partition
    from adapters.mqtt.client import parse_broker_url
    from adapters.mqtt.topics import validate_group

    if args.shared is not None and args.partition is not None:
        return _fail("--shared and --partition are alternatives: give one of them "
                     "(--shared GROUP: a shared-subscription group member; --partition K/N: "
                     "a site partition)")
    url = args.broker or os.environ.get("ECOGRID_MQTT_URL")
    if not url:
        return _fail("no broker: give --broker or set ECOGRID_MQTT_URL")
    pod = args.pod_name or os.environ.get("POD_NAME") or os.environ.get("HOSTNAME")
    try:
        parse_broker_url(url)
        client_id = args.client_id
        if args.shared is not None:
            try:
                validate_group(args.shared)
            except ValueError as exc:
                return _fail(f"--shared: {exc}")
            partition = (0, 1)
            # Each member needs its own session: the pod name, else ecogrid-ingest-HOSTNAME.
            client_id = (client_id or args.pod_name or os.environ.get("POD_NAME")
                         or default_client_id())
        else:
            partition = parse_partition(args.partition or "0/1", pod)
        if args.sites is None:
            env_sites = os.environ.get("ECOGRID_FLEET_SITES")
            try:
                args.sites = int(env_sites) if env_sites else REFERENCE_SITES
            except ValueError:
                return _fail(f"ECOGRID_FLEET_SITES must be an integer, got {env_sites!r}")
        fleet = _load_fleet(args)
        data_dir = args.data_dir or os.environ.get("ECOGRID_DATA_DIR") or "data"
        check_layout(data_dir)
        root = args.history or os.environ.get("ECOGRID_HISTORY_URL") or \
            str(Path(data_dir) / "history")
        worker = IngestWorker(fleet, url, root, partition=partition,
                              shared_group=args.shared, client_id=client_id,
                              flush_s=args.flush_interval, metrics_port=args.metrics_port)
        worker.open()  # claims its sites: a second writer of them stops here
    except (ValueError, FleetError, OSError) as exc:
        return _fail(str(exc))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.request_stop())
    print(f"ingest worker, {worker.describe()}: {len(worker.ingest.sites)} sites "
          f"-> {worker.writer.path}; metrics on :{worker.metrics_port or args.metrics_port}",
          file=sys.stderr)
    try:
        worker.run()
    except ConnectionError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"ingest worker: {exc}")
    print(json.dumps({"snapshots": worker.snapshots, **worker.ingest.counters()}))
    return 0
