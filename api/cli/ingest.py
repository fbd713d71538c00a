"""``ecogrid ingest`` (a telemetry ingest worker) and ``ecogrid history convert``.

    ecogrid ingest [--shared GROUP | --partition K/N] [--config FILE] [--fleet FILE]
    ecogrid history convert [--data-dir DIR] [--config FILE]

An ingest worker takes its settings from the environment like the service
(``ECOGRID_MQTT_URL``, ``ECOGRID_DATA_DIR``, ``ECOGRID_HISTORY_URL``,
``ECOGRID_DATABASE_URL``, ``ECOGRID_HISTORY_RAW_DAYS``, ``ECOGRID_FLEET_POLL_S``;
docs/configuration.md), the fleet from the registry (and follows its edits:
every ``ECOGRID_FLEET_POLL_S`` it checks the fleet version and takes a changed
fleet), and writes its share of the telemetry into the one store. ``--fleet
FILE`` or ``--sites N`` give a fixed fleet instead (no registry).

``ecogrid history convert`` moves a data folder of the old layouts into the one
store (the service and the workers refuse to start on an old layout and name
this command).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from adapters.cli import fail, fleet_args, load_fleet
from adapters.history import (
    ClaimError,
    HistoryError,
    check_layout,
    convert_legacy,
)
from adapters.ingest_worker import IngestWorker, default_client_id, parse_partition
from adapters.mqtt.client import parse_broker_url
from adapters.mqtt.topics import validate_group
from adapters.registry import Registry, RegistryError, open_registry
from adapters.registry import fleet as fleet_repo
from api.cli.users import settings_or_none
from api.live.fleet import registry_fleet
from api.settings import Settings
from twin.fleet import FleetError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    ing = subparsers.add_parser("ingest", help="telemetry ingest worker (a shared-"
                                "subscription group member or one site partition): MQTT in, "
                                "the telemetry store out, /healthz and /metrics")
    ing.add_argument("--config", default=None, help=".env-style settings file (ECOGRID_*)")
    fleet_args(ing)
    ing.add_argument("--broker", default=None, help="broker URL with credentials, e.g. "
                     "mqtt://user:pw@host:1883 (default: ECOGRID_MQTT_URL)")
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
    ing.add_argument("--data-dir", default=None, help="data folder (default: "
                     "ECOGRID_DATA_DIR)")
    ing.add_argument("--history", default=None, metavar="URL",
                     help="the telemetry store, a folder or file:// URL (default: "
                          "ECOGRID_HISTORY_URL, else DATA_DIR/history)")
    ing.add_argument("--flush-interval", type=float, default=5.0,
                     help="history snapshot interval [s], at most 10")
    ing.add_argument("--metrics-port", type=int, default=9100,
                     help="port of /healthz and /metrics (0: any free port)")
    ing.set_defaults(func=cmd_ingest, sites=None)  # --sites: a fixed generated fleet

    hist = subparsers.add_parser("history", help="the telemetry store")
    hsub = hist.add_subparsers(dest="history_command", required=True, metavar="ACTION")
    conv = hsub.add_parser("convert", help="convert a data folder of the old telemetry "
                           "layouts (history.zarr, telemetry-*.zarr) into the one store")
    conv.add_argument("--config", default=None, help=".env-style settings file (ECOGRID_*)")
    conv.add_argument("--data-dir", default=None, help="the data folder (default: "
                      "ECOGRID_DATA_DIR)")
    conv.set_defaults(func=cmd_convert)


def _settings(args: argparse.Namespace) -> Settings | None:
    overrides: dict[str, object] = {}
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "history", None):
        overrides["history_url"] = args.history
    if getattr(args, "broker", None):
        overrides["mqtt_url"] = args.broker
    return settings_or_none(args.config, **overrides)


class FleetFollower:
    """A worker's fleet from the registry, taken again whenever its version changes."""

    def __init__(self, registry: Registry, worker: IngestWorker, version: int, poll_s: float):
        self.registry = registry
        self.worker = worker
        self.version = version
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def check(self) -> bool:
        """Take the registry's fleet when its version changed; True when it did."""
        with self.registry.session() as s:
            version = fleet_repo.fleet_version(s)
            if version == self.version:
                return False
            fleet = fleet_repo.load_fleet(s)
        if fleet is None:
            return False
        self.worker.set_fleet(fleet, version)
        self.version = version
        log.info("fleet version %d: %d sites, %d devices of mine", version,
                 len(self.worker.ingest.sites), len(self.worker.rows))
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:
                log.exception("checking the fleet version failed; continuing")


def cmd_ingest(args: argparse.Namespace) -> int:
    if args.shared is not None and args.partition is not None:
        return fail("--shared and --partition are alternatives: give one of them "
                    "(--shared GROUP: a shared-subscription group member; --partition K/N: "
                    "a site partition)")
    settings = _settings(args)
    if settings is None:
        return 2
    pod = args.pod_name or os.environ.get("POD_NAME") or os.environ.get("HOSTNAME")
    registry: Registry | None = None
    try:
        parse_broker_url(settings.mqtt_url)
        client_id = args.client_id
        if args.shared is not None:
            try:
                validate_group(args.shared)
            except ValueError as exc:
                return fail(f"--shared: {exc}")
            partition = (0, 1)
            # Each member needs its own session: the pod name, else ecogrid-ingest-HOSTNAME.
            client_id = client_id or args.pod_name or os.environ.get("POD_NAME") \
                or default_client_id()
        else:
            partition = parse_partition(args.partition or "0/1", pod)
        check_layout(settings.data_dir)
        version = 0
        if args.fleet or args.sites is not None:
            fleet = load_fleet(args)
        else:
            registry = open_registry(settings.registry_url())
            fleet = registry_fleet(registry)
            with registry.session() as s:
                version = fleet_repo.fleet_version(s)
        worker = IngestWorker(fleet, settings.mqtt_url, settings.history_root(),
                              partition=partition, shared_group=args.shared,
                              client_id=client_id, flush_s=args.flush_interval,
                              metrics_port=args.metrics_port, fleet_version=version,
                              raw_days=settings.history_raw_days)
        worker.open()  # claims its sites: a second writer of them stops here
    except (ValueError, FleetError, OSError, RegistryError, HistoryError, ClaimError) as exc:
        if registry is not None:
            registry.close()
        return fail(str(exc))
    follower = (FleetFollower(registry, worker, version, settings.fleet_poll_s)
                if registry is not None else None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.request_stop())
    print(f"ingest worker, {worker.describe()}: {len(worker.ingest.sites)} sites "
          f"-> {worker.writer.path}; metrics on :{worker.metrics_port or args.metrics_port}",
          file=sys.stderr)
    try:
        if follower is not None:
            follower.start()
        worker.run()
    except ConnectionError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"ingest worker: {exc}")
    finally:
        if follower is not None:
            follower.stop()
        if registry is not None:
            registry.close()
    print(json.dumps({"snapshots": worker.snapshots, **worker.ingest.counters()}))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 2
    try:
        done = convert_legacy(settings.data_dir, settings.history_root(),
                              raw_days=settings.history_raw_days)
    except (HistoryError, ClaimError, OSError) as exc:
        return fail(str(exc))
    if not done.stores:
        print(f"{settings.data_dir} holds no telemetry of the old layouts; nothing to do")
        return 0
    for st in done.stores:
        print(f"{st.old_path.name}: {st.rows} snapshots of {st.devices} devices -> writer "
              f"{st.writer} ({st.raw_rows} kept raw, all in the rollups)")
    print(f"converted into {settings.history_root()}; the old stores are in {done.moved_to}")
    return 0
