"""The ``ecogrid ingest`` worker: telemetry into the history, one writer per worker.

A worker is either

* a member of an MQTT **shared-subscription group** (``shared_group``): the
  broker hands each message to one member, so any number of workers split the
  load (what Kubernetes runs, with an autoscaler); every member covers every
  device, but holds only the messages it was given. Its writer id is its
  client id and it claims the fleet's sites *shared*;
  :class:`adapters.history.History` merges the members' stores (for each
  device, the value with the newest time stamp); or
* the owner of a **site partition** ``k`` of ``n`` (see
  :func:`adapters.mqtt.ingest.owns_site`), so each device's state lives in
  exactly one worker; its writer id is ``p{k}of{n}`` and it claims its sites
  *exclusively*.

It runs :class:`~adapters.mqtt.ingest.TelemetryIngest`, appends a snapshot of
every metric column of its devices (and their time stamps, and the ``online``
flag) to the history (:class:`adapters.history.writer.HistoryWriter`) every
``flush_s`` seconds (snapshot times on a grid of ``flush_s``, so the workers'
snapshots line up) and once more when it stops, replaces its latest file every
second in between (what the live service polls), and serves ``/healthz`` and
``/metrics`` over HTTP.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from adapters.history.writer import HistoryWriter
from adapters.mqtt.ingest import TelemetryIngest
from adapters.mqtt.topics import validate_group
from adapters.storage import HistoryError
from twin.fleet import Fleet

log = logging.getLogger(__name__)

MAX_FLUSH_S = 10.0
LATEST_S = 1.0  # the latest file is replaced this often [s] (readers poll it)


def parse_partition(text: str, pod_name: str | None = None) -> tuple[int, int]:
    """Parse ``K/N`` or ``auto/N`` into ``(k, n)``.

    ``auto`` takes ``k`` from the trailing ordinal of a StatefulSet pod name
    (``ecogrid-ingest-3`` -> 3). Raises ``ValueError`` naming what is wrong.
    """
    m = re.fullmatch(r"\s*(auto|\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ValueError(f"--partition must be K/N or auto/N, got {text!r}")
    n = int(m.group(2))
    if m.group(1) == "auto":
        o = re.search(r"-(\d+)$", pod_name or "")
        if not o:
            raise ValueError(f"--partition auto/{n} needs a StatefulSet pod name ending in "
                             f"-ORDINAL (POD_NAME or --pod-name), got {pod_name!r}")
        k = int(o.group(1))
    else:
        k = int(m.group(1))
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--partition {text!r}: need 0 <= K < N, got K={k}, N={n}")
    return k, n


def default_client_id() -> str:
    """Client id of a shared-group member when none is given: ``ecogrid-ingest-{hostname}``."""
    return f"ecogrid-ingest-{socket.gethostname()}"


def check_client_id(client_id: str) -> str:
    """A shared-group member's client id, which also names its store; returns it.

    Letters, digits, ``.``, ``_`` and ``-`` only (it becomes a file name).
    Each member must have its own: a group is a set of distinct sessions, and a
    second connection with the same id would take over the first one's.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", client_id or ""):
        raise ValueError(f"client id {client_id!r} of a shared-group worker names its store: "
                         "use letters, digits, '.', '_' and '-' only")
    return client_id


def writer_id(partition: tuple[int, int] = (0, 1), *,
              shared_client_id: str | None = None) -> str:
    """History writer id of a worker: ``p{k}of{n}`` for worker ``k`` of ``n`` of a site
    partition, the client id for a shared-group member (``shared_client_id``)."""
    if shared_client_id is not None:
        return check_client_id(shared_client_id)
    k, n = partition
    return f"p{k}of{n}"


