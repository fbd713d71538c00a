"""Rollup arithmetic of the telemetry history: pure functions of arrays, no storage.

A rollup bucket holds, per device and metric, the statistics of the snapshot
values that fell in it (NaN values are left out): ``count``, ``mean``, ``min``,
``max``, ``last`` and ``last_ts_s`` (the time stamp [Unix s] of the value
``last`` holds). Those are enough to merge and re-aggregate exactly:

* coarser buckets: ``mean`` weighted by ``count``, ``min`` of mins, ``max`` of
  maxes, ``last`` of the latest bucket with a value (:func:`reaggregate`);
* several stores of one bucket: the one whose ``last_ts_s`` is the newest
  wins (:func:`newer`).

:class:`Accumulator` keeps the open bucket of one tier for one store as data
arrives.
"""

from __future__ import annotations

import numpy as np

STATS: tuple[str, ...] = ("count", "mean", "min", "max", "last", "last_ts_s")
READ_STATS: tuple[str, ...] = ("mean", "min", "max", "last", "count")
STAT_DTYPES: dict[str, str] = {"count": "int32", "mean": "float32", "min": "float32",
                               "max": "float32", "last": "float32", "last_ts_s": "float64"}


def bucket_start(t_s: float | np.ndarray, resolution_s: float) -> np.ndarray:
    """Start [Unix s] of the UTC-aligned bucket of length ``resolution_s`` [s] holding ``t_s``."""
    return np.floor(np.asarray(t_s, dtype=np.float64) / resolution_s) * resolution_s


def newer(cand_ok: np.ndarray, cand_ts: np.ndarray, cur_ok: np.ndarray,
          cur_ts: np.ndarray) -> np.ndarray:
    """Where a candidate value replaces the current one: it has a value and the current
    has none, or its time stamp [Unix s] is newer (a missing time stamp is the oldest)."""
    with np.errstate(invalid="ignore"):
        later = np.isfinite(cand_ts) & (~np.isfinite(cur_ts) | (cand_ts > cur_ts))
    return cand_ok & (~cur_ok | later)


def empty_stats(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Statistics of buckets without any value."""
    out = {s: np.full(shape, np.nan, dtype=STAT_DTYPES[s]) for s in STATS if s != "count"}
    out["count"] = np.zeros(shape, dtype=np.int32)
    return out


def row_stats(values: np.ndarray, ts_s: np.ndarray) -> dict[str, np.ndarray]:
    """Snapshot rows seen as one-snapshot buckets (count 1 where a value is)."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    return {"count": ok.astype(np.int32), "mean": v, "min": v, "max": v, "last": v,
            "last_ts_s": np.where(ok, np.asarray(ts_s, dtype=np.float64), np.nan)}


