"""Telemetry history in zarr: one snapshot of every device per period, read back by range.

The store holds ``t_s`` (one Unix time per snapshot [s]) and one 2-D array
per metric (``p_kw``, ``soc``), shape ``(snapshots, devices)``, chunked along
time; the device ids are in the group's attributes. Each :meth:`append`
writes through to disk, so after a crash the history is intact up to the
last snapshot (taken at least every 10 s by the live service).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from twin.fleet import Fleet
from twin.kpis import device_flows

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("p_kw", "soc")
_CHUNK_T = 360


class HistoryError(ValueError):
    """A bad history query (unknown metric or device, bad range)."""


class TelemetryHistory:
    """Append-only zarr history of device telemetry snapshots.

    Parameters
    ----------
    path : Path
        Folder of the zarr group (created when missing).
    device_ids : list of str
        Device ids in row order; a store made for other devices is moved aside.
    """

    def __init__(self, path: Path, device_ids: list[str]):
        import zarr

        self.path = Path(path)
        self.device_ids = list(device_ids)
        self.row = {d: i for i, d in enumerate(self.device_ids)}
        self._lock = threading.Lock()
        n = len(self.device_ids)
        group = None
        if self.path.exists():
            try:
                group = zarr.open_group(str(self.path), mode="a")
                if group.attrs.get("device_ids") != self.device_ids:
                    aside = self.path.with_name(self.path.name + ".old")
                    log.warning("history at %s is for another fleet; moved to %s", self.path,
                                aside)
                    shutil.rmtree(aside, ignore_errors=True)
                    self.path.rename(aside)
                    group = None
            except (OSError, ValueError, KeyError) as exc:
                log.warning("history at %s unreadable (%s); starting a new one", self.path, exc)
                shutil.rmtree(self.path, ignore_errors=True)
                group = None
        if group is None:
            group = zarr.open_group(str(self.path), mode="w")
            group.attrs["device_ids"] = self.device_ids
            group.create_array("t_s", shape=(0,), chunks=(_CHUNK_T,), dtype="f8",
                               fill_value=np.nan)
            for m in METRICS:
                group.create_array(m, shape=(0, n), chunks=(_CHUNK_T, max(1, min(n, 2048))),
                                   dtype="f4", fill_value=np.nan)
        self.group = group
        self._t = np.asarray(group["t_s"][:], dtype=np.float64)
        # Snapshots written before a crash can leave metric rows past t_s; keep them aligned.
        self._n = len(self._t)

    @property
    def n_snapshots(self) -> int:
        return self._n

    def last_t_s(self) -> float | None:
        return float(self._t[-1]) if self._n else None

    def append(self, t_s: float, values: dict[str, np.ndarray]) -> None:
        """Write one snapshot taken at ``t_s`` [s] (metric arrays of length n_devices)."""
        with self._lock:
            if self._n and t_s <= self._t[-1]:
                return
            for m in METRICS:
                arr = self.group[m]
                row = np.asarray(values[m], dtype=np.float32).reshape(1, -1)
                if arr.shape[0] > self._n:  # a row past t_s from an interrupted append
                    arr.resize((self._n, arr.shape[1]))
                arr.append(row, axis=0)
            # t_s last: a snapshot counts only once its time is written.
            self.group["t_s"].append(np.array([t_s]), axis=0)
            self._t = np.append(self._t, t_s)
            self._n += 1

    def query(self, device_id: str, metric: str, start_s: float, end_s: float,
              every_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Times [s] and values of one device's metric in ``[start_s, end_s)``.

        With ``every_s`` the values are averaged over buckets of that length
        (times are the bucket starts; empty buckets are left out).
        """
        if metric not in METRICS:
            raise HistoryError(f"metric {metric!r} is not one of {METRICS}")
        col = self.row.get(device_id)
        if col is None:
            raise HistoryError(f"no history for device {device_id!r}")
        if not end_s > start_s:
            raise HistoryError(f"end ({end_s}) must be after start ({start_s})")
        if every_s is not None and not every_s > 0:
            raise HistoryError(f"every must be positive, got {every_s}")
        with self._lock:
            t = self._t
            i0, i1 = np.searchsorted(t, start_s, "left"), np.searchsorted(t, end_s, "left")
            values = np.asarray(self.group[metric][i0:i1, col], dtype=np.float64)
            times = t[i0:i1].copy()
        if every_s is None or len(times) == 0:
            return times, values
        out_t, (means,) = bucket_means(times, [values], start_s, every_s)
        return out_t, means

    def count(self, start_s: float, end_s: float) -> int:
        """Number of snapshots in ``[start_s, end_s)`` [s]."""
        t = self._t
        return int(np.searchsorted(t, end_s, "left") - np.searchsorted(t, start_s, "left"))

    def read_block(self, start_s: float, end_s: float, columns: slice | np.ndarray,
                   metric: str = "p_kw", max_rows: int = _CHUNK_T
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Snapshots in ``[start_s, end_s)`` of the given device columns, block by block.

        Yields ``(t_s [s], values)`` with values of shape ``(rows, columns)``, at most
        ``max_rows`` snapshots at a time (memory stays bounded for any range).
        """
        with self._lock:
            t = self._t
            i0, i1 = np.searchsorted(t, start_s, "left"), np.searchsorted(t, end_s, "left")
        arr = self.group[metric]
        for a in range(int(i0), int(i1), max_rows):
            b = min(int(i1), a + max_rows)
            if isinstance(columns, slice):
                block = arr[a:b, columns]
            else:
                block = arr.get_orthogonal_selection((slice(a, b), columns))
            yield t[a:b], np.asarray(block, dtype=np.float64)


FLOWS: tuple[str, ...] = ("generation_kw", "consumption_kw", "battery_kw", "grid_kw")
MAX_POINTS = 20_000


def bucket_means(times: np.ndarray, series: list[np.ndarray], start_s: float, every_s: float
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Average series over buckets of ``every_s`` [s] counted from ``start_s`` [s].

    NaN values are left out of a bucket's mean (a bucket of only NaN gives NaN);
    empty buckets are left out. Returns the bucket starts [s] and the means.
    """
    if len(times) == 0:
        return np.asarray(times, dtype=np.float64), [np.asarray(s, dtype=np.float64)
                                                      for s in series]
    bucket = np.floor((np.asarray(times) - start_s) / every_s).astype(np.int64)
    keys, inverse = np.unique(bucket, return_inverse=True)
    out = []
    for values in series:
        ok = ~np.isnan(values)
        sums = np.bincount(inverse, weights=np.where(ok, values, 0.0), minlength=len(keys))
        counts = np.bincount(inverse, weights=ok.astype(float), minlength=len(keys))
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
    return start_s + keys * every_s, out


def check_range(start_s: float, end_s: float, every_s: float | None) -> None:
    """Refuse a query range that is not finite, not ordered, or has too many buckets."""
    for name, v in (("start", start_s), ("end", end_s), ("every", every_s)):
        if v is not None and not np.isfinite(v):
            raise HistoryError(f"{name} must be a finite number of seconds, got {v}")
    if not end_s > start_s:
        raise HistoryError(f"end ({end_s}) must be after start ({start_s})")
    if every_s is not None:
        if not every_s > 0:
            raise HistoryError(f"every must be positive, got {every_s}")
        if (end_s - start_s) / every_s > MAX_POINTS:
            raise HistoryError(f"{(end_s - start_s) / every_s:.0f} buckets of every={every_s} s "
                               f"in [start, end); at most {MAX_POINTS}: choose a larger every")


def power_flows(history: TelemetryHistory, fleet: Fleet, start_s: float, end_s: float,
                every_s: float | None = None, site_id: str | None = None
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Generation, consumption, battery and grid power of the fleet or one site.

    Per snapshot, from the devices' ``p_kw`` history (a device without a value
    counts as 0; a snapshot where no device of the selection has a value gives
    NaN), as :func:`twin.kpis.device_flows` defines them: generation is PV
    output, consumption is load and EV charging (a positive number), battery is
    the net battery power (discharge positive), grid is the sum of all device
    powers (the grid exchange, export positive). The same definitions as the
    dashboard's live fleet chart and the ``live_generation_mw`` KPI.

    Parameters
    ----------
    history : TelemetryHistory
        The telemetry history (its columns are the fleet's device rows).
    fleet : Fleet
        The fleet (device types and sites).
    start_s, end_s : float
        Range ``[start_s, end_s)`` [Unix s].
    every_s : float, optional
        Bucket length [s]: the flows are averaged over each bucket (times are the
        bucket starts; empty buckets are left out). None: one value per snapshot.
    site_id : str, optional
        One site's devices only; None: the whole fleet.

    Returns
    -------
    t_s : ndarray
        Snapshot or bucket times [Unix s].
    flows : dict of str to ndarray
        ``generation_kw``, ``consumption_kw``, ``battery_kw``, ``grid_kw`` [kW].

    Raises
    ------
    HistoryError
        For a bad range or an unknown site.
    """
    check_range(start_s, end_s, every_s)
    if len(fleet.device_id) != len(history.device_ids):
        raise HistoryError("the history is for another fleet")
    if site_id is None:
        columns: slice | np.ndarray = slice(None)
        types = np.asarray(fleet.device_type)
    else:
        srow = fleet.site_row.get(site_id)
        if srow is None:
            raise HistoryError(f"no history for site {site_id!r}: no such site")
        rows = np.flatnonzero(fleet.device_site == srow)
        types = np.asarray(fleet.device_type)[rows]
        contiguous = len(rows) > 0 and rows[-1] - rows[0] + 1 == len(rows)
        columns = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows
    n = history.count(start_s, end_s)
    if every_s is None and n > MAX_POINTS:
        raise HistoryError(f"{n} snapshots in [start, end); at most {MAX_POINTS} "
                           "without every: give every (a bucket length [s])")
    one_group = np.zeros(len(types), dtype=np.int64)  # the selection as one site
    times, parts = [], []
    if site_id is None or len(types):
        for t, p in history.read_block(start_s, end_s, columns):
            seen = ~np.isnan(p)
            f = device_flows(p, types, one_group, 1)
            flows = np.stack([f[k][:, 0] for k in FLOWS])
            flows[:, ~seen.any(axis=1)] = np.nan
            times.append(t)
            parts.append(flows)
    t_all = np.concatenate(times) if times else np.zeros(0)
    f_all = np.concatenate(parts, axis=1) if parts else np.zeros((len(FLOWS), 0))
    series = list(f_all)
    if every_s is not None:
        t_all, series = bucket_means(t_all, series, start_s, every_s)
    return t_all, dict(zip(FLOWS, series, strict=True))
