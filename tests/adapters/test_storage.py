"""Zarr time-series store: append chunks, read a time range back, refuse bad chunks."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from adapters.storage import StorageError, TimeSeriesStore, open_store, read_time_range


def _chunk(t0_s: int, n: int, value: float) -> xr.Dataset:
    t = t0_s + 900 * np.arange(n)
    return xr.Dataset(
        {"p_kw": (("time", "site"), np.full((n, 2), value, dtype=np.float32), {"units": "kW"}),
         "price": (("time",), np.arange(n, dtype=np.float32))},
        coords={"time": ("time", t), "site": ("site", ["a", "b"]),
                "feeder": ("site", ["f1", "f1"])},
        attrs={"source": "test"})


def test_append_then_read_a_time_range(tmp_path) -> None:
    store = TimeSeriesStore(tmp_path / "s.zarr", time_chunk=4)
    store.append(_chunk(0, 6, 1.0))
    store.append(_chunk(6 * 900, 5, 2.0))
    assert store.n_times == 11
    ds = open_store(tmp_path / "s.zarr")
    assert ds["p_kw"].dtype == np.float32
    assert ds["p_kw"].encoding["chunks"] == (4, 2)
    assert list(ds["site"].values) == ["a", "b"]
    assert list(ds["feeder"].values) == ["f1", "f1"]
    assert ds.attrs["source"] == "test"
    assert ds["p_kw"].attrs["units"] == "kW"
    part = read_time_range(tmp_path / "s.zarr", 5 * 900, 8 * 900)
    assert part.sizes["time"] == 3
    np.testing.assert_array_equal(part["p_kw"].values[:, 0], [1.0, 2.0, 2.0])
    assert part["time"].values[0] == np.datetime64(5 * 900, "s")


def test_reopening_appends_after_the_stored_times(tmp_path) -> None:
    TimeSeriesStore(tmp_path / "s.zarr").append(_chunk(0, 3, 1.0))
    TimeSeriesStore(tmp_path / "s.zarr").append(_chunk(3 * 900, 2, 5.0))
    ds = read_time_range(tmp_path / "s.zarr")
    np.testing.assert_array_equal(ds["p_kw"].values[:, 1], [1, 1, 1, 5, 5])


def test_times_must_move_forward(tmp_path) -> None:
    store = TimeSeriesStore(tmp_path / "s.zarr")
    store.append(_chunk(0, 3, 1.0))
    with pytest.raises(StorageError, match="not after the last stored time"):
        store.append(_chunk(900, 3, 1.0))


def test_a_chunk_missing_a_variable_is_refused(tmp_path) -> None:
    store = TimeSeriesStore(tmp_path / "s.zarr")
    store.append(_chunk(0, 3, 1.0))
    with pytest.raises(StorageError, match="lacks variable 'price'"):
        store.append(_chunk(3 * 900, 3, 1.0).drop_vars("price"))


def test_reading_something_that_is_not_a_store(tmp_path) -> None:
    with pytest.raises(StorageError, match="not a zarr store"):
        open_store(tmp_path)
