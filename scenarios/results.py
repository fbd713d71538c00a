"""Scenario results: the xarray layout, streamed to zarr as the run goes, and read back.

``results.zarr`` holds, per step (``time``, the start of the step, UTC):

* every site flow of ``twin.state.SITE_FLOWS`` as a ``(time, site)`` variable [kW];
* the chosen device variables as ``device_<name>`` ``(time, device)`` variables,
  for the devices of the chosen types (``device_p_kw`` [kW], ``device_soc``,
  ``device_e_kwh`` [kWh]);
* ``price_eur_per_mwh``, ``feed_in_eur_per_mwh``, ``co2_kg_per_mwh`` ``(time,)``
  (fleet-wide, as the market sets them, spikes included);

all float32, chunked along time and compressed. Site and device ids are
coordinates, with each site's ``feeder`` and each device's ``device_type`` and
``device_site``. :class:`ResultsWriter` keeps one chunk in memory and has
the previous one written (compressed) by a background thread meanwhile.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from adapters.storage import (
    MAX_POINTS,
    TimeSeriesStore,
    bucket_means,
    check_range,
    open_store,
    unix_seconds,
)
from twin.fleet import DEVICE_TYPES, TYPE_CODE, Fleet
from twin.state import SITE_FLOWS, TwinParams, TwinState

MARKET_SERIES = ("price_eur_per_mwh", "feed_in_eur_per_mwh", "co2_kg_per_mwh")
_UNITS = {"p_kw": "kW", "soc": "1", "e_kwh": "kWh"}


class ResultsWriter:
    """Buffers steps and appends them to a zarr store one time chunk at a time.

    Parameters
    ----------
    path : str or Path
        The zarr store to create.
    fleet : Fleet
        The simulated fleet (labels).
    params : TwinParams
        Its parameters (battery capacities, for SoC).
    device_variables : list of str
        Any of ``p_kw``, ``soc``, ``e_kwh``.
    device_types : list of str
        Device types whose rows are recorded.
    time_chunk : int
        Steps per chunk (buffer length and zarr chunk).
    attrs : dict
        Attributes of the dataset (scenario name, seed, step...).
    """

    def __init__(self, path: str | Path, fleet: Fleet, params: TwinParams,
                 device_variables: list[str], device_types: list[str], time_chunk: int,
                 attrs: dict[str, Any]):
        self.store = TimeSeriesStore(path, time_chunk=time_chunk)
        self.n = time_chunk
        self.fleet = fleet
        codes = [TYPE_CODE[t] for t in device_types]
        self.rows = np.flatnonzero(np.isin(fleet.device_type, codes))
        cap = params.battery_kwh[self.rows]
        self.inv_capacity = np.divide(1.0, cap, out=np.full_like(cap, np.nan), where=cap > 0)
        self.device_variables = list(device_variables) if len(self.rows) else []
        self.attrs = attrs
        n_s, n_d = fleet.n_sites, len(self.rows)
        self.time_s = np.zeros(self.n, dtype=np.int64)
        self.flows = np.zeros((self.n, n_s, len(SITE_FLOWS)), dtype=np.float32)
        self.device = {v: np.zeros((self.n, n_d), dtype=np.float32) for v in self.device_variables}
        self.market = np.zeros((self.n, len(MARKET_SERIES)), dtype=np.float32)
        self.k = 0
        self.steps_written = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="results-writer")
        self._pending: Future[None] | None = None

    def record(self, t_s: float, state: TwinState, price: float, feed_in: float,
               co2: float) -> None:
        """Take one step: the twin's state after it and the market figures during it."""
        k = self.k
        self.time_s[k] = round(t_s)
        self.flows[k] = state.site_flows
        for name, buf in self.device.items():
            if name == "p_kw":
                buf[k] = state.p_kw[self.rows]
            elif name == "e_kwh":
                buf[k] = state.e_kwh[self.rows]
            else:
                buf[k] = state.e_kwh[self.rows] * self.inv_capacity
        self.market[k] = (price, feed_in, co2)
        self.k += 1
        if self.k == self.n:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered steps (if any) to the writer thread (one chunk in flight)."""
        if self.k == 0:
            return
        ds = self._chunk_dataset(self.k)
        self._wait()
        self._pending = self._pool.submit(self.store.append, ds)
        self.steps_written += self.k
        self.k = 0

    def close(self) -> None:
        """Write what is buffered and wait until it is on disk; re-raises a write error."""
        try:
            self.flush()
            self._wait()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _chunk_dataset(self, k: int) -> xr.Dataset:
        data: dict[str, Any] = {}
        for j, name in enumerate(SITE_FLOWS):
            data[name] = (("time", "site"), self.flows[:k, :, j].copy(), {"units": "kW"})
        for name, buf in self.device.items():
            data[f"device_{name}"] = (("time", "device"), buf[:k].copy(),
                                      {"units": _UNITS[name]})
        for j, name in enumerate(MARKET_SERIES):
            data[name] = (("time",), self.market[:k, j].copy(), {})
        f = self.fleet
        coords = {
            "time": ("time", self.time_s[:k].copy()),
            "site": ("site", f.site_id.astype(str)),
            "feeder": ("site", f.feeder_id[f.site_feeder].astype(str)),
            "device": ("device", f.device_id[self.rows].astype(str)),
            "device_type": ("device", np.array([DEVICE_TYPES[c] for c in
                                                f.device_type[self.rows]], dtype=str)),
            "device_site": ("device", f.site_id[f.device_site[self.rows]].astype(str)),
        }
        return xr.Dataset(data, coords=coords, attrs=self.attrs if self.steps_written == 0 else {})


def open_results(run_dir: str | Path) -> xr.Dataset:
    """Open a run's ``results.zarr`` lazily (xarray, dask-backed)."""
    return open_store(Path(run_dir) / "results.zarr")


def fleet_flows(ds: xr.Dataset, every_s: float | None = None, max_points: int | None = None
                ) -> tuple[np.ndarray, dict[str, np.ndarray], float | None]:
    """Fleet totals of a run's site flows (``twin.state.SITE_FLOWS``) [kW] over time.

    Parameters
    ----------
    ds : xarray.Dataset
        A run's results (:func:`open_results`).
    every_s : float, optional
        Bucket length [s] for averages (times are the bucket starts); None: every step.
    max_points : int, optional
        Without ``every_s``: buckets of whole steps, so that at most this many remain.

    Returns
    -------
    t_s : ndarray
        Step or bucket times [Unix s].
    flows : dict of str to ndarray
        One fleet series per site flow in the results [kW].
    every_s : float or None
        The bucket length used.

    Raises
    ------
    ValueError
        For more than ``MAX_POINTS`` steps without buckets, or a bad bucket length.
    """
    t_s = unix_seconds(ds["time"].values).astype(np.float64)
    names = [n for n in SITE_FLOWS if n in ds]
    series = [ds[n].sum("site").values.astype(np.float64) for n in names]
    if every_s is None and max_points is not None and len(t_s) > max(max_points, 1):
        step_s = float(t_s[1] - t_s[0])
        every_s = step_s * int(np.ceil(len(t_s) / max_points))
    if every_s is not None:
        if len(t_s):
            check_range(float(t_s[0]), float(t_s[-1]) + every_s, every_s)
            t_s, series = bucket_means(t_s, series, float(t_s[0]), every_s)
    elif len(t_s) > MAX_POINTS:
        raise ValueError(f"{len(t_s)} steps; at most {MAX_POINTS} without every: give every "
                         "(a bucket length [s])")
    return t_s, dict(zip(names, series, strict=True)), every_s
