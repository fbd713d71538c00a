"""The ``ecogrid ingest`` worker: telemetry into zarr history, one store per worker.

A worker is either

* a member of an MQTT **shared-subscription group** (``shared_group``): the
  broker hands each message to one member, so any number of workers split the
  load (what Kubernetes runs, with an autoscaler); every member covers every
  device, but holds only the messages it was given. Its store is
  ``telemetry-{client_id}.zarr``; :func:`latest_values` merges the stores of
  all members (for each device, the value with the newest time stamp); or
* the owner of a **site partition** ``k`` of ``n`` (see
  :func:`adapters.mqtt.ingest.owns_site`), so each device's state lives in
  exactly one worker; its store is ``telemetry-{k}-of-{n}.zarr``.

It runs :class:`~adapters.mqtt.ingest.TelemetryIngest`, appends a snapshot of
its devices' latest values (and their time stamps) to a zarr store
(:class:`adapters.storage.TimeSeriesStore`) every ``flush_s`` seconds and once
more when it stops, and serves ``/healthz`` and ``/metrics`` over HTTP.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from adapters.mqtt.ingest import TelemetryIngest
from adapters.mqtt.topics import validate_group
from adapters.storage import StorageError, TimeSeriesStore, open_store, unix_seconds
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


def history_path(data_dir: str | Path, partition: tuple[int, int] = (0, 1), *,
                 shared_client_id: str | None = None) -> Path:
    """Zarr store of a worker under ``data_dir``.

    ``telemetry-{k}-of-{n}.zarr`` for worker ``k`` of ``n`` of a site
    partition; ``telemetry-{client_id}.zarr`` for a shared-group member
    (``shared_client_id``).
    """
    if shared_client_id is not None:
        return Path(data_dir) / f"telemetry-{check_client_id(shared_client_id)}.zarr"
    k, n = partition
    return Path(data_dir) / f"telemetry-{k}-of-{n}.zarr"


def history_paths(data_dir: str | Path) -> list[Path]:
    """Every worker's store under ``data_dir`` (``telemetry-*.zarr``), sorted by name."""
    return sorted(p for p in Path(data_dir).glob("telemetry-*.zarr") if p.is_dir())


def latest_values(paths: Iterable[str | Path], metric: str,
                  at_s: float | None = None) -> Any:
    """Each device's newest value of ``metric`` over several workers' stores.

    The merge rule that makes the stores of a shared-subscription group one
    history: from each store take its last snapshot at or before ``at_s``
    (the last one when ``None``); for each device keep the value whose time
    stamp (``<metric>_ts_s``) is the newest across the stores; a tie goes to
    the store listed first. Site-partition stores (disjoint devices) merge by
    the same rule. A snapshot holds what its worker had received when it was
    written, so the result is as of each store's snapshot, not of ``at_s``.

    Parameters
    ----------
    paths : iterable of str or Path
        Worker stores (e.g. :func:`history_paths`).
    metric : str
        A standard metric name (``p_kw``, ``v``, ...).
    at_s : float, optional
        Unix seconds [s]; snapshots after it are ignored.

    Returns
    -------
    xarray.Dataset
        ``metric`` and ``<metric>_ts_s`` [Unix s] over ``device`` (coordinate
        ``device_id``, every device found in any store, in order of first
        appearance); NaN where no store has a value.
    """
    import xarray as xr

    ts_name = f"{metric}_ts_s"
    index: dict[str, int] = {}  # device id -> row of the result
    snaps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for path in paths:
        ds = open_store(path)
        if metric not in ds or ts_name not in ds:
            raise StorageError(f"{path} holds no {metric!r} with {ts_name!r}")
        t_s = unix_seconds(ds["time"].values)
        i = len(t_s) - 1 if at_s is None else int(np.searchsorted(t_s, at_s, side="right")) - 1
        if i < 0:
            continue
        snap = ds.isel(time=i)
        rows = np.array([index.setdefault(str(d), len(index))
                         for d in snap["device_id"].values.tolist()], dtype=np.int64)
        snaps.append((rows, np.asarray(snap[metric].values, dtype=np.float64),
                      np.asarray(snap[ts_name].values, dtype=np.float64)))
    value = np.full(len(index), np.nan)
    ts = np.full(len(index), np.nan)
    for rows, v, s in snaps:
        newer = ~np.isnan(s) & (np.isnan(ts[rows]) | (s > ts[rows]))
        value[rows[newer]] = v[newer]
        ts[rows[newer]] = s[newer]
    ids = np.array(list(index), dtype=str)
    return xr.Dataset({metric: ("device", value), ts_name: ("device", ts)},
                      coords={"device_id": ("device", ids)})


class IngestWorker:
    """Ingest of a shared group's member or a site partition, with zarr history and an
    HTTP health/metrics port.

    Parameters
    ----------
    fleet : Fleet
        The whole fleet (a partition worker keeps the devices of its own sites, a
        shared-group member all of them).
    url : str
        Broker URL (``mqtt://user:password@host:port``).
    data_dir : str or Path
        Folder of the history store.
    partition : (int, int)
        ``(k, n)``: worker ``k`` of ``n``.
    shared_group : str, optional
        Be a member of this shared-subscription group instead (excludes a
        partition with ``n > 1``).
    client_id : str, optional
        MQTT client id (default ``ecogrid-ingest-{k}``; for a shared-group member
        :func:`default_client_id`, and it names the store: unique per worker).
    flush_s : float
        History snapshot and flush interval [s], at most 10.
    metrics_port : int, optional
        Port of ``/healthz`` and ``/metrics`` (0: any free port; None: no server).
    clock : callable
        ``() -> Unix s``.
    """

    def __init__(self, fleet: Fleet, url: str, data_dir: str | Path, *,
                 partition: tuple[int, int] = (0, 1), shared_group: str | None = None,
                 client_id: str | None = None,
                 flush_s: float = 5.0, metrics_port: int | None = None,
                 metrics_host: str = "0.0.0.0", clock: Callable[[], float] = time.time):
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
            path = history_path(data_dir, shared_client_id=client_id)
            self.labels = {"group": shared_group, "client_id": client_id}
        else:
            client_id = client_id or f"ecogrid-ingest-{partition[0]}"
            path = history_path(data_dir, partition)
            self.labels = {"partition": f"{partition[0]}/{partition[1]}"}
        self.ingest = TelemetryIngest(fleet, client_id=client_id, partition=partition,
                                      shared_group=shared_group, clock=clock)
        owned = set(self.ingest.sites)
        sites = fleet.site_id.tolist()
        self.rows = np.array([r for r, s in enumerate(fleet.device_site.tolist())
                              if sites[s] in owned], dtype=np.int64)
        self.store = TimeSeriesStore(path, time_chunk=720)
        self.snapshots = 0
        self.flush_errors = 0
        self._last_t: int | None = None
        self._stop = threading.Event()
        self._metrics_port = metrics_port
        self._metrics_host = metrics_host
        self._http: ThreadingHTTPServer | None = None

    # -- history -------------------------------------------------------------------
    def flush(self) -> bool:
        """Append one snapshot of the worker's latest values; False if none was due."""
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
        self.store.set_attrs({**self.labels, **{
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
            log.info("ingest worker %s: %d sites, %d devices", self.describe(),
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
