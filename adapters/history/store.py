"""The telemetry history: one zarr v3 store per writer and fleet segment, raw and rollup tiers.

This module owns the layout (every zarr access of it) and reads it
(:class:`History`); :mod:`adapters.history.writer` appends to it
(``HistoryWriter``), :mod:`adapters.history.claims` keeps two writers of one
site apart, :mod:`adapters.history.rollup` is the arithmetic and
:mod:`adapters.history.legacy` converts the old layouts.

Layout under the history root (``ECOGRID_HISTORY_URL``, default
``$ECOGRID_DATA_DIR/history``; a plain path or a ``file://`` URL)::

    writers/{writer}.lock             claim of a live writer (flock), see history_claims
    latest/{writer}.npz               newest values of its devices, replaced atomically (a
                                      worker does so every second, between snapshots too)
    telemetry-{writer}-{fleet_version}.zarr/
        device_id                     (device,) its devices in row order
        raw/{YYYY-MM-DD}/             one group per UTC day; a day is dropped whole
            time                      (row,) snapshot times [Unix s], written last
            <metric>                  (row, device) float32
            <metric>_ts_s             (row, device) float64: time stamp of the value held
        5m/, 1h/                      rollups, kept for years
            time                      (bucket,) bucket starts [Unix s], written last
            <metric>_{count,mean,min,max,last,last_ts_s}   (bucket, device)

Choices (and why):

* **Rows are valid up to the first NaN of** ``time``. Arrays are preallocated
  (capacity doubles when full) rather than resized at every append, so an
  append writes chunk files only, never the metadata of every array; the
  ``time`` entry of a row is written after all its values, and every chunk file
  is replaced atomically (zarr writes a temporary file and renames it), so a
  reader in another process never sees a half-written snapshot as data.
* **Raw chunks are one snapshot row** ``(1, devices)``: an append encodes
  exactly the new values once (about 1 MB raw at 10,000 devices x 8 metrics),
  and a day is one folder, deleted when it falls out of ``raw_days``.
* **Rollup chunks hold 12 buckets (5 min: one hour) or 24 (1 h: one day)**: a
  bucket is written once, when a later snapshot closes it (a partial chunk
  write: its block is re-encoded, about 0.5 MB per array at 10,000 devices,
  once per 5 minutes or hour), and a year of 1 h rollups is 365 chunk files
  per array, not 8,760.
* **Metric names become array names** as they are when they are plain
  (``[A-Za-z_][A-Za-z0-9_]*``, not ending in ``_ts_s``); any other name the
  protocol carries is hex-encoded (``x-...``); each array's attributes name
  its metric and statistic.
* **Merging**: raw rows of several stores are merged *as of* each snapshot
  time of any of them (a store's snapshot stands until its next one, at most
  :data:`HOLD_S`), and per device the value with the newest ``_ts_s`` wins;
  rollup buckets are aligned to UTC, and per device and bucket the store with
  the newest ``last_ts_s`` wins.
* **Restart**: the open bucket of each tier lives in memory; on
  :meth:`HistoryWriter.open` it is rebuilt from the raw rows after the last
  bucket written, so nothing is counted twice or lost.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import zarr

from adapters.history.claims import ClaimError, check_writer_id, read_claims
from adapters.history.rollup import (
    READ_STATS,
    bucket_start,
    empty_stats,
    merge_asof,
    merge_buckets,
    merge_latest,
    reaggregate,
    row_stats,
)
from adapters.history.types import HistoryRead, Latest, StoreInfo, UnknownDeviceError, WriterInfo
from adapters.storage import (
    MAX_POINTS,
    HistoryError,
    RowSeries,
    bucket_means,
    check_range,
    read_row_columns,
    valid_rows,
)
from twin.telemetry import METRICS

log = logging.getLogger(__name__)

__all__ = ["ClaimError", "History", "HistoryError", "HistoryRead", "Latest", "StoreInfo",
           "UnknownDeviceError", "WriterInfo", "root_path", "store_name"]

LAYOUT = "ecogrid-history/1"
TIERS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}  # name -> bucket length [s]
STANDARD_METRICS: tuple[str, ...] = (*METRICS, "online")
HOLD_S = 15.0  # longest time a raw snapshot stands for in a merge [s]
DAY_S = 86400.0
_RAW_ROWS0 = 2048  # first capacity of a raw day [rows]
ROLLUP_CHUNK = {"5m": 12, "1h": 24}  # buckets per chunk
_FEW_COLUMNS = 256  # raw reads of at most this many devices go straight to the chunk files
_STORE = re.compile(r"telemetry-(?P<writer>.+)-(?P<version>\d+)\.zarr")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


# -- names -------------------------------------------------------------------------
def root_path(url: str | os.PathLike[str]) -> Path:
    """The history root folder of ``url``: a plain path or a ``file://`` URL."""
    text = os.fspath(url)
    if not text:
        raise HistoryError("the history URL is empty: give a folder or a file:// URL")
    parsed = urlparse(text)
    if parsed.scheme in ("", "file") or re.fullmatch(r"[A-Za-z]", parsed.scheme):
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise HistoryError(f"history URL {text!r}: a file:// URL names a local path "
                                   "(file:///path), not a host")
            return Path(unquote(parsed.path))
        return Path(text)
    raise HistoryError(f"history URL {text!r}: scheme {parsed.scheme!r} is not supported; "
                       "use a folder path or a file:// URL")