class IngestWorker:
    """Ingest of a shared group's member or a site partition, with its history writer and
    an HTTP health/metrics port.

    Parameters
    ----------
    fleet : Fleet
        The whole fleet (a partition worker keeps the devices of its own sites, a
        shared-group member all of them).
    url : str
        Broker URL (``mqtt://user:password@host:port``).
    history_root : str or Path
        History root (a folder or ``file://`` URL; ``ECOGRID_HISTORY_URL``).
    partition : (int, int)
        ``(k, n)``: worker ``k`` of ``n``.
    shared_group : str, optional
        Be a member of this shared-subscription group instead (excludes a
        partition with ``n > 1``).
    client_id : str, optional
        MQTT client id (default ``ecogrid-ingest-{k}``; for a shared-group member
        :func:`default_client_id`, and it is the writer id: unique per worker).
    flush_s : float
        History snapshot and flush interval [s], at most 10 (1 is fine).
    fleet_version : int
        The fleet's version (the history segment).
    raw_days : float
        Raw snapshots are kept this long [days].
    metrics_port : int, optional
        Port of ``/healthz`` and ``/metrics`` (0: any free port; None: no server).
    clock : callable
        ``() -> Unix s``.
    """

    def __init__(self, fleet: Fleet, url: str, history_root: str | Path, *,
                 partition: tuple[int, int] = (0, 1), shared_group: str | None = None,
                 client_id: str | None = None,
                 flush_s: float = 5.0, metrics_port: int | None = None,
                 metrics_host: str = "0.0.0.0", clock: Callable[[], float] = time.time,
                 fleet_version: int = 0, raw_days: float = 7.0):
        if not 0 < flush_s <= MAX_FLUSH_S:
            raise ValueError(f"flush interval must be within (0, {MAX_FLUSH_S:g}] s, "
                             f"got {flush_s}")
        self.fleet = fleet
        self.url = url
        self.partition = partition
        self.shared_group = shared_group
        self.flush_s = float(flush_s)
        self.clock = clock
        if shared_group is not None:
            validate_group(shared_group)
            client_id = check_client_id(client_id or default_client_id())
            wid = writer_id(shared_client_id=client_id)
            self.labels = {"group": shared_group, "client_id": client_id}
        else:
            client_id = client_id or f"ecogrid-ingest-{partition[0]}"
            wid = writer_id(partition)
            self.labels = {"partition": f"{partition[0]}/{partition[1]}"}
        self.ingest = TelemetryIngest(fleet, client_id=client_id, partition=partition,
                                      shared_group=shared_group, clock=clock)
        self.rows = self._own_rows()
        self._fleet_lock = threading.RLock()  # snapshots and fleet changes, one at a time
        self.writer = HistoryWriter(
            history_root, wid, fleet.device_id[self.rows].astype(str).tolist(), fleet_version,
            sites=self.ingest.sites, exclusive=shared_group is None, raw_days=raw_days, clock=clock)
        self.snapshots = 0
        self.flush_errors = 0
        self._stop = threading.Event()
        self._metrics_port = metrics_port
        self._metrics_host = metrics_host
        self._http: ThreadingHTTPServer | None = None

    # -- history -------------------------------------------------------------------
    def open(self) -> IngestWorker:
        """Claim the worker's sites in the history (raises ``ClaimError`` when a live writer
        holds them or the writer id)."""
        self.writer.open()
        return self

    def snapshot(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Metric names, values and time stamps [Unix s] ``(devices, metrics)`` of the
        worker's devices now (:meth:`twin.telemetry.Telemetry.store_snapshot`)."""
        return self.ingest.telemetry.store_snapshot(self.rows)

    def set_fleet(self, fleet: Fleet, fleet_version: int) -> None:
        """Take a changed fleet: the ingest's arrays and subscriptions, this worker's
        devices, and a new segment of its history store."""
        with self._fleet_lock:
            self.ingest.set_fleet(fleet)
            self.fleet = fleet
            self.rows = self._own_rows()
            self.writer.set_fleet(fleet.device_id[self.rows].astype(str).tolist(),
                                  fleet_version, sites=self.ingest.sites)

    def _own_rows(self) -> np.ndarray:
        owned = set(self.ingest.sites)
        sites = self.fleet.site_id.tolist()
        return np.array([r for r, s in enumerate(self.fleet.device_site.tolist())
                         if sites[s] in owned], dtype=np.int64)

    def flush(self, final: bool = False) -> bool:
        """Append one snapshot of the worker's latest values; False if none was due.

        The snapshot time is the clock rounded down to a multiple of ``flush_s``
        (``final``: the clock itself, for the last snapshot at a stop).
        """
        with self._fleet_lock:
            return self._flush(final)

    def _flush(self, final: bool) -> bool:
        self.writer.open()
        self.ingest.process_pending()
        now = float(self.clock())
        t = round(now, 3) if final else float(np.floor(now / self.flush_s) * self.flush_s)
        last = self.writer.last_t_s
        if last is not None and t <= last:
            return False
        metrics, values, ts = self.snapshot()
        info = self._info(self.snapshots + 1)
        try:
            self.writer.append(t, metrics, values, ts, info)
        except HistoryError as exc:
            self.flush_errors += 1
            log.error("history %s: snapshot at %.3f s not stored: %s", self.writer.path, t, exc)
            return False
        self.snapshots += 1
        return True

    def tick(self) -> bool:
        """A snapshot when the next multiple of ``flush_s`` has come, else only the latest
        values (the live service polls them); True when a snapshot was written."""
        with self._fleet_lock:
            return self._tick()

    def _tick(self) -> bool:
        last = self.writer.last_t_s
        now = float(self.clock())
        if last is None or np.floor(now / self.flush_s) * self.flush_s > last:
            return self._flush(False)
        self.writer.open()
        self.ingest.process_pending()
        metrics, values, ts = self.snapshot()
        self.writer.publish_latest(round(now, 3), metrics, values, ts, self._info())
        return False

    def _info(self, snapshots: int | None = None) -> dict[str, Any]:
        return {**self.labels, "snapshots": self.snapshots if snapshots is None else snapshots,
                **{key: v for key, v in self.ingest.counters().items() if key != "rejects"}}

    # -- lifecycle -------------------------------------------------------------------
    def run(self, wait_s: float = 30.0) -> None:
        """Connect, ingest and flush until :meth:`request_stop`; flushes once more at the end."""
        self.open()
        self._start_http()
        try:
            self.ingest.start(self.url, wait_s=wait_s)
            log.info("ingest worker %s: %d sites, %d devices", self.describe(),
                     len(self.ingest.sites), len(self.rows))
            while not self._stop.wait(min(self.flush_s, LATEST_S)):
                self.tick()
        finally:
            self.ingest.stop()
            last = self.writer.last_t_s
            while last is not None and round(float(self.clock()), 3) <= last:
                time.sleep(0.01)  # the last snapshot comes after the previous one
            self.flush(final=True)
            self.writer.close()
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()

    def describe(self) -> str:
        """``shared group G as CLIENT_ID`` or ``partition K/N`` (for logs and the console)."""
        if self.shared_group is not None:
            return f"shared group {self.shared_group} as {self.ingest.client_id}"
        return f"partition {self.labels['partition']}"

    def request_stop(self) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler)."""
        self._stop.set()

    @property
    def healthy(self) -> bool:
        return self.ingest.connected.is_set() and not self._stop.is_set()

    @property
    def metrics_port(self) -> int | None:
        return self._http.server_address[1] if self._http is not None else None

    # -- HTTP ------------------------------------------------------------------------
    def metrics_text(self) -> bytes:
        """Prometheus exposition of the worker's counters."""
        registry = CollectorRegistry()
        registry.register(_Collector(self))
        return generate_latest(registry)

    def _start_http(self) -> None:
        if self._metrics_port is None:
            return
        worker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    ok = worker.healthy
                    body, code, kind = (b"ok\n" if ok else b"not connected\n",
                                        200 if ok else 503, "text/plain")
                elif self.path == "/metrics":
                    body, code, kind = worker.metrics_text(), 200, CONTENT_TYPE_LATEST
                else:
                    body, code, kind = b"not found\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

        self._http = ThreadingHTTPServer((self._metrics_host, self._metrics_port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="ingest-http",
                         daemon=True).start()


class _Collector:
    """Prometheus collector reading an :class:`IngestWorker`'s counters at scrape time."""

    def __init__(self, worker: IngestWorker):
        self.worker = worker

    def collect(self) -> Iterator[Any]:
        c = self.worker.ingest.counters()
        # partition="K/N", or group="G" and client_id="ID" for a shared-group member
        labels = list(self.worker.labels)
        values = list(self.worker.labels.values())
        for name, key, doc in (("messages", "messages", "MQTT messages decoded"),
                               ("values", "values", "telemetry values written"),
                               ("connects", "connects", "broker connections made")):
            m = CounterMetricFamily(f"ecogrid_ingest_{name}", doc, labels=labels)
            m.add_metric(values, c[key])
            yield m
        rej = CounterMetricFamily("ecogrid_ingest_rejects", "refused messages or values",
                                  labels=[*labels, "reason"])
        for reason, v in c["rejects"].items():
            rej.add_metric([*values, reason], v)
        yield rej
        g = GaugeMetricFamily("ecogrid_ingest_queued", "messages waiting to be decoded",
                              labels=labels)
        g.add_metric(values, c["queued"])
        yield g
        s = CounterMetricFamily("ecogrid_ingest_snapshots", "history snapshots written",
                                labels=labels)
        s.add_metric(values, self.worker.snapshots)
        yield s
        e = CounterMetricFamily("ecogrid_ingest_snapshot_errors", "history snapshots that "
                                "could not be stored", labels=labels)
        e.add_metric(values, self.worker.flush_errors)
        yield e
