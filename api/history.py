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
from pathlib import Path

import numpy as np

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
        bucket = np.floor((times - start_s) / every_s).astype(np.int64)
        keys, inverse = np.unique(bucket, return_inverse=True)
        ok = ~np.isnan(values)
        sums = np.bincount(inverse, weights=np.where(ok, values, 0.0), minlength=len(keys))
        counts = np.bincount(inverse, weights=ok.astype(float), minlength=len(keys))
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return start_s + keys * every_s, means