def store_name(writer_id: str, fleet_version: int) -> str:
    """Folder name of a writer's store for one fleet segment."""
    if isinstance(fleet_version, bool) or not isinstance(fleet_version, int | np.integer) \
            or fleet_version < 0:
        raise HistoryError(f"fleet_version must be an integer >= 0, got {fleet_version!r}")
    return f"telemetry-{check_writer_id(writer_id)}-{int(fleet_version)}.zarr"


def metric_key(metric: str) -> str:
    """Array name of a metric's raw values (see the module docstring)."""
    if not isinstance(metric, str) or not metric:
        raise HistoryError(f"a metric name must be a non-empty string, got {metric!r}")
    if _PLAIN.fullmatch(metric) and not metric.endswith("_ts_s") and metric != "time":
        return metric
    return "x-" + metric.encode().hex()


def day_name(t_s: float) -> str:
    """UTC day ``YYYY-MM-DD`` of ``t_s`` [Unix s] (a raw day group's name)."""
    return datetime.fromtimestamp(t_s, tz=UTC).strftime("%Y-%m-%d")


def day_start(name: str) -> float:
    """Start [Unix s] of the UTC day ``name``."""
    return datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


# -- one store ---------------------------------------------------------------------
class SegmentStore:
    """A segment store opened for reading or writing (zarr access lives here)."""

    def __init__(self, path: Path, group: zarr.Group):
        self.path = path
        self.group = group
        attrs = dict(group.attrs)
        self.writer = str(attrs["writer"])
        self.fleet_version = int(attrs["fleet_version"])
        self.device_ids = [str(d) for d in np.asarray(group["device_id"][:]).tolist()]
        self.row = {d: i for i, d in enumerate(self.device_ids)}
        self.n = len(self.device_ids)
        self.metrics: list[str] = list(attrs.get("metrics", []))

    @classmethod
    def open(cls, path: Path, writable: bool = False) -> SegmentStore | None:
        """The store at ``path``, or None when it is not one of ours."""
        try:
            group = zarr.open_group(str(path), mode="r+" if writable else "r",
                                    use_consolidated=False)
            if group.attrs.get("layout") != LAYOUT:
                return None
            return cls(path, group)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def create(cls, path: Path, writer: str, fleet_version: int, device_ids: list[str],
               now_s: float) -> SegmentStore:
        group = zarr.open_group(str(path), mode="w-", zarr_format=3)
        n = len(device_ids)
        ids = group.create_array("device_id", shape=(n,), dtype=str, chunks=(max(1, n),))
        if n:
            ids[:] = np.array(device_ids, dtype=str)
        group.create_group("raw")
        for tier in TIERS:
            group.create_group(tier)
        group.attrs.update({"layout": LAYOUT, "writer": writer, "fleet_version": fleet_version,
                            "metrics": [], "created_s": now_s})
        return cls(path, group)

    def add_metric(self, metric: str) -> None:
        """Record a metric the store holds (its attributes list them)."""
        if metric not in self.metrics:
            self.metrics.append(metric)
            self.group.attrs["metrics"] = self.metrics

    def reload_metrics(self) -> list[str]:
        """The metrics as a writer in another process recorded them."""
        attrs = zarr.open_group(str(self.path), mode="r", use_consolidated=False).attrs
        self.metrics = list(attrs.get("metrics", []))
        return self.metrics

    # -- writer side -----------------------------------------------------------------
    def day_series(self, day: str) -> RowSeries:
        """The raw rows of UTC day ``day`` for appending (created when new)."""
        g = self.group["raw"]
        group = g[day] if day in g else g.create_group(day)
        return RowSeries(group, self.n, 1, _RAW_ROWS0)

    def tier_series(self, tier: str) -> RowSeries:
        """The buckets of rollup tier ``tier`` for appending."""
        rows = ROLLUP_CHUNK[tier]
        return RowSeries(self.group[tier], self.n, rows, rows * 24)

    def drop_day(self, day: str) -> None:
        """Delete the raw rows of UTC day ``day`` (one folder)."""
        shutil.rmtree(self.path / "raw" / day, ignore_errors=True)

    # -- raw ---------------------------------------------------------------------
    def days(self) -> list[str]:
        try:
            return sorted(d for d in os.listdir(self.path / "raw") if _DAY.fullmatch(d))
        except FileNotFoundError:
            return []

    def day_group(self, day: str) -> zarr.Group | None:
        try:
            g = self.group[f"raw/{day}"]
        except (KeyError, FileNotFoundError):
            return None
        return g if isinstance(g, zarr.Group) else None

    def raw_times(self, day: str) -> np.ndarray:
        g = self.day_group(day)
        if g is None:
            return np.zeros(0)
        try:
            t = np.asarray(g["time"][:], dtype=np.float64)
        except (KeyError, FileNotFoundError, ValueError):
            return np.zeros(0)
        return t[:valid_rows(t)]

    def raw_block(self, day: str, metric: str, rows: slice, cols: slice | np.ndarray,
                  with_ts: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Values (and time stamps) of ``metric``, rows ``rows`` of day ``day``; NaN if absent."""
        n_rows = rows.stop - rows.start
        n_cols = self.n if isinstance(cols, slice) else len(cols)
        key = metric_key(metric)
        g = self.day_group(day)
        out = []
        for name in (key, key + "_ts_s") if with_ts else (key,):
            try:
                arr = g[name] if g is not None else None
            except (KeyError, FileNotFoundError):
                arr = None
            if arr is None:
                out.append(np.full((n_rows, n_cols), np.nan))
            elif isinstance(cols, slice):
                out.append(np.asarray(arr[rows, cols], dtype=np.float64))
            else:
                few = read_row_columns(arr, self.path / "raw" / day / name, rows, cols) \
                    if len(cols) <= _FEW_COLUMNS else None
                if few is None:
                    few = arr.get_orthogonal_selection((rows, cols))
                out.append(np.asarray(few, dtype=np.float64))
        return out[0], (out[1] if with_ts else None)

    # -- rollups -------------------------------------------------------------------
    def tier_times(self, tier: str) -> np.ndarray:
        try:
            t = np.asarray(self.group[f"{tier}/time"][:], dtype=np.float64)
        except (KeyError, FileNotFoundError):
            return np.zeros(0)
        return t[:valid_rows(t)]

    def tier_block(self, tier: str, metric: str, stat: str, rows: slice,
                   cols: slice | np.ndarray) -> np.ndarray:
        n_cols = self.n if isinstance(cols, slice) else len(cols)
        try:
            arr = self.group[f"{tier}/{metric_key(metric)}_{stat}"]
        except (KeyError, FileNotFoundError):
            return empty_stats((rows.stop - rows.start, n_cols))[stat]
        if isinstance(cols, slice):
            return np.asarray(arr[rows, cols])
        return np.asarray(arr.get_orthogonal_selection((rows, cols)))


def write_latest(root: Path, writer_id: str, t_s: float, fleet_version: int,
                 device_ids: np.ndarray, metrics: list[str], values: np.ndarray,
                 ts_s: np.ndarray, info: dict[str, Any]) -> None:
    """Replace a writer's latest file (written to a temporary file, then renamed)."""
    folder = root / "latest"
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{writer_id}.npz.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, t_s=np.float64(t_s), fleet_version=np.int64(fleet_version),
                 device_id=device_ids, metrics=np.array(metrics, dtype=str), values=values,
                 ts_s=ts_s, info=np.array(json.dumps(info)))
    os.replace(tmp, folder / f"{writer_id}.npz")


