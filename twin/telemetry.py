"""The twin's live telemetry: last value and its time stamp per device and metric.

:class:`Telemetry` holds numpy arrays indexed by device row (and metric
column), never one Python object per value:

* ``value[row, m]`` the last value of metric ``metrics[m]`` and ``ts_s[row, m]``
  its time stamp [Unix s] (NaN until a first value arrives);
* ``last_seen_s[row]`` the newest time stamp of any metric of the device;
* ``online[row]`` (the device said ``online`` and its gateway is online) and
  ``online_changed_s[row]``; ``site_online[site]`` and
  ``site_online_changed_s[site]`` for the gateways;
* ``stale[row]``: no telemetry for more than ``stale_factor`` times the
  device's ``expected_interval_s``, with ``stale_changed_s[row]``.

The standard metrics (``METRICS``) have fixed columns; a metric name never seen
before gets a new column (up to ``max_metrics``), so unknown metrics are kept.
Writers are the MQTT ingest (or a scenario); readers take :attr:`lock` for a
consistent view, or call :meth:`snapshot`. Time is always an argument.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from twin.fleet import Fleet

# Standard metrics; signs and units as in docs/protocol.md.
METRICS: tuple[str, ...] = ("p_kw", "q_kvar", "v", "soc", "e_kwh", "temp_c")

UNKNOWN = -1  # status not known yet (no status message seen)
# Status flags kept beside the metrics in the telemetry store, per device (1/0, NaN unknown):
# the device's own reported status and its site gateway's.
FLAGS: tuple[str, ...] = ("online", "gateway_online")


@dataclass(frozen=True)
class FlagChange:
    """Rows whose flag changed in one update, with the new values."""

    rows: np.ndarray
    values: np.ndarray
    t_s: float


class Telemetry:
    """Last values, time stamps and online/stale flags of a fleet's devices.

    Parameters
    ----------
    fleet : Fleet
        Gives the device rows, the sites and the device-to-site map.
    expected_interval_s : float or array
        Expected telemetry interval per device [s].
    stale_factor : float
        A device is stale when its newest telemetry is older than
        ``stale_factor * expected_interval_s``.
    max_metrics : int
        Most metric columns kept (standard ones included).
    """

    def __init__(self, fleet: Fleet, expected_interval_s: float | np.ndarray = 1.0,
                 stale_factor: float = 3.0, max_metrics: int = 32):
        n = fleet.n_devices
        self.fleet = fleet
        self.lock = threading.RLock()
        self.max_metrics = int(max_metrics)
        self.metrics: list[str] = list(METRICS)
        self.metric_index: dict[str, int] = {m: i for i, m in enumerate(self.metrics)}
        self.value = np.full((n, len(METRICS)), np.nan)
        self.ts_s = np.full((n, len(METRICS)), np.nan)
        self.last_seen_s = np.full(n, np.nan)
        self.expected_interval_s = np.broadcast_to(
            np.asarray(expected_interval_s, dtype=np.float64), (n,)).copy()
        self.stale_factor = float(stale_factor)
        self.reported_online = np.full(n, UNKNOWN, dtype=np.int8)
        self.online = np.zeros(n, dtype=bool)
        self.online_changed_s = np.full(n, np.nan)
        self.stale = np.zeros(n, dtype=bool)
        self.stale_changed_s = np.full(n, np.nan)
        self.site_online = np.full(fleet.n_sites, UNKNOWN, dtype=np.int8)
        self.site_online_changed_s = np.full(fleet.n_sites, np.nan)
        self.values_written = 0

    # -- metrics -------------------------------------------------------------
    @property
    def n_metrics(self) -> int:
        return len(self.metrics)

    def metric_column(self, name: str, create: bool = True) -> int:
        """Column of metric ``name``; a new column for a new name (-1 when full)."""
        col = self.metric_index.get(name)
        if col is not None or not create:
            return -1 if col is None else col
        with self.lock:
            if name in self.metric_index:
                return self.metric_index[name]
            if len(self.metrics) >= self.max_metrics:
                return -1
            n = self.value.shape[0]
            self.value = np.hstack([self.value, np.full((n, 1), np.nan)])
            self.ts_s = np.hstack([self.ts_s, np.full((n, 1), np.nan)])
            self.metrics.append(name)
            self.metric_index[name] = len(self.metrics) - 1
            return len(self.metrics) - 1

    # -- writes --------------------------------------------------------------
    def write(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
              ts_s: np.ndarray) -> int:
        """Store values; a value older than the one held is skipped.

        Parameters
        ----------
        rows, cols : int arrays
            Device rows and metric columns.
        values : float array
            The values (already validated).
        ts_s : float array
            Their time stamps [Unix s].

        Returns the number of values written.
        """
        if len(rows) == 0:
            return 0
        order = np.argsort(ts_s, kind="stable")  # later writes win: newest last
        rows, cols, values, ts_s = rows[order], cols[order], values[order], ts_s[order]
        with self.lock:
            held = self.ts_s[rows, cols]
            newer = ~(ts_s < held)  # NaN held (never seen) compares False -> newer
            rows, cols = rows[newer], cols[newer]
            self.value[rows, cols] = values[newer]
            self.ts_s[rows, cols] = ts_s[newer]
            np.fmax.at(self.last_seen_s, rows, ts_s[newer])
            self.values_written += int(newer.sum())
            return int(newer.sum())

    def set_site_online(self, sites: np.ndarray, online: np.ndarray, t_s: float) -> FlagChange:
        """Gateway status of sites (1 online, 0 offline) at time ``t_s`` [Unix s].

        A gateway going offline takes all its devices offline. Returns the
        device rows whose effective ``online`` flag changed.
        """
        sites = np.asarray(sites, dtype=np.int64)
        online = np.asarray(online, dtype=np.int8)
        with self.lock:
            changed = self.site_online[sites] != online
            self.site_online[sites] = online
            self.site_online_changed_s[sites[changed]] = t_s
            mask = np.isin(self.fleet.device_site, sites)
            return self._refresh_online(np.flatnonzero(mask), t_s)

    def set_device_online(self, rows: np.ndarray, online: np.ndarray, t_s: float) -> FlagChange:
        """Device status as reported by its gateway (1 online, 0 offline)."""
        rows = np.asarray(rows, dtype=np.int64)
        with self.lock:
            self.reported_online[rows] = np.asarray(online, dtype=np.int8)
            return self._refresh_online(rows, t_s)

    def _refresh_online(self, rows: np.ndarray, t_s: float) -> FlagChange:
        site_ok = self.site_online[self.fleet.device_site[rows]] == 1
        effective = (self.reported_online[rows] == 1) & site_ok
        changed = effective != self.online[rows]
        rows_changed = rows[changed]
        self.online[rows_changed] = effective[changed]
        self.online_changed_s[rows_changed] = t_s
        return FlagChange(rows_changed, effective[changed], t_s)

    def refresh_stale(self, now_s: float) -> FlagChange:
        """Recompute the stale flags at ``now_s`` [Unix s]; returns the rows that changed.

        A device that never sent telemetry is not flagged stale.
        """
        with self.lock:
            age = now_s - self.last_seen_s
            stale = age > self.stale_factor * self.expected_interval_s  # NaN age -> False
            changed = np.flatnonzero(stale != self.stale)
            self.stale[changed] = stale[changed]
            self.stale_changed_s[changed] = now_s
            return FlagChange(changed, stale[changed], now_s)

    # -- fleet changes ---------------------------------------------------------
    def resize(self, fleet: Fleet) -> None:
        """Take a new fleet: each device keeps its row's values, time stamps and flags by
        id, a new device starts empty (NaN, unknown status), a deleted one is dropped;
        each site keeps its gateway status by id.

        Writers must be held back meanwhile (the MQTT ingest's ``paused()``), since
        their decoder's rows refer to the old fleet.
        """
        with self.lock:
            old = self.fleet
            old_row = old.device_row
            pairs = [(new, old_row[d]) for new, d in enumerate(fleet.device_id.tolist())
                     if d in old_row]
            new_rows = np.array([p[0] for p in pairs], dtype=np.int64)
            old_rows = np.array([p[1] for p in pairs], dtype=np.int64)
            n = fleet.n_devices

            def carry(arr: np.ndarray, fill: float | int) -> np.ndarray:
                out = np.full((n, *arr.shape[1:]), fill, dtype=arr.dtype)
                out[new_rows] = arr[old_rows]
                return out

            self.value = carry(self.value, np.nan)
            self.ts_s = carry(self.ts_s, np.nan)
            self.last_seen_s = carry(self.last_seen_s, np.nan)
            interval = self.expected_interval_s
            default = float(np.median(interval)) if len(interval) else 1.0
            self.expected_interval_s = carry(interval, default)
            self.reported_online = carry(self.reported_online, UNKNOWN)
            self.online = carry(self.online, False)
            self.online_changed_s = carry(self.online_changed_s, np.nan)
            self.stale = carry(self.stale, False)
            self.stale_changed_s = carry(self.stale_changed_s, np.nan)
            site_pairs = [(new, old.site_row[sid]) for new, sid in
                          enumerate(fleet.site_id.tolist()) if sid in old.site_row]
            online = np.full(fleet.n_sites, UNKNOWN, dtype=np.int8)
            changed = np.full(fleet.n_sites, np.nan)
            if site_pairs:
                ns, os_ = (np.array(x, dtype=np.int64) for x in zip(*site_pairs, strict=True))
                online[ns] = self.site_online[os_]
                changed[ns] = self.site_online_changed_s[os_]
            self.site_online, self.site_online_changed_s = online, changed
            self.fleet = fleet

    # -- reads ---------------------------------------------------------------
    def device_state(self, device_id: str) -> dict[str, object] | None:
        """One device's live state: its finite metric values, newest time stamp [Unix s],
        online and stale flags; None for a device not in the fleet."""
        with self.lock:
            row = self.fleet.device_row.get(device_id)
            if row is None:
                return None
            vals = dict(zip(self.metrics, self.value[row].tolist(), strict=True))
            seen = float(self.last_seen_s[row])
            online, stale = bool(self.online[row]), bool(self.stale[row])
        return {"values": {k: v for k, v in vals.items() if np.isfinite(v)},
                "last_seen_s": seen if np.isfinite(seen) else None,
                "online": online, "stale": stale}

    def get(self, device_id: str, metric: str) -> tuple[float, float]:
        """``(value, ts_s)`` of one device metric; NaNs when never received."""
        row = self.fleet.device_row[device_id]
        col = self.metric_index.get(metric)
        if col is None:
            return float("nan"), float("nan")
        return float(self.value[row, col]), float(self.ts_s[row, col])

    def column(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``(value, ts_s)`` of one metric for all device rows."""
        col = self.metric_index.get(metric)
        n = self.value.shape[0]
        if col is None:
            return np.full(n, np.nan), np.full(n, np.nan)
        with self.lock:
            return self.value[:, col].copy(), self.ts_s[:, col].copy()

    def store_snapshot(self, rows: np.ndarray | None = None
                       ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """What the telemetry store keeps of ``rows`` (default: every device) now:
        ``(names, values, ts_s)`` with one column per metric and per :data:`FLAGS` flag
        (1/0, NaN while unknown; the flag's time stamp is when it last changed), arrays
        of shape ``(len(rows), len(names))``."""
        rows = np.arange(self.value.shape[0]) if rows is None else np.asarray(rows, np.int64)
        with self.lock:
            site = self.fleet.device_site[rows]
            reported = self.reported_online[rows].astype(np.float64)
            gateway = self.site_online[site].astype(np.float64)
            reported[reported == UNKNOWN] = np.nan
            gateway[gateway == UNKNOWN] = np.nan
            values = np.column_stack([self.value[rows], reported, gateway])
            ts = np.column_stack([self.ts_s[rows], self.online_changed_s[rows],
                                  self.site_online_changed_s[site]])
            names = [*self.metrics, *FLAGS]
        return names, values, ts

    def snapshot(self) -> dict[str, np.ndarray | list[str]]:
        """A consistent copy of every array (for a reader in another thread)."""
        with self.lock:
            return {
                "metrics": list(self.metrics), "value": self.value.copy(),
                "ts_s": self.ts_s.copy(), "last_seen_s": self.last_seen_s.copy(),
                "online": self.online.copy(), "online_changed_s": self.online_changed_s.copy(),
                "stale": self.stale.copy(), "stale_changed_s": self.stale_changed_s.copy(),
                "site_online": self.site_online.copy(),
                "site_online_changed_s": self.site_online_changed_s.copy(),
            }
