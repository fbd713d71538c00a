"""The ``ecogrid ingest`` worker: one site partition's telemetry into zarr history.

A worker owns the sites whose id hashes to ``k`` of ``n`` (see
:func:`adapters.mqtt.ingest.owns_site`), so each device's state lives in
exactly one worker. It runs :class:`~adapters.mqtt.ingest.TelemetryIngest`
for those sites, appends a snapshot of its devices' latest values (and their
time stamps) to a zarr store (:class:`adapters.storage.TimeSeriesStore`)
every ``flush_s`` seconds and once more when it stops, and serves ``/healthz``
and ``/metrics`` over HTTP.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from adapters.mqtt.ingest import TelemetryIngest
from adapters.storage import StorageError, TimeSeriesStore
from twin.fleet import Fleet
from twin.telemetry import METRICS

log = logging.getLogger(__name__)

MAX_FLUSH_S = 10.0


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


def history_path(data_dir: str | Path, partition: tuple[int, int]) -> Path:
    """Zarr store of worker ``k`` of ``n`` under ``data_dir``."""
    k, n = partition
    return Path(data_dir) / f"telemetry-{k}-of-{n}.zarr"


class IngestWorker:
    """Ingest of one site partition, with zarr history and an HTTP health/metrics port.

    Parameters
    ----------
    fleet : Fleet
        The whole fleet (the worker keeps the devices of its own sites).
    url : str
        Broker URL (``mqtt://user:password@host:port``).
    data_dir : str or Path
        Folder of the history store.
    partition : (int, int)
        ``(k, n)``: worker ``k`` of ``n``.
    client_id : str, optional
        MQTT client id (default ``ecogrid-ingest-{k}``).
    flush_s : float
        History snapshot and flush interval [s], at most 10.
    metrics_port : int, optional
        Port of ``/healthz`` and ``/metrics`` (0: any free port; None: no server).
    clock : callable
        ``() -> Unix s``.
    """

    def __init__(self, fleet: Fleet, url: str, data_dir: str | Path, *,
                 partition: tuple[int, int] = (0, 1), client_id: str | None = None,
                 flush_s: float = 5.0, metrics_port: int | None = None,
                 metrics_host: str = "0.0.0.0", clock: Callable[[], float] = time.time):
        if not 0 < flush_s <= MAX_FLUSH_S:
            raise ValueError(f"flush interval must be within (0, {MAX_FLUSH_S:g}] s, "
                             f"got {flush_s}")
        self.fleet = fleet
        self.url = url
        self.partition = partition
        self.flush_s = float(flush_s)
        self.clock = clock
        self.ingest = TelemetryIngest(fleet, client_id=client_id or
                                      f"ecogrid-ingest-{partition[0]}",
                                      partition=partition, clock=clock)
        owned = set(self.ingest.sites)
        sites = fleet.site_id.tolist()
        self.rows = np.array([r for r, s in enumerate(fleet.device_site.tolist())
                              if sites[s] in owned], dtype=np.int64)
        self.store = TimeSeriesStore(history_path(data_dir, partition), time_chunk=720)
        self.snapshots = 0
        self.flush_errors = 0
        self._last_t: int | None = None
        self._stop = threading.Event()
        self._metrics_port = metrics_port
        self._metrics_host = metrics_host
        self._http: ThreadingHTTPServer | None = None

    # -- history -------------------------------------------------------------------
    def flush(self) -> bool:
        """Append one snapshot of the partition's latest values; False if none was due."""
        import xarray as xr

        self.ingest.process_pending()
        t = int(self.clock())
        if self._last_t is not None and t <= self._last_t:
            return False
        tel = self.ingest.telemetry
        with tel.lock:
            value = tel.value[self.rows, :len(METRICS)].copy()
            ts = tel.ts_s[self.rows, :len(METRICS)].copy()
        data: dict[str, Any] = {}
        for j, m in enumerate(METRICS):
            data[m] = (("time", "device"), value[None, :, j])
            data[f"{m}_ts_s"] = (("time", "device"), ts[None, :, j])
        ids = self.fleet.device_id[self.rows].astype(str)
        chunk = xr.Dataset(data, coords={"time": np.array([t], dtype=np.int64),
                                         "device_id": ("device", ids)})
        try:
            self.store.append(chunk)
        except StorageError as exc:  # e.g. a store of another fleet, or a clock step back
            self.flush_errors += 1
            log.error("history %s: snapshot at %d s not stored: %s", self.store.path, t, exc)
            return False
        k, n = self.partition
        self.store.set_attrs({"partition": f"{k}/{n}", **{
            key: v for key, v in self.ingest.counters().items() if key != "rejects"}})
        self._last_t = t
        self.snapshots += 1
        return True

    # -- lifecycle -------------------------------------------------------------------
    def run(self, wait_s: float = 30.0) -> None:
        """Connect, ingest and flush until :meth:`request_stop`; flushes once more at the end."""
        self._start_http()
        try:
            self.ingest.start(self.url, wait_s=wait_s)
            log.info("ingest worker %d/%d: %d sites, %d devices", *self.partition,
                     len(self.ingest.sites), len(self.rows))
            while not self._stop.wait(self.flush_s):
                self.flush()
        finally:
            self.ingest.stop()
            # The last snapshot must not share a second with the previous one.
            while self._last_t is not None and int(self.clock()) <= self._last_t:
                time.sleep(0.05)
            self.flush()
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()

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
        from prometheus_client import CollectorRegistry, generate_latest

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
                    from prometheus_client import CONTENT_TYPE_LATEST

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
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        c = self.worker.ingest.counters()
        labels = ["partition"]
        part = f"{self.worker.partition[0]}/{self.worker.partition[1]}"
        for name, key, doc in (("messages", "messages", "MQTT messages decoded"),
                               ("values", "values", "telemetry values written"),
                               ("connects", "connects", "broker connections made")):
            m = CounterMetricFamily(f"ecogrid_ingest_{name}", doc, labels=labels)
            m.add_metric([part], c[key])
            yield m
        rej = CounterMetricFamily("ecogrid_ingest_rejects", "refused messages or values",
                                  labels=["partition", "reason"])
        for reason, v in c["rejects"].items():
            rej.add_metric([part, reason], v)
        yield rej
        g = GaugeMetricFamily("ecogrid_ingest_queued", "messages waiting to be decoded",
                              labels=labels)
        g.add_metric([part], c["queued"])
        yield g
        s = CounterMetricFamily("ecogrid_ingest_snapshots", "history snapshots written",
                                labels=labels)
        s.add_metric([part], self.worker.snapshots)
        yield s
        e = CounterMetricFamily("ecogrid_ingest_snapshot_errors", "history snapshots that "
                                "could not be stored", labels=labels)
        e.add_metric([part], self.worker.flush_errors)
        yield e
