"""Telemetry into the twin's arrays, and from them into the one telemetry store.

Three parts, of which a process runs the ones its role needs:

* :class:`LiveIngest` subscribes to the devices' telemetry and status topics
  (:class:`adapters.mqtt.ingest.TelemetryIngest`) and writes the twin's
  :class:`~twin.telemetry.Telemetry`; each decoded batch is counted in the
  metrics and pushed on the WebSocket ``telemetry`` channel, each gateway
  status goes to the alerts (``on_gateway``);
* :class:`Recorder` appends a snapshot of every metric of every device to the
  telemetry store (:class:`adapters.history.HistoryWriter`) every
  ``history_flush_s``: the leader does this itself when it ingests
  (``ECOGRID_INGEST=embedded``), else ``ecogrid ingest`` workers do;
* :class:`StoreFeed` (``ECOGRID_INGEST=workers``) reads the workers' newest
  values from the store every second into the twin's arrays, so live values,
  KPIs, alerts and plans work on what the workers ingested.

Each takes a new fleet through ``set_fleet`` (:class:`api.live.fleet.LiveFleet`
calls it): the arrays keep their rows by device id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from adapters.history import History, HistoryWriter, Latest
from adapters.mqtt.decode import Batch
from adapters.mqtt.ingest import StatusEvent, TelemetryIngest
from api.live.hub import Hub
from api.live.metrics import Metrics
from api.live.types import Clock
from twin.fleet import Fleet
from twin.telemetry import FLAGS, Telemetry

log = logging.getLogger(__name__)

#: Metrics pushed on the WebSocket ``telemetry`` channel.
PUSHED: tuple[str, ...] = ("p_kw", "soc")


class _Push:
    """The ``telemetry`` WebSocket push of written values (on the hub's loop)."""

    def __init__(self, fleet: Fleet, telemetry: Telemetry, hub: Hub, clock: Clock):
        self.telemetry = telemetry
        self.hub = hub
        self.clock = clock
        self.set_fleet(fleet)

    def set_fleet(self, fleet: Fleet) -> None:
        self._ids: list[str] = fleet.device_id.tolist()  # lists: no numpy scalar per value
        self._sites: list[str] = fleet.site_id[fleet.device_site].tolist()
        self._cols = {self.telemetry.metric_column(m): m for m in PUSHED}

    def push(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, ts_s: np.ndarray
             ) -> None:
        if not self.hub.clients or not len(rows):
            return
        names = self._cols
        keep = np.isin(cols, list(names))
        samples: dict[int, dict[str, Any]] = {}
        ids, sites = self._ids, self._sites
        for r, c, v, t in zip(rows[keep].tolist(), cols[keep].tolist(), values[keep].tolist(),
                              ts_s[keep].tolist(), strict=True):
            s = samples.get(r)
            if s is None:
                s = samples[r] = {"id": ids[r], "site_id": sites[r], "t_s": t}
            elif t > s["t_s"]:
                s["t_s"] = t
            s[names[c]] = v
        self.hub.call_soon(self.hub.publish_telemetry, self.clock(), list(samples.values()))


class LiveIngest:
    """The process's own MQTT telemetry subscription into the twin's arrays.

    Parameters
    ----------
    fleet : Fleet
    telemetry : Telemetry
        The arrays written.
    url : str
        Broker URL.
    client_id : str
        MQTT client id.
    persistent : bool
        Persistent session (the leader: QoS 1 telemetry sent while it was away
        arrives when it is back); a replica's is not.
    hub, metrics, clock
        Where batches are pushed and counted; ``() -> Unix s``.
    on_gateway : callable, optional
        ``fn(site_rows, online)`` for gateway status messages (the alerts).
    """

    def __init__(self, fleet: Fleet, telemetry: Telemetry, url: str, *, client_id: str,
                 persistent: bool, hub: Hub, metrics: Metrics, clock: Clock,
                 on_gateway: Callable[[np.ndarray, np.ndarray], None] | None = None):
        self.url = url
        self.telemetry = telemetry
        self.metrics = metrics
        self.on_gateway = on_gateway
        self.first_values_mono_s: float | None = None
        self._push = _Push(fleet, telemetry, hub, clock)
        self.ingest = TelemetryIngest(fleet, telemetry, client_id=client_id,
                                      persistent=persistent, clock=clock)
        self.ingest.add_listener("batch", self._on_batch)
        self.ingest.add_listener("status", self._on_status)
        self.ingest.add_listener("fleet", self._push.set_fleet)

    def start(self, wait_s: float = 10.0) -> None:
        self.ingest.start(self.url, wait_s=wait_s)

    def close(self) -> None:
        self.ingest.stop()

    def connected(self) -> bool:
        return self.ingest.connected.is_set()

    def paused(self) -> contextlib.AbstractContextManager[None]:
        """Decoding waits inside this block (messages queue; nothing is lost)."""
        return self.ingest.paused()

    def set_fleet(self, fleet: Fleet, version: int) -> None:
        """Resize the twin's arrays and switch the decoder (no decoding in between)."""
        self.ingest.set_fleet(fleet)

    def _on_batch(self, batch: Batch) -> None:
        """Ingest listener (worker thread): count, and push telemetry to the hub."""
        self.metrics.ingest_messages.inc(batch.messages)
        if self.first_values_mono_s is None and batch.n_values:
            self.first_values_mono_s = time.monotonic()
        for reason, n in batch.rejects.items():
            self.metrics.rejected_messages.labels(reason).inc(n)
        if batch.n_values:
            self._push.push(batch.rows, batch.cols, batch.values, batch.ts_s)

    def _on_status(self, event: StatusEvent) -> None:
        if event.kind == "gateway" and self.on_gateway is not None:
            self.on_gateway(event.rows, event.values)


class Recorder:
    """Appends the twin's telemetry to the store every ``flush_s`` (the leader's writer).

    Parameters
    ----------
    writer : HistoryWriter
        The open writer (its claim on the fleet's sites taken).
    telemetry : Telemetry
    flush_s : float
        Snapshot period [s].
    clock : callable
        ``() -> Unix s``.
    """

    def __init__(self, writer: HistoryWriter, telemetry: Telemetry, flush_s: float,
                 clock: Clock):
        self.writer = writer
        self.telemetry = telemetry
        self.flush_s = float(flush_s)
        self.clock = clock
        self.snapshots = 0

    def flush(self) -> None:
        """Append one snapshot (snapshot times are whole multiples of ``flush_s``)."""
        t = np.floor(self.clock() / self.flush_s) * self.flush_s
        names, values, ts = self.telemetry.store_snapshot()
        if values.shape[0] != len(self.writer.device_ids):
            return  # a fleet change is under way; the next snapshot has the new devices
        self.writer.append(float(t), names, values, ts)
        self.snapshots += 1

    def set_fleet(self, fleet: Fleet, version: int) -> None:
        self.writer.set_fleet(fleet.device_id.tolist(), version,
                              sites=fleet.site_id.tolist())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await asyncio.to_thread(self.flush)
            except Exception:
                log.exception("telemetry snapshot failed; continuing")

    def close(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("the last telemetry snapshot failed")
        self.writer.close()


class StoreFeed:
    """The ingest workers' newest values, from the store into the twin's arrays.

    Parameters
    ----------
    history : History
        The one telemetry store.
    fleet : Fleet
    telemetry : Telemetry
    hub, metrics, clock
        Where new values are pushed and counted; ``() -> Unix s``.
    poll_s : float
        How often the workers' latest values are read [s].
    """

    def __init__(self, history: History, fleet: Fleet, telemetry: Telemetry, *, hub: Hub,
                 metrics: Metrics, clock: Clock, poll_s: float = 1.0):
        self.history = history
        self.telemetry = telemetry
        self.metrics = metrics
        self.poll_s = float(poll_s)
        self.clock = clock
        self.first_values_mono_s: float | None = None
        self.polls = 0
        self._fleet = fleet
        self._push = _Push(fleet, telemetry, hub, clock)

    def poll(self) -> int:
        """Write every value newer than the one held; returns the number written."""
        latest = self.history.latest()
        tel = self.telemetry
        with tel.lock:
            fleet = tel.fleet
            if fleet is not self._fleet:
                return 0  # a fleet change is under way
            rows = np.array([fleet.device_row.get(d, -1) for d in latest.device_ids],
                            dtype=np.int64)
            known = rows >= 0
            parts = []
            for j, name in enumerate(latest.metrics):
                if name in FLAGS:
                    continue
                col = tel.metric_column(name)
                if col < 0:
                    continue
                values, ts = latest.values[:, j], latest.ts_s[:, j]
                ok = known & np.isfinite(ts) & np.isfinite(values)
                parts.append((rows[ok], np.full(int(ok.sum()), col), values[ok], ts[ok]))
            n = 0
            if parts:
                r, c, v, t = (np.concatenate(x) for x in zip(*parts, strict=True))
                n = tel.write(r, c.astype(np.int64), v, t)
                self._push.push(r, c, v, t)
            self._flags(latest, rows, known)
        if n:
            self.metrics.ingest_messages.inc(n)
            if self.first_values_mono_s is None:
                self.first_values_mono_s = time.monotonic()
        self.polls += 1
        return n

    def _flags(self, latest: Latest, rows: np.ndarray, known: np.ndarray) -> None:
        """The devices' own status and their gateways' (as the writers stored them)."""
        tel = self.telemetry
        if not np.isfinite(latest.t_s):
            return
        gw, _ = latest.column("gateway_online")
        vals = gw[known]
        ok = np.isfinite(vals)
        if ok.any():
            sites, first = np.unique(tel.fleet.device_site[rows[known][ok]], return_index=True)
            held = tel.site_online[sites]
            new = vals[ok][first].astype(np.int8)
            changed = held != new
            if changed.any():
                tel.set_site_online(sites[changed], new[changed], latest.t_s)
        dev, _ = latest.column("online")
        vals = dev[known]
        ok = np.isfinite(vals)
        if ok.any():
            r = rows[known][ok]
            new = vals[ok].astype(np.int8)
            changed = tel.reported_online[r] != new
            if changed.any():
                tel.set_device_online(r[changed], new[changed], latest.t_s)

    def set_fleet(self, fleet: Fleet, version: int) -> None:
        with self.telemetry.lock:
            self.telemetry.resize(fleet)
            self._push.set_fleet(fleet)
            self._fleet = fleet

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        yield

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await asyncio.to_thread(self.poll)
                self.telemetry.refresh_stale(self.clock())
            except Exception:
                log.exception("reading the workers' latest values failed; continuing")
