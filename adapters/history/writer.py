"""The writer of the telemetry history (the layout is :mod:`adapters.history`'s).

:class:`HistoryWriter` is one process's writer: it holds its claim
(:mod:`adapters.history.claims`), appends snapshots to the store of its
current fleet segment, keeps the open rollup bucket of each tier in memory
(:class:`~adapters.history.rollup.Accumulator`), writes a bucket when a later
snapshot closes it, drops raw days past the retention and replaces its latest
file at every append.

After a restart :meth:`HistoryWriter.open` rebuilds the open buckets from the
raw rows after the last bucket written, in every store of the writer (a
fleet change in the middle of a bucket leaves rows of it in two segments): a
device's rows go to the bucket of its current store when it is in the current
segment, else to that of the store they are in, and a store that already
wrote the bucket gets nothing, so nothing is counted twice or lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adapters.history.claims import WriterClaim, check_writer_id
from adapters.history.rollup import STAT_DTYPES, Accumulator, bucket_start
from adapters.history.store import (
    DAY_S,
    TIERS,
    SegmentStore,
    day_name,
    day_start,
    last_raw_t,
    metric_key,
    raw_read_all,
    root_path,
    store_name,
    write_latest,
)
from adapters.storage import HistoryError, RowSeries

log = logging.getLogger(__name__)


class HistoryWriter:
    """The writer of one process: its claim, its segment stores and their open rollup buckets.

    Parameters
    ----------
    root : str or Path
        History root (a folder path or ``file://`` URL).
    writer_id : str
        Names the writer's stores and claim (letters, digits, ``.``, ``_``, ``-``).
    device_ids : sequence of str
        Its devices, in the row order of the values handed to :meth:`append`.
    fleet_version : int
        Fleet segment: one store per ``(writer_id, fleet_version)``.
    sites : iterable of str
        Site ids it writes (its claim).
    exclusive : bool
        Exclusive claim (a site partition, the live service) or shared (an MQTT
        shared-subscription group member).
    raw_days : float
        Raw snapshots are kept this long [days]; rollups are kept.
    clock : callable
        ``() -> Unix s`` for the claim's start time.
    """

    def __init__(self, root: str | Path, writer_id: str, device_ids: Sequence[str],
                 fleet_version: int = 0, *, sites: Iterable[str] = (), exclusive: bool = True,
                 raw_days: float = 7.0, clock: Callable[[], float] = time.time):
        if not raw_days > 0:
            raise HistoryError(f"raw_days must be positive, got {raw_days}")
        self.root = root_path(root)
        self.writer_id = check_writer_id(writer_id)
        self.device_ids = [str(d) for d in device_ids]
        if len(set(self.device_ids)) != len(self.device_ids):
            raise HistoryError("device_ids must be unique")
        self.fleet_version = int(fleet_version)
        store_name(self.writer_id, self.fleet_version)  # validates the version
        self.raw_days = float(raw_days)
        self.clock = clock
        self.claim = WriterClaim(self.root, self.writer_id, sites, exclusive)
        self._lock = threading.Lock()
        self._cur: SegmentStore | None = None
        self._stores: dict[Path, SegmentStore] = {}
        self._day: tuple[Path, str, RowSeries] | None = None
        self._tiers: dict[tuple[Path, str], RowSeries] = {}
        self._acc: dict[str, dict[Path, Accumulator]] = {t: {} for t in TIERS}
        self._last_t: float | None = None
        self._ids_u = np.array(self.device_ids, dtype=str)

    # -- lifecycle -------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """The current segment store."""
        return self.root / store_name(self.writer_id, self.fleet_version)

    @property
    def last_t_s(self) -> float | None:
        return self._last_t

    def open(self) -> HistoryWriter:
        """Claim the sites, open (or create) the segment store, rebuild the open buckets.

        Raises
        ------
        ClaimError
            When a live writer holds the writer id or an overlapping claim.
        HistoryError
            When the segment store exists for other devices.
        """
        with self._lock:
            if self._cur is not None:
                return self
            self.root.mkdir(parents=True, exist_ok=True)
            self.claim.acquire(self.clock())
            try:
                self._cur = self._segment(self.device_ids, self.fleet_version)
                self._rebuild()
            except BaseException:
                self.claim.release()
                self._forget()
                raise
        return self

    def _forget(self) -> None:
        """Drop what is held in memory (a later :meth:`open` starts from the stores)."""
        self._cur, self._day, self._last_t = None, None, None
        self._stores, self._tiers = {}, {}
        self._acc = {t: {} for t in TIERS}

    def close(self, finish: bool = False) -> None:
        """Release the claim. ``finish``: also write the open buckets (a writer that will not
        come back); otherwise the next :meth:`open` rebuilds them from the raw rows."""
        with self._lock:
            if self._cur is None:
                return
            if finish:
                for tier in TIERS:
                    self._close_buckets(tier)
            self.claim.release()
            self._forget()

    def __enter__(self) -> HistoryWriter:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _segment(self, device_ids: list[str], fleet_version: int) -> SegmentStore:
        path = self.root / store_name(self.writer_id, fleet_version)
        if path in self._stores:
            store = self._stores[path]
        elif (path / "zarr.json").exists():
            opened = SegmentStore.open(path, writable=True)
            if opened is None or opened.writer != self.writer_id:
                raise HistoryError(f"{path} is not a history store of writer "
                                   f"{self.writer_id!r}")
            store = opened
        else:
            store = SegmentStore.create(path, self.writer_id, fleet_version, device_ids, self.clock())
        if store.device_ids != device_ids:
            raise HistoryError(
                f"{path} holds {store.n} other devices than the {len(device_ids)} given for "
                f"fleet_version {fleet_version}: a changed fleet needs a new fleet_version")
        self._stores[path] = store
        return store

    def _own_stores(self) -> list[SegmentStore]:
        out = []
        for path in sorted(self.root.glob(f"telemetry-{self.writer_id}-*.zarr")):
            store = self._stores.get(path) or SegmentStore.open(path, writable=True)
            if store is not None and store.writer == self.writer_id:
                self._stores[path] = store
                out.append(store)
        return out

    def _tier(self, store: SegmentStore, tier: str) -> RowSeries:
        key = (store.path, tier)
        s = self._tiers.get(key)
        if s is None:
            s = self._tiers[key] = store.tier_series(tier)
        return s

    def _tier_end(self, store: SegmentStore, tier: str) -> float:
        s = self._tier(store, tier)
        return -np.inf if s.n == 0 else float(s.times[s.n - 1]) + TIERS[tier]

    def _rebuild(self) -> None:
        """Open buckets from the raw rows after the last bucket written (see the docstring)."""
        cur = self._cur
        assert cur is not None
        stores = self._own_stores()
        lasts = [t for t in (last_raw_t(s) for s in stores) if t is not None]
        if not lasts:
            return
        self._last_t = float(max(lasts))
        self._prune(self._last_t, stores)
        starts = {tier: float(bucket_start(self._last_t, res)) for tier, res in TIERS.items()}
        for store in stores:
            t, data = raw_read_all(store, min(starts.values()))
            if not len(t):
                continue
            in_cur = np.array([d in cur.row for d in store.device_ids], dtype=bool)
            src_cur = np.flatnonzero(in_cur)
            dst_cur = np.array([cur.row[store.device_ids[i]] for i in src_cur], dtype=np.int64)
            src_own = np.flatnonzero(~in_cur)
            for tier, b in starts.items():
                sel = t >= b
                if not sel.any():
                    continue
                for target, src, dst in ((cur, src_cur, dst_cur), (store, src_own, src_own)):
                    if not len(src) or self._tier_end(target, tier) > b:
                        continue  # nobody to add, or the bucket is already written there
                    acc = self._acc[tier].setdefault(target.path, Accumulator(b, target.n))
                    for m, (v, ts) in data.items():
                        target.add_metric(m)
                        acc.add(m, v[sel][:, src], ts[sel][:, src], rows=dst)

    # -- writing ---------------------------------------------------------------------
    def append(self, t_s: float, metrics: Sequence[str], values: np.ndarray,
               ts_s: np.ndarray, info: dict[str, Any] | None = None, *,
               keep_raw: bool = True) -> None:
        """Write one snapshot taken at ``t_s`` [Unix s].

        Parameters
        ----------
        t_s : float
            Snapshot time [Unix s], after the previous one.
        metrics : sequence of str
            Metric names of the columns.
        values, ts_s : (n_devices, n_metrics) arrays
            Each device's value of each metric and its time stamp [Unix s] (NaN: none).
        info : dict, optional
            JSON-able facts about the writer (e.g. counters), kept in its latest file.
        keep_raw : bool
            Write the raw row (False: rollups and latest file only, e.g. a
            conversion of rows older than the raw retention).
        """
        metrics = list(metrics)
        keys = [metric_key(m) for m in metrics]
        if len(set(keys)) != len(keys):
            raise HistoryError(f"metric names must be unique, got {metrics}")
        values, ts_s = self._arrays(metrics, values, ts_s)
        if not np.isfinite(t_s):
            raise HistoryError(f"snapshot time must be finite, got {t_s}")
        with self._lock:
            cur = self._cur
            if cur is None:
                raise HistoryError("the history writer is not open: call open() first")
            if self._last_t is not None and not t_s > self._last_t:
                raise HistoryError(f"snapshot at {t_s} s is not after the last one "
                                   f"({self._last_t} s)")
            for m in metrics:
                cur.add_metric(m)
            for tier, res in TIERS.items():
                b = float(bucket_start(t_s, res))
                if any(a.bucket_s < b for a in self._acc[tier].values()):
                    self._close_buckets(tier)
            if keep_raw:
                self._append_raw(cur, t_s, metrics, values, ts_s)
            for tier, res in TIERS.items():
                b = float(bucket_start(t_s, res))
                if self._tier_end(cur, tier) > b:
                    log.warning("history %s: bucket %s at %s s already written; snapshot at "
                                "%s s left out of it", cur.path, tier, b, t_s)
                    continue
                acc = self._acc[tier].setdefault(cur.path, Accumulator(b, cur.n))
                for j, m in enumerate(metrics):
                    acc.add(m, values[:, j], ts_s[:, j])
            self._write_latest(t_s, metrics, values, ts_s, info or {})
            self._last_t = float(t_s)

    def publish_latest(self, t_s: float, metrics: Sequence[str], values: np.ndarray,
                       ts_s: np.ndarray, info: dict[str, Any] | None = None) -> None:
        """Replace the latest file only (no snapshot): for readers polling the newest values
        more often than snapshots are taken. Same arguments as :meth:`append`."""
        values, ts_s = self._arrays(list(metrics), values, ts_s)
        with self._lock:
            if self._cur is None:
                raise HistoryError("the history writer is not open: call open() first")
            self._write_latest(t_s, list(metrics), values, ts_s, info or {})

    def _arrays(self, metrics: list[str], values: np.ndarray, ts_s: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Values and time stamps as float arrays of shape (devices, metrics), or an error."""
        values = np.asarray(values, dtype=np.float64)
        ts_s = np.asarray(ts_s, dtype=np.float64)
        shape = (len(self.device_ids), len(metrics))
        if values.shape != shape or ts_s.shape != shape:
            raise HistoryError(f"values and ts_s must be (devices, metrics) = {shape}, got "
                               f"{values.shape} and {ts_s.shape}")
        return values, ts_s

    def _append_raw(self, cur: SegmentStore, t_s: float, metrics: list[str], values: np.ndarray,
                    ts_s: np.ndarray) -> None:
        day = day_name(t_s)
        if self._day is None or self._day[:2] != (cur.path, day):
            self._day = (cur.path, day, cur.day_series(day))
            self._prune(t_s, self._own_stores())
        series = self._day[2]
        rows: dict[str, np.ndarray] = {}
        for j, m in enumerate(metrics):
            k = metric_key(m)
            series.array(k, "float32", {"metric": m, "stat": "value"})
            series.array(k + "_ts_s", "float64", {"metric": m, "stat": "ts_s"})
            rows[k] = values[:, j]
            rows[k + "_ts_s"] = ts_s[:, j]
        series.write(t_s, rows)

    def _close_buckets(self, tier: str) -> None:
        for path, acc in sorted(self._acc[tier].items(), key=lambda kv: kv[0] != self.path):
            store = self._stores[path]
            if acc.has_values() and self._tier_end(store, tier) <= acc.bucket_s:
                series = self._tier(store, tier)
                rows: dict[str, np.ndarray] = {}
                for m in acc.metrics:
                    k = metric_key(m)
                    for stat, value in acc.stats(m).items():
                        series.array(f"{k}_{stat}", STAT_DTYPES[stat], {"metric": m,
                                                                         "stat": stat})
                        rows[f"{k}_{stat}"] = value
                series.write(acc.bucket_s, rows)
        self._acc[tier] = {}

    def _prune(self, t_s: float, stores: list[SegmentStore]) -> None:
        """Drop the raw days of this writer's stores that ended ``raw_days`` before ``t_s``."""
        cutoff = t_s - self.raw_days * DAY_S
        for store in stores:
            for day in store.days():
                if day_start(day) + DAY_S <= cutoff:
                    store.drop_day(day)
                    log.info("history %s: raw day %s dropped (older than %g days)",
                             store.path.name, day, self.raw_days)

    def _write_latest(self, t_s: float, metrics: list[str], values: np.ndarray,
                      ts_s: np.ndarray, info: dict[str, Any]) -> None:
        write_latest(self.root, self.writer_id, t_s, self.fleet_version, self._ids_u, metrics,
                     values, ts_s, info)

    def set_fleet(self, device_ids: Sequence[str], fleet_version: int,
                  sites: Iterable[str] | None = None) -> None:
        """Go on in a new segment store (kept devices' open buckets carry over by id).

        The old store stays as it is; the open buckets of the devices that left
        are written to it when a later snapshot closes them. ``sites``: a new
        claim (checked against the other writers).
        """
        ids = [str(d) for d in device_ids]
        if len(set(ids)) != len(ids):
            raise HistoryError("device_ids must be unique")
        with self._lock:
            old = self._cur
            if old is None:
                raise HistoryError("the history writer is not open: call open() first")
            if sites is not None:
                self.claim.update(sites)
            new = self._segment(ids, int(fleet_version))
            if new.path == old.path:
                return
            for m in old.metrics:
                new.add_metric(m)
            keep = [d for d in old.device_ids if d in new.row]
            src = np.array([old.row[d] for d in keep], dtype=np.int64)
            dst = np.array([new.row[d] for d in keep], dtype=np.int64)
            for accs in self._acc.values():
                a_old = accs.get(old.path)
                if a_old is None:
                    continue
                a_new = accs.setdefault(new.path, Accumulator(a_old.bucket_s, new.n))
                a_new.merge(a_old, dst, src)
                a_old.drop(src)
            self._cur, self._day = new, None
            self.device_ids, self.fleet_version = ids, int(fleet_version)
            self._ids_u = np.array(ids, dtype=str)
