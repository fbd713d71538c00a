"""The answers of the telemetry history (:mod:`adapters.history`): plain data, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adapters.history.claims import ClaimInfo
from adapters.storage import HistoryError


class UnknownDeviceError(HistoryError):
    """Device ids that no store of the history holds (the API answers 404)."""

    def __init__(self, device_ids: Sequence[str], root: Path):
        self.device_ids = list(device_ids)
        more = f" and {len(device_ids) - 5} more" if len(device_ids) > 5 else ""
        super().__init__(f"no history for device(s) {', '.join(device_ids[:5])}{more}: "
                         f"no store under {root} holds them")


@dataclass(frozen=True)
class HistoryRead:
    """One metric of some devices over a time range.

    Attributes
    ----------
    t_s : (n_times,) array
        Snapshot times (raw) or bucket starts [Unix s].
    values : (n_times, n_devices) array
        The values or the bucket statistic (NaN: none).
    counts : (n_times, n_devices) array
        Snapshots behind each value (0 where none).
    device_ids : list of str
        Column order of ``values``.
    metric, stat, tier : str
        What was read, from which tier (``raw``, ``5m``, ``1h``).
    resolution_s : float
        Bucket length of the answer [s] (raw without ``every``: the median
        snapshot interval, 0 with fewer than two snapshots).
    """

    t_s: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    device_ids: list[str]
    metric: str
    stat: str
    tier: str
    resolution_s: float


@dataclass(frozen=True)
class Latest:
    """Every device's newest value of each metric, from the writers' latest files.

    ``values`` and ``ts_s`` [Unix s] are ``(n_devices, n_metrics)``; ``t_s`` is the
    newest snapshot time of any writer [Unix s] (NaN when there is none).
    """

    device_ids: list[str]
    metrics: list[str]
    values: np.ndarray
    ts_s: np.ndarray
    t_s: float

    def column(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """``(values, ts_s)`` of one metric (NaN when no writer has it)."""
        if metric not in self.metrics:
            n = len(self.device_ids)
            return np.full(n, np.nan), np.full(n, np.nan)
        j = self.metrics.index(metric)
        return self.values[:, j], self.ts_s[:, j]


@dataclass(frozen=True)
class StoreInfo:
    """One store: its writer, fleet segment, devices, metrics and raw extent."""

    path: Path
    writer: str
    fleet_version: int
    device_ids: list[str]
    metrics: list[str]
    raw_rows: int
    last_t_s: float


@dataclass(frozen=True)
class WriterInfo:
    """A writer as seen from its claim and its latest file."""

    writer: str
    live: bool
    claim: ClaimInfo | None
    t_s: float
    fleet_version: int | None
    info: dict[str, Any] = field(default_factory=dict)
