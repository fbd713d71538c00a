"""Telemetry history in the old layouts: detect them, convert them into the one store.

Two layouts came before :mod:`adapters.history`, both directly in the data folder:

* ``history.zarr`` of the live service (``api/history.py``): arrays ``t_s``
  (snapshot times [Unix s]), ``p_kw`` and ``soc`` (snapshot, device), the device
  ids in the group attribute ``device_ids``; no time stamps (a value is taken
  as of its snapshot);
* ``telemetry-*.zarr`` of the old ingest workers
  (``adapters.storage.TimeSeriesStore``): ``time`` (int64 Unix s),
  ``device_id``, and per standard metric ``<metric>`` and ``<metric>_ts_s``.

:func:`check_layout` refuses a data folder holding either, naming the command
that converts it; :func:`convert_legacy` is that command: every old store
becomes the store of a writer ``legacy-...`` (raw rows inside the raw
retention, rollups for all), then the old stores are moved into
``history-old-layout/`` of the data folder (never deleted).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adapters.history.writer import HistoryWriter
from adapters.storage import HistoryError, StorageError, group_arrays, read_array

OLD_FOLDER = "history-old-layout"
CONVERT_COMMAND = "ecogrid history convert --data-dir {data_dir}"
_BLOCK = 720  # rows read at once


class LegacyHistoryError(HistoryError):
    """A data folder holding telemetry history in an old layout."""


@dataclass(frozen=True)
class ConvertedStore:
    """One old store converted: where it was, its new writer id, rows and devices."""

    old_path: Path
    writer: str
    rows: int
    raw_rows: int
    devices: int


@dataclass(frozen=True)
class LegacyConversion:
    """What :func:`convert_legacy` did: the stores converted and where the old ones went."""

    stores: list[ConvertedStore]
    moved_to: Path | None


def _kind(path: Path) -> str | None:
    """``"service"``, ``"ingest"`` or None (not an old store)."""
    try:
        attrs, shapes = group_arrays(path)
    except StorageError:
        return None
    if path.name == "history.zarr" and "t_s" in shapes and "device_ids" in attrs:
        return "service"
    if path.name.startswith("telemetry-") and {"time", "device_id"} <= set(shapes) \
            and "layout" not in attrs:
        return "ingest"
    return None


def legacy_stores(data_dir: str | Path) -> list[Path]:
    """The old stores directly in ``data_dir`` (see the module docstring), sorted by name."""
    d = Path(data_dir)
    candidates = [d / "history.zarr", *sorted(d.glob("telemetry-*.zarr"))]
    return [p for p in candidates if p.is_dir() and _kind(p) is not None]


def check_layout(data_dir: str | Path) -> None:
    """Refuse a data folder that holds telemetry history in an old layout.

    Raises
    ------
    LegacyHistoryError
        Naming the old stores and the command that converts them.
    """
    old = legacy_stores(data_dir)
    if old:
        names = ", ".join(p.name for p in old)
        raise LegacyHistoryError(
            f"{data_dir} holds telemetry history in an old layout ({names}); convert it with "
            f"`{CONVERT_COMMAND.format(data_dir=data_dir)}` (the old stores are then moved "
            f"to {Path(data_dir) / OLD_FOLDER}, never deleted)")


def _blocks(path: Path, kind: str) -> Iterator[tuple[np.ndarray, list[str], np.ndarray,
                                                      np.ndarray]]:
    """``(t_s, metrics, values (rows, devices, metrics), ts_s)`` blocks of an old store."""
    _, shapes = group_arrays(path)
    if kind == "service":
        t_name = "t_s"
        metrics = [m for m in ("p_kw", "soc") if m in shapes]
    else:
        t_name = "time"
        metrics = [m for m in shapes if m not in ("time", "device_id")
                   and not m.endswith("_ts_s") and f"{m}_ts_s" in shapes]
    n = shapes[t_name][0]
    for a in range(0, n, _BLOCK):
        rows = slice(a, min(n, a + _BLOCK))
        t = np.asarray(read_array(path, t_name, rows), dtype=np.float64)
        values = np.stack([np.asarray(read_array(path, m, rows), dtype=np.float64)
                           for m in metrics], axis=-1)
        if kind == "service":
            ts = np.where(np.isfinite(values), t[:, None, None], np.nan)
        else:
            ts = np.stack([np.asarray(read_array(path, f"{m}_ts_s", rows), dtype=np.float64)
                           for m in metrics], axis=-1)
        yield t, metrics, values, ts


def _device_ids(path: Path, kind: str) -> list[str]:
    attrs, _ = group_arrays(path)
    if kind == "service":
        return [str(d) for d in attrs["device_ids"]]
    return [str(d) for d in read_array(path, "device_id").tolist()]


def _move_aside(path: Path, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    dest, k = folder / path.name, 1
    while dest.exists():
        dest, k = folder / f"{path.name}.{k}", k + 1
    shutil.move(str(path), str(dest))


def convert_legacy(data_dir: str | Path, root: str | Path, *, raw_days: float = 7.0,
                   now_s: float | None = None) -> LegacyConversion:
    """Convert the old stores of ``data_dir`` into the history at ``root``.

    Each old store becomes the stores of writer ``legacy-history`` (the live
    service's ``history.zarr``) or ``legacy-{name}`` (``telemetry-{name}.zarr``),
    fleet version 0: raw rows for the snapshots inside the raw retention
    (``raw_days`` back from ``now_s``), rollups for all. A conversion that was
    interrupted goes on after the rows already converted. The old stores are
    then moved into ``data_dir/history-old-layout/``.

    Parameters
    ----------
    data_dir : str or Path
        The data folder holding the old stores.
    root : str or Path
        The history root.
    raw_days : float
        Raw retention [days].
    now_s : float, optional
        The time the retention counts back from [Unix s] (default: now).
    """
    old = legacy_stores(data_dir)
    now = time.time() if now_s is None else float(now_s)
    cutoff = now - raw_days * 86400.0
    done = []
    for path in old:
        kind = _kind(path)
        assert kind is not None
        writer_id = "legacy-history" if kind == "service" else \
            "legacy-" + path.name[len("telemetry-"):-len(".zarr")]
        ids = _device_ids(path, kind)
        writer = HistoryWriter(root, writer_id, ids, 0, raw_days=raw_days, clock=lambda: now)
        writer.open()
        rows = raw_rows = 0
        try:
            for t, metrics, values, ts in _blocks(path, kind):
                for i in range(len(t)):
                    last = writer.last_t_s
                    if not np.isfinite(t[i]) or (last is not None and t[i] <= last):
                        continue  # converted before (an interrupted run), or no time
                    keep = bool(t[i] >= cutoff)
                    writer.append(float(t[i]), metrics, values[i], ts[i], keep_raw=keep)
                    rows += 1
                    raw_rows += keep
        except BaseException:
            writer.close()  # the open buckets are rebuilt when it goes on
            raise
        writer.close(finish=True)  # no more rows come: write the open buckets
        done.append(ConvertedStore(path, writer_id, rows, raw_rows, len(ids)))
    moved = Path(data_dir) / OLD_FOLDER if old else None
    for path in old:
        assert moved is not None
        _move_aside(path, moved)
    return LegacyConversion(done, moved)