class Accumulator:
    """Statistics of one open bucket for ``n`` devices, metric by metric.

    Parameters
    ----------
    bucket_s : float
        The bucket's start [Unix s].
    n : int
        Number of devices (the rows of the store it belongs to).
    """

    def __init__(self, bucket_s: float, n: int):
        self.bucket_s = float(bucket_s)
        self.n = int(n)
        self._m: dict[str, dict[str, np.ndarray]] = {}

    @property
    def metrics(self) -> list[str]:
        return list(self._m)

    def _arrays(self, metric: str) -> dict[str, np.ndarray]:
        a = self._m.get(metric)
        if a is None:
            a = {"count": np.zeros(self.n, dtype=np.int64), "sum": np.zeros(self.n),
                 "min": np.full(self.n, np.nan), "max": np.full(self.n, np.nan),
                 "last": np.full(self.n, np.nan), "last_ts_s": np.full(self.n, np.nan)}
            self._m[metric] = a
        return a

    def add(self, metric: str, values: np.ndarray, ts_s: np.ndarray,
            rows: np.ndarray | None = None) -> None:
        """Add snapshot rows in time order.

        Parameters
        ----------
        metric : str
            Metric name.
        values, ts_s : (n_times, n_cols) or (n_cols,) arrays
            Values and their time stamps [Unix s].
        rows : int array, optional
            Device rows of the columns (default: all ``n``, in order).
        """
        v = np.atleast_2d(np.asarray(values, dtype=np.float64))
        ts = np.atleast_2d(np.asarray(ts_s, dtype=np.float64))
        if v.shape[0] == 0:
            return
        a = self._arrays(metric)
        idx = slice(None) if rows is None else np.asarray(rows, dtype=np.int64)
        ok = np.isfinite(v)
        a["count"][idx] += ok.sum(axis=0)
        a["sum"][idx] += np.where(ok, v, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore"):
            a["min"][idx] = np.fmin(a["min"][idx], np.fmin.reduce(v, axis=0))
            a["max"][idx] = np.fmax(a["max"][idx], np.fmax.reduce(v, axis=0))
        has = ok.any(axis=0)
        last = v.shape[0] - 1 - ok[::-1].argmax(axis=0)
        cols = np.arange(v.shape[1])
        lv, lts = a["last"][idx], a["last_ts_s"][idx]
        lv[has] = v[last, cols][has]
        lts[has] = ts[last, cols][has]
        a["last"][idx], a["last_ts_s"][idx] = lv, lts

    def merge(self, other: Accumulator, rows_self: np.ndarray, rows_other: np.ndarray) -> None:
        """Add the devices ``rows_other`` of ``other`` (same bucket) into ``rows_self``."""
        for metric, b in other._m.items():
            a = self._arrays(metric)
            a["count"][rows_self] += b["count"][rows_other]
            a["sum"][rows_self] += b["sum"][rows_other]
            a["min"][rows_self] = np.fmin(a["min"][rows_self], b["min"][rows_other])
            a["max"][rows_self] = np.fmax(a["max"][rows_self], b["max"][rows_other])
            take = newer(np.isfinite(b["last"][rows_other]), b["last_ts_s"][rows_other],
                         np.isfinite(a["last"][rows_self]), a["last_ts_s"][rows_self])
            a["last"][rows_self[take]] = b["last"][rows_other[take]]
            a["last_ts_s"][rows_self[take]] = b["last_ts_s"][rows_other[take]]

    def drop(self, rows: np.ndarray) -> None:
        """Forget the devices ``rows`` (their values went to another accumulator)."""
        for a in self._m.values():
            a["count"][rows] = 0
            a["sum"][rows] = 0.0
            for k in ("min", "max", "last", "last_ts_s"):
                a[k][rows] = np.nan

    def has_values(self) -> bool:
        return any(a["count"].any() for a in self._m.values())

    def stats(self, metric: str) -> dict[str, np.ndarray]:
        """The bucket's statistics of ``metric`` (see :data:`STATS`), typed for storage."""
        a = self._m.get(metric)
        if a is None:
            return empty_stats((self.n,))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(a["count"] > 0, a["sum"] / np.maximum(a["count"], 1), np.nan)
        out = {"count": a["count"], "mean": mean, "min": a["min"], "max": a["max"],
               "last": a["last"], "last_ts_s": a["last_ts_s"]}
        return {k: np.asarray(v, dtype=STAT_DTYPES[k]) for k, v in out.items()}


def reaggregate(t_s: np.ndarray, stats: dict[str, np.ndarray], start_s: float,
                every_s: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Merge buckets (or snapshot rows) into buckets of ``every_s`` [s] counted from ``start_s``.

    Parameters
    ----------
    t_s : (n_rows,) array
        Bucket starts or snapshot times [Unix s], increasing.
    stats : dict of (n_rows, n_devices) arrays
        ``count`` (0 where a row has no value) and any of the other statistics
        of :data:`STATS`; only those given are computed.
    start_s, every_s : float
        Origin and length of the new buckets [s].

    Returns
    -------
    t_s : (n_buckets,) array
        Starts of the new buckets that hold at least one row [Unix s].
    stats : dict of (n_buckets, n_devices) arrays
        ``mean`` weighted by ``count``, min of mins, max of maxes, ``last`` (and
        ``last_ts_s``) of the latest row with a value, ``count`` summed.
    """
    t = np.asarray(t_s, dtype=np.float64)
    if len(t) == 0:
        return t, {k: np.asarray(v) for k, v in stats.items()}
    key = np.floor((t - start_s) / every_s).astype(np.int64)
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    count = np.asarray(stats["count"], dtype=np.int64)
    ok = count > 0
    n = np.add.reduceat(count, first, axis=0)
    out: dict[str, np.ndarray] = {"count": n}

    def valued(name: str) -> np.ndarray:
        return np.where(ok, np.asarray(stats[name], dtype=np.float64), np.nan)

    with np.errstate(invalid="ignore", divide="ignore"):
        if "mean" in stats:
            weighted = np.add.reduceat(np.nan_to_num(valued("mean")) * count, first, axis=0)
            out["mean"] = np.where(n > 0, weighted / np.maximum(n, 1), np.nan)
        if "min" in stats:
            out["min"] = np.fmin.reduceat(valued("min"), first, axis=0)
        if "max" in stats:
            out["max"] = np.fmax.reduceat(valued("max"), first, axis=0)
    if "last" in stats or "last_ts_s" in stats:
        row = np.where(ok, np.arange(len(t))[:, None], -1)
        last_row = np.maximum.reduceat(row, first, axis=0)
        cols = np.arange(count.shape[1])[None, :]
        safe, has = np.maximum(last_row, 0), last_row >= 0
        for name in ("last", "last_ts_s"):
            if name in stats:
                out[name] = np.where(has, valued(name)[safe, cols], np.nan)
    return start_s + key[first] * every_s, out


# -- merging stores ------------------------------------------------------------------
def merge_asof(parts: list[tuple], n_cols: int, hold_s: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Snapshot rows of several stores merged at every snapshot time of any of them.

    A store's snapshot stands for the times up to its next one, at most
    ``hold_s`` [s]; a column held by several stores takes, per time, the value
    with the newest time stamp (:func:`newer`).

    Parameters
    ----------
    parts : list of (t_s, values, ts_s, out_cols, shared)
        Per store: snapshot times [Unix s] (n_rows,), values (n_rows, n), their
        time stamps (n_rows, n) or None when no column is shared, the answer's
        columns of its n columns, and which of them other stores hold too.
    n_cols : int
        Columns of the answer.
    hold_s : float
        Longest time a snapshot stands for [s].

    Returns
    -------
    t_s, values, ts_s
        The union of the times (n_times,), values and time stamps (n_times, n_cols;
        no rows when no column is shared).
    """
    if not parts:
        return np.zeros(0), np.zeros((0, n_cols)), np.zeros((0, n_cols))
    union = np.unique(np.concatenate([p[0] for p in parts]))
    out = np.full((len(union), n_cols), np.nan)
    any_shared = any(p[2] is not None for p in parts)
    out_ts = np.full((len(union), n_cols), np.nan) if any_shared else np.zeros((0, n_cols))
    for t, v, ts, out_cols, shared in parts:
        idx = np.searchsorted(t, union, "right") - 1
        ok = idx >= 0
        ok[ok] = union[ok] - t[idx[ok]] < hold_s
        rows = np.flatnonzero(ok)
        cand = v[idx[ok]]
        solo = ~shared
        out[np.ix_(rows, out_cols[solo])] = cand[:, solo]
        if ts is not None and shared.any():
            c_ts, c_v = ts[idx[ok]][:, shared], cand[:, shared]
            sub = np.ix_(rows, out_cols[shared])
            take = newer(np.isfinite(c_v), c_ts, np.isfinite(out[sub]), out_ts[sub])
            out[sub] = np.where(take, c_v, out[sub])
            out_ts[sub] = np.where(take, c_ts, out_ts[sub])
    return union, out, out_ts


def merge_buckets(parts: list[tuple], n_cols: int, stats: list[str]
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rollup buckets of several stores merged: per column and bucket the store with the
    newest ``last_ts_s`` wins.

    Parameters
    ----------
    parts : list of (t_s, block, out_cols, shared)
        Per store: bucket starts [Unix s], ``{stat: (n_rows, n)}`` (with
        ``count``, and ``last_ts_s`` when a column is shared), the answer's
        columns and which of them other stores hold too.
    n_cols : int
        Columns of the answer.
    stats : list of str
        The statistics wanted (``count`` among them).
    """
    union = np.unique(np.concatenate([p[0] for p in parts])) if parts else np.zeros(0)
    base = empty_stats((len(union), n_cols))
    merged = {k: base[k].astype(np.int64 if k == "count" else np.float64)
              for k in set(stats) | {"last_ts_s"}}
    for t, block, out_cols, shared in parts:
        rows = np.searchsorted(union, t)
        solo = ~shared
        for k, v in block.items():
            merged[k][np.ix_(rows, out_cols[solo])] = v[:, solo]
        if shared.any():
            sub = np.ix_(rows, out_cols[shared])
            take = newer(block["count"][:, shared] > 0, block["last_ts_s"][:, shared],
                         merged["count"][sub] > 0, merged["last_ts_s"][sub])
            for k, v in block.items():
                merged[k][sub] = np.where(take, v[:, shared], merged[k][sub])
    return union, merged


def merge_latest(files: list[dict], ids: list[str]
                 ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Writers' latest values merged per device and metric (the newest time stamp wins).

    ``files`` hold ``device_id``, ``metrics``, ``values`` and ``ts_s``; returns the
    metrics, values and time stamps ``(len(ids), n_metrics)``.
    """
    metrics = list(dict.fromkeys(m for f in files for m in f["metrics"]))
    pos = {d: i for i, d in enumerate(ids)}
    mpos = {m: j for j, m in enumerate(metrics)}
    values = np.full((len(ids), len(metrics)), np.nan)
    ts = np.full((len(ids), len(metrics)), np.nan)
    for f in files:
        mine = [(pos[d], r) for r, d in enumerate(f["device_id"]) if d in pos]
        if not mine:
            continue
        out_rows, rows = (np.array(c, dtype=np.int64) for c in zip(*mine, strict=True))
        sub = np.ix_(out_rows, np.array([mpos[m] for m in f["metrics"]], dtype=np.int64))
        c_v, c_ts = f["values"][rows], f["ts_s"][rows]
        take = newer(np.isfinite(c_v), c_ts, np.isfinite(values[sub]), ts[sub])
        values[sub] = np.where(take, c_v, values[sub])
        ts[sub] = np.where(take, c_ts, ts[sub])
    return metrics, values, ts