def read_latest(path: Path) -> dict[str, Any] | None:
    """A latest file's content (None when it is gone or unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {"t_s": float(z["t_s"]), "fleet_version": int(z["fleet_version"]),
                    "device_id": z["device_id"].tolist(), "metrics": z["metrics"].tolist(),
                    "values": z["values"], "ts_s": z["ts_s"],
                    "info": json.loads(str(z["info"]))}
    except (OSError, ValueError, KeyError):
        return None


def last_raw_t(store: SegmentStore) -> float | None:
    """Time of the newest raw row of ``store`` [Unix s] (None: no raw row)."""
    for day in reversed(store.days()):
        t = store.raw_times(day)
        if len(t):
            return float(t[-1])
    return None


def raw_read_all(store: SegmentStore, t0_s: float) -> tuple[np.ndarray, dict[str, tuple]]:
    """Every raw row of ``store`` at or after ``t0_s``: times and ``{metric: (values, ts)}``."""
    times, data = [], {m: ([], []) for m in store.metrics}
    for day in store.days():
        if day_start(day) + DAY_S <= t0_s:
            continue
        t = store.raw_times(day)
        i0 = int(np.searchsorted(t, t0_s, "left"))
        if i0 >= len(t):
            continue
        times.append(t[i0:])
        for m in store.metrics:
            v, ts = store.raw_block(day, m, slice(i0, len(t)), slice(None), True)
            data[m][0].append(v)
            data[m][1].append(ts)
    if not times:
        return np.zeros(0), {}
    return np.concatenate(times), {m: (np.concatenate(v), np.concatenate(ts))
                                   for m, (v, ts) in data.items() if v}


# -- reader --------------------------------------------------------------------------
class History:
    """Reads the history: every writer's stores and segments, merged by device id.

    Parameters
    ----------
    root : str or Path
        History root (a folder path or ``file://`` URL).
    raw_days : float
        Raw retention [days] (as the writers'): older ranges are read from rollups.
    clock : callable
        ``() -> Unix s``, the default ``now_s`` of :meth:`read`.
    """

    def __init__(self, root: str | Path, raw_days: float = 7.0,
                 clock: Callable[[], float] = time.time):
        if not raw_days > 0:
            raise HistoryError(f"raw_days must be positive, got {raw_days}")
        self.root = root_path(root)
        self.raw_days = float(raw_days)
        self.clock = clock
        self._stores: dict[Path, SegmentStore] = {}
        self._closed_days: dict[tuple[Path, str], np.ndarray] = {}
        self._latest: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}

    # -- stores ------------------------------------------------------------------------
    def _scan(self) -> list[SegmentStore]:
        out = []
        for path in sorted(self.root.glob("telemetry-*-*.zarr")):
            store = self._stores.get(path)
            if store is None:
                if not _STORE.fullmatch(path.name):
                    continue
                store = SegmentStore.open(path)
                if store is None:
                    continue
                self._stores[path] = store
            out.append(store)
        return out

    def _metrics_of(self, store: SegmentStore) -> list[str]:
        return store.reload_metrics()

    def _day_times(self, store: SegmentStore, day: str, last_day: str) -> np.ndarray:
        key = (store.path, day)
        t = self._closed_days.get(key)
        if t is None:
            t = store.raw_times(day)
            if day < last_day:  # a later day exists: this one is final
                self._closed_days[key] = t
        return t

    def stores(self) -> list[StoreInfo]:
        """Every store under the root, sorted by writer and fleet version."""
        out = []
        for s in self._scan():
            days = s.days()
            rows, last = 0, np.nan
            for d in days:
                t = self._day_times(s, d, days[-1])
                rows += len(t)
                last = float(t[-1]) if len(t) else last
            out.append(StoreInfo(s.path, s.writer, s.fleet_version, list(s.device_ids),
                                 self._metrics_of(s), rows, last))
        return out

    def metrics(self) -> list[str]:
        """Every metric any store holds (standard ones first)."""
        seen = dict.fromkeys(m for s in self._scan() for m in self._metrics_of(s))
        return [m for m in STANDARD_METRICS if m in seen] + \
            [m for m in seen if m not in STANDARD_METRICS]

    def writers(self) -> list[WriterInfo]:
        """Every writer with a claim or a latest file (live or not), sorted by id."""
        claims = {c.writer: c for c in read_claims(self.root)}
        latest = {p.stem: self._latest_file(p) for p in (self.root / "latest").glob("*.npz")}
        out = []
        for w in sorted(set(claims) | set(latest)):
            c, f = claims.get(w), latest.get(w) or {}
            out.append(WriterInfo(w, bool(c and c.live), c, float(f.get("t_s", np.nan)),
                                  f.get("fleet_version"), f.get("info", {})))
        return out

    def _columns(self, stores: list[SegmentStore], devices: Sequence[str] | None,
                 missing: str = "error"
                 ) -> tuple[list[str], list[tuple[SegmentStore, np.ndarray, np.ndarray]], np.ndarray]:
        """Device ids of the answer, per store (its columns, theirs), and the stores per id."""
        if devices is None:
            ids = list(dict.fromkeys(d for s in stores for d in s.device_ids))
        else:
            ids = [str(d) for d in devices]
            if len(set(ids)) != len(ids):
                raise HistoryError("devices must not repeat an id")
            known = {d for s in stores for d in s.device_ids}
            unknown = [d for d in ids if d not in known]
            if unknown and missing == "error":
                raise UnknownDeviceError(unknown, self.root)
        pos = {d: i for i, d in enumerate(ids)}
        parts, holders = [], np.zeros(len(ids), dtype=np.int64)
        for s in stores:
            mine = [(pos[d], r) for d, r in s.row.items() if d in pos]
            if mine:
                out_cols, cols = (np.array(c, dtype=np.int64) for c in zip(*mine, strict=True))
                parts.append((s, out_cols, cols))
                holders[out_cols] += 1
        return ids, parts, holders

    # -- reading -----------------------------------------------------------------------
    def read(self, start_s: float, end_s: float, metric: str,
             devices: Sequence[str] | None = None, every_s: float | None = None,
             stat: str = "mean", now_s: float | None = None, missing: str = "error"
             ) -> HistoryRead:
        """One metric of some devices in ``[start_s, end_s)`` [Unix s], merged over stores.

        The tier: raw while the range lies inside the raw retention and
        ``every_s`` is None or under 300 s; else the coarsest rollup tier not
        coarser than ``every_s`` (5 min for a shorter ``every_s``); without
        ``every_s`` the finest tier giving at most :data:`MAX_POINTS` rows.
        An ``every_s`` coarser than the tier re-aggregates (mean weighted by
        counts, min of mins, max of maxes, last of lasts); times are then the
        bucket starts counted from ``start_s``, empty buckets left out.

        Parameters
        ----------
        start_s, end_s : float
            Range [Unix s].
        metric : str
            Metric name (see :meth:`metrics`).
        devices : sequence of str, optional
            Device ids (default: every device of any store).
        every_s : float, optional
            Bucket length [s].
        stat : {"mean", "min", "max", "last", "count"}
            Bucket statistic (raw rows without ``every_s``: the values).
        now_s : float, optional
            The time the raw retention counts back from [Unix s] (default: the clock).
        missing : {"error", "nan"}
            A device id no store holds: an error, or a column of NaN (a device of the
            fleet that has not reported yet).

        Raises
        ------
        UnknownDeviceError
            For device ids no store holds (with ``missing="error"``).
        HistoryError
            For a bad range, statistic or metric.
        """
        check_range(start_s, end_s, every_s)
        if stat not in READ_STATS:
            raise HistoryError(f"stat must be one of {list(READ_STATS)}, got {stat!r}")
        if missing not in ("error", "nan"):
            raise HistoryError(f"missing must be 'error' or 'nan', got {missing!r}")
        stores = self._scan()
        if metric not in STANDARD_METRICS and metric not in self.metrics():
            raise HistoryError(f"no metric {metric!r} in the history (known: "
                               f"{', '.join(self.metrics()) or 'none'})")
        ids, parts, holders = self._columns(stores, devices, missing)
        now = self.clock() if now_s is None else float(now_s)
        raw_ok = start_s >= now - self.raw_days * DAY_S
        if raw_ok and (every_s is None or every_s < TIERS["5m"]):
            raw = self._raw(parts, holders, len(ids), start_s, end_s, metric,
                            MAX_POINTS if every_s is None else None)
            if raw is not None:
                return self._from_raw(*raw, ids, metric, stat, start_s, every_s)
        if every_s is None:
            tier = next((n for n, r in TIERS.items() if (end_s - start_s) / r <= MAX_POINTS),
                        None)
            if tier is None:
                raise HistoryError(f"[start, end) holds more than {MAX_POINTS} buckets of the "
                                   "coarsest tier (1 h): give every (a bucket length [s])")
        else:
            fits = [n for n, r in TIERS.items() if r <= every_s]
            tier = fits[-1] if fits else "5m"
        return self._rollup(tier, parts, holders, ids, start_s, end_s, metric, stat, every_s)

    def read_since(self, since_s: float, metric: str = "p_kw", every_s: float = 900.0,
                   devices: Sequence[str] | None = None, now_s: float | None = None
                   ) -> HistoryRead:
        """Means over UTC-aligned buckets of ``every_s`` [s] from the bucket holding
        ``since_s`` on, from the 5-minute rollups (the planner's history input).

        Only closed 5-minute buckets are in it, so the last bucket may be
        partial: call again with ``since_s`` = the start of the last bucket
        returned and replace the buckets from there.
        """
        if not every_s >= TIERS["5m"] or every_s % TIERS["5m"]:
            raise HistoryError(f"every must be a multiple of 300 s, got {every_s}")
        now = self.clock() if now_s is None else float(now_s)
        start = float(bucket_start(since_s, every_s))
        end = float(bucket_start(now, every_s)) + every_s
        check_range(start, end, every_s)
        ids, parts, holders = self._columns(self._scan(), devices)
        return self._rollup("5m", parts, holders, ids, start, end, metric, "mean", every_s)

    def _raw(self, parts: list, holders: np.ndarray, n_ids: int, start_s: float,
             end_s: float, metric: str, max_rows: int | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Raw rows of every store in range, merged as of each snapshot time (None: more
        than ``max_rows`` of them; only the times were read)."""
        spans = []  # per store: its (day, i0, i1) in range
        for s, _, _ in parts:
            days, mine = s.days(), []
            for d in days:
                d0 = day_start(d)
                if d0 >= end_s or d0 + DAY_S <= start_s:
                    continue
                t = self._day_times(s, d, days[-1])
                i0, i1 = (int(x) for x in np.searchsorted(t, [start_s, end_s], "left"))
                if i1 > i0:
                    mine.append((d, t[i0:i1], i0, i1))
            spans.append(mine)
        if max_rows is not None:
            times = [t for mine in spans for _, t, _, _ in mine]
            if times and len(np.unique(np.concatenate(times))) > max_rows:
                return None
        got = []
        for (s, out_cols, cols), mine in zip(parts, spans, strict=True):
            if not mine:
                continue
            shared = holders[out_cols] > 1
            sel: slice | np.ndarray = cols
            if len(cols) == s.n and np.array_equal(cols, np.arange(s.n)):
                sel = slice(None)
            blocks = [s.raw_block(d, metric, slice(i0, i1), sel, bool(shared.any()))
                      for d, _, i0, i1 in mine]
            got.append((np.concatenate([t for _, t, _, _ in mine]),
                        np.concatenate([v for v, _ in blocks]),
                        np.concatenate([ts for _, ts in blocks]) if shared.any() else None,
                        out_cols, shared))
        return merge_asof(got, n_ids, HOLD_S)

    def _from_raw(self, t: np.ndarray, v: np.ndarray, ts: np.ndarray, ids: list[str],
                  metric: str, stat: str, start_s: float, every_s: float | None
                  ) -> HistoryRead:
        if every_s is None:
            res = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
            counts = np.isfinite(v).astype(np.int64)
            values = counts.astype(np.float64) if stat == "count" else v
            return HistoryRead(t, values, counts, ids, metric, stat, "raw", res)
        if stat == "mean":
            bt, (values,) = bucket_means(t, [v], start_s, every_s)
            _, agg = reaggregate(t, {"count": np.isfinite(v).astype(np.int64)}, start_s,
                                 every_s)
        else:
            if ts.shape != v.shape:  # no column shared: time stamps not read
                ts = np.full_like(v, np.nan)
            bt, agg = reaggregate(t, row_stats(v, ts), start_s, every_s)
            values = agg[stat].astype(np.float64)
        return HistoryRead(np.asarray(bt, dtype=np.float64), values, agg["count"], ids, metric,
                           stat, "raw", float(every_s))

    def _rollup(self, tier: str, parts: list, holders: np.ndarray, ids: list[str],
                start_s: float, end_s: float, metric: str, stat: str,
                every_s: float | None) -> HistoryRead:
        res = TIERS[tier]
        want = ["count"] + ([stat] if stat != "count" else [])
        first = float(bucket_start(start_s, res))  # the bucket that holds start_s counts
        got = []
        for s, out_cols, cols in parts:
            t = s.tier_times(tier)
            i0, i1 = (int(x) for x in np.searchsorted(t, [first, end_s], "left"))
            if i1 <= i0:
                continue
            shared = holders[out_cols] > 1
            names = want + (["last_ts_s"] if shared.any() and "last_ts_s" not in want else [])
            block = {n: s.tier_block(tier, metric, n, slice(i0, i1), cols) for n in names}
            got.append((t[i0:i1], block, out_cols, shared))
        union, merged = merge_buckets(got, len(ids), want)
        out_t, resolution = union, res
        if every_s is not None and every_s > res:
            # buckets of every_s on the tier's grid when every_s is a whole number of its
            # buckets (UTC-aligned, as the store's), else counted from the first bucket
            origin = float(bucket_start(start_s, every_s)) if every_s % res == 0 else first
            out_t, merged = reaggregate(union, merged, origin, every_s)
            resolution = float(every_s)
        counts = np.asarray(merged["count"], dtype=np.int64)
        values = np.where(counts > 0, np.asarray(merged[stat], dtype=np.float64), np.nan) \
            if stat != "count" else counts.astype(np.float64)
        return HistoryRead(np.asarray(out_t, dtype=np.float64), values, counts, ids, metric,
                           stat, tier, resolution)

    # -- latest ------------------------------------------------------------------------
    def _latest_file(self, path: Path) -> dict[str, Any] | None:
        try:
            st = path.stat()
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            hit = self._latest.get(path)
            if hit is not None and hit[0] == key:
                return hit[1]
        except OSError:
            return None
        rec = read_latest(path)
        if rec is None:
            return None  # gone, or replaced while read: the next poll sees the new one
        self._latest[path] = (key, rec)
        return rec

    def latest(self, devices: Sequence[str] | None = None) -> Latest:
        """Each device's newest value and time stamp of every metric, over all writers.

        Raises
        ------
        UnknownDeviceError
            For device ids that no writer's latest file holds.
        """
        files = [f for f in (self._latest_file(p)
                             for p in sorted((self.root / "latest").glob("*.npz"))) if f]
        all_ids = list(dict.fromkeys(d for f in files for d in f["device_id"]))
        if devices is None:
            ids = all_ids
        else:
            ids = [str(d) for d in devices]
            missing = sorted(set(ids) - set(all_ids))
            if missing:
                raise UnknownDeviceError(missing, self.root)
        metrics, values, ts = merge_latest(files, ids)
        t = max((f["t_s"] for f in files), default=np.nan)
        return Latest(ids, metrics, values, ts, float(t))
