"""Zarr v3 storage of labelled time series: append time chunks, read a time range back.

A store is a zarr v3 group holding one array per variable of an
:class:`xarray.Dataset`. Variables that have a ``time`` dimension grow along
it, one appended chunk at a time; the others (labels such as site or device
ids) are written once, with the first chunk. Times are stored as int64 Unix
seconds with CF attributes, so ``xarray.open_zarr`` decodes them to
``datetime64``. Arrays are chunked along time and compressed (Blosc/zstd with
byte shuffle).

Also the helpers that every time-series query shares (:data:`MAX_POINTS`,
:func:`check_range`, :func:`bucket_means`) and plain readers of a zarr group's
arrays (:func:`group_arrays`, :func:`read_array`) for layouts without
dimension names.

Used for scenario results and telemetry history; it knows nothing of either.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, BytesCodec

TIME = "time"
_TIME_ATTRS = {"units": "seconds since 1970-01-01T00:00:00", "calendar": "proleptic_gregorian"}


MAX_POINTS = 20_000  # most rows (snapshots or buckets) one query returns


class StorageError(ValueError):
    """A store that cannot take or give what was asked (names the variable)."""


class HistoryError(StorageError):
    """A bad history query (unknown metric or device, bad range); names what is wrong."""


def unix_seconds(times: Any) -> np.ndarray:
    """UTC times as int64 Unix seconds.

    Parameters
    ----------
    times : array-like of datetime64 or numbers
        Times as ``datetime64`` (naive = UTC) or Unix seconds [s].
    """
    arr = np.asarray(times)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[s]").astype(np.int64)
    return np.round(arr.astype(np.float64)).astype(np.int64)


class TimeSeriesStore:
    """Append-only zarr v3 store of xarray-labelled arrays with a ``time`` dimension.

    Parameters
    ----------
    path : str or Path
        Directory of the zarr store (created on the first append).
    time_chunk : int
        Chunk length along time [steps] of the arrays it creates.
    compression_level : int
        Blosc/zstd level (0-9) of the arrays it creates.
    """

    def __init__(self, path: str | Path, time_chunk: int = 672, compression_level: int = 3):
        if time_chunk < 1:
            raise StorageError(f"time_chunk must be at least 1, got {time_chunk}")
        self.path = Path(path)
        self.time_chunk = int(time_chunk)
        self._codec = BloscCodec(cname="zstd", clevel=compression_level, shuffle="shuffle")
        self._group: zarr.Group | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._last_time_s: int | None = None

    # -- writing -----------------------------------------------------------------
    def append(self, chunk: xr.Dataset) -> None:
        """Append a time chunk; the first call creates the arrays from its layout.

        Every data variable or coordinate with a ``time`` dimension must have
        it first; later chunks must hold the same variables with the same
        non-time shapes, and times after those already stored.
        """
        if TIME not in chunk.dims or chunk.sizes[TIME] == 0:
            raise StorageError("a chunk needs a non-empty 'time' dimension")
        t_s = unix_seconds(chunk[TIME].values)
        if np.any(np.diff(t_s) <= 0):
            raise StorageError("chunk times must be strictly increasing")
        if self._group is None:
            self._open_or_create(chunk)
        if self._last_time_s is not None and t_s[0] <= self._last_time_s:
            raise StorageError(f"chunk starts at {t_s[0]} s, not after the last stored time "
                               f"{self._last_time_s} s")
        n_new = len(t_s)
        n_old = self._arrays[TIME].shape[0]
        for name, arr in self._arrays.items():
            if name == TIME:
                data = t_s
            else:
                if name not in chunk.variables:
                    raise StorageError(f"chunk lacks variable {name!r} that the store holds")
                var = chunk.variables[name]
                if var.dims[0] != TIME or tuple(var.shape[1:]) != tuple(arr.shape[1:]):
                    raise StorageError(f"variable {name!r} has dims {var.dims} and shape "
                                       f"{var.shape}; the store holds {arr.shape[1:]} after time")
                data = np.asarray(var.values, dtype=arr.dtype)
            arr.resize((n_old + n_new, *arr.shape[1:]))
            arr[n_old:n_old + n_new] = data
        self._last_time_s = int(t_s[-1])

    def _open_or_create(self, chunk: xr.Dataset) -> None:
        if (self.path / "zarr.json").exists():
            self._group = zarr.open_group(str(self.path), mode="r+")
            for name, arr in self._group.arrays():
                if arr.metadata.dimension_names and arr.metadata.dimension_names[0] == TIME:
                    self._arrays[name] = arr
            if TIME not in self._arrays:
                raise StorageError(f"{self.path} is not a time-series store (no 'time' array)")
            n = self._arrays[TIME].shape[0]
            self._last_time_s = int(self._arrays[TIME][n - 1]) if n else None
            return
        self._group = zarr.open_group(str(self.path), mode="w", zarr_format=3)
        self._group.attrs.update(_jsonable_attrs(chunk.attrs))
        time_attrs = {k: v for k, v in chunk[TIME].attrs.items() if k not in _TIME_ATTRS}
        self._arrays[TIME] = self._group.create_array(
            TIME, shape=(0,), chunks=(self.time_chunk,), dtype="int64",
            dimension_names=[TIME], attributes={**time_attrs, **_TIME_ATTRS},
            compressors=self._codec)
        for name, var in chunk.variables.items():
            if name == TIME:
                continue
            attrs = _jsonable_attrs(var.attrs)
            if name in chunk.coords and name not in chunk.dims:
                attrs.setdefault("_role", "coordinate")
            if TIME in var.dims:
                if var.dims[0] != TIME:
                    raise StorageError(f"variable {name!r}: 'time' must be its first dimension")
                kind = np.asarray(var.values).dtype
                if kind.kind not in "fiub":
                    raise StorageError(f"variable {name!r}: only numeric time series are "
                                       f"stored, got dtype {kind}")
                fill = np.nan if kind.kind == "f" else 0
                self._arrays[name] = self._group.create_array(
                    str(name), shape=(0, *var.shape[1:]), dtype=kind,
                    chunks=(self.time_chunk, *var.shape[1:]), dimension_names=list(var.dims),
                    fill_value=fill, attributes=attrs, compressors=self._codec)
            else:
                values = np.asarray(var.values)
                dtype: Any = str if values.dtype.kind in "OUS" else values.dtype
                arr = self._group.create_array(
                    str(name), shape=values.shape, dtype=dtype,
                    chunks=tuple(max(1, n) for n in values.shape),
                    dimension_names=list(var.dims), attributes=attrs)
                if values.size:
                    arr[...] = values.astype(str) if dtype is str else values

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Add or replace attributes of the store (after the first append)."""
        if self._group is None:
            raise StorageError("the store is created by the first append; nothing to annotate")
        self._group.attrs.update(_jsonable_attrs(attrs))

    @property
    def n_times(self) -> int:
        return self._arrays[TIME].shape[0] if TIME in self._arrays else 0


# -- reading ---------------------------------------------------------------------
def open_store(path: str | Path) -> xr.Dataset:
    """Open a store lazily as an :class:`xarray.Dataset` (dask-backed)."""
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise StorageError(f"{path} is not a zarr store")
    ds = xr.open_zarr(str(path), consolidated=False)
    coords = [n for n, v in ds.data_vars.items() if v.attrs.get("_role") == "coordinate"]
    return ds.set_coords(coords) if coords else ds


def read_time_range(path: str | Path, start_s: float | None = None,
                    end_s: float | None = None) -> xr.Dataset:
    """Read the times ``start_s <= t < end_s`` of a store into memory.

    Parameters
    ----------
    path : str or Path
        The store.
    start_s, end_s : float, optional
        Unix seconds [s]; ``None`` leaves that side open.
    """
    ds = open_store(path)
    t_s = unix_seconds(ds[TIME].values)
    lo = 0 if start_s is None else int(np.searchsorted(t_s, start_s, side="left"))
    hi = len(t_s) if end_s is None else int(np.searchsorted(t_s, end_s, side="left"))
    return ds.isel({TIME: slice(lo, hi)}).load()


def _jsonable_attrs(attrs: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[str(key)] = value
    return out


# -- queries -----------------------------------------------------------------------
def bucket_means(times: np.ndarray, series: list[np.ndarray], start_s: float, every_s: float
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Average series over buckets of ``every_s`` [s] counted from ``start_s`` [s].

    NaN values are left out of a bucket's mean (a bucket of only NaN gives NaN);
    empty buckets are left out. Returns the bucket starts [s] and the means.
    A series may be 1-D (one value per time) or 2-D (times first).
    """
    if len(times) == 0:
        return np.asarray(times, dtype=np.float64), [np.asarray(s, dtype=np.float64)
                                                      for s in series]
    bucket = np.floor((np.asarray(times) - start_s) / every_s).astype(np.int64)
    keys, inverse = np.unique(bucket, return_inverse=True)
    out = []
    for values in series:
        values = np.asarray(values, dtype=np.float64)
        ok = ~np.isnan(values)
        if values.ndim == 1:
            sums = np.bincount(inverse, weights=np.where(ok, values, 0.0), minlength=len(keys))
            counts = np.bincount(inverse, weights=ok.astype(float), minlength=len(keys))
        else:
            sums = np.zeros((len(keys), *values.shape[1:]))
            counts = np.zeros_like(sums)
            np.add.at(sums, inverse, np.where(ok, values, 0.0))
            np.add.at(counts, inverse, ok)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
    return start_s + keys * every_s, out


def check_range(start_s: float, end_s: float, every_s: float | None) -> None:
    """Refuse a query range that is not finite, not ordered, or has too many buckets.

    Raises
    ------
    HistoryError
        Naming the bad bound.
    """
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


# -- plain group reads -----------------------------------------------------------
def group_arrays(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """Attributes and array shapes of a zarr group (any layout, no dimension names needed).

    Raises
    ------
    StorageError
        When ``path`` is not a readable zarr group.
    """
    try:
        group = zarr.open_group(str(path), mode="r")
    except (OSError, ValueError, KeyError) as exc:
        raise StorageError(f"{path} is not a readable zarr group: {exc}") from None
    return dict(group.attrs), {name: tuple(arr.shape) for name, arr in group.arrays()}


def read_array(path: str | Path, name: str, rows: slice = slice(None)) -> np.ndarray:
    """Rows ``rows`` (along the first axis) of array ``name`` of the zarr group at ``path``."""
    try:
        arr = zarr.open_array(str(Path(path) / name), mode="r")
    except (OSError, ValueError, KeyError) as exc:
        raise StorageError(f"{path} has no readable array {name!r}: {exc}") from None
    return np.asarray(arr[rows])


# -- preallocated row series -------------------------------------------------------
_F4 = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
_F8 = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
ROW_TIME_CHUNK = 2048
_FLAT_KEYS = {"name": "default", "separator": "."}  # chunk files c.R.C, no folder per row


def valid_rows(times: np.ndarray) -> int:
    """Rows written to a :class:`RowSeries`: the leading finite entries of its ``time``."""
    bad = ~np.isfinite(np.asarray(times, dtype=np.float64))
    return int(np.argmax(bad)) if bad.any() else len(bad)


class RowSeries:
    """Rows appended to a zarr group: ``time`` (row,) and arrays (row, column), for
    readers in other processes.

    The arrays are preallocated (capacity doubles when full), so an append
    writes chunk files only, never metadata. A row's ``time`` entry is
    written after all its values, and zarr replaces every chunk file
    atomically, so the rows up to the first NaN of ``time`` are complete
    (:func:`valid_rows`). Every array of the group is written at every row
    (its fill where no value is given), so a row left half-written by a crash
    is overwritten whole.

    Parameters
    ----------
    group : zarr.Group
        The group (its ``time`` and arrays are found again when it has them).
    n_cols : int
        Columns of every array.
    chunk_rows : int
        Rows per chunk of the arrays it creates.
    first_rows : int
        Capacity of a new group [rows].
    """

    def __init__(self, group: zarr.Group, n_cols: int, chunk_rows: int, first_rows: int):
        self.group = group
        self.n_cols = int(n_cols)
        self.chunk_rows = int(chunk_rows)
        self.arrays: dict[str, zarr.Array] = {}
        if "time" in group:
            self.time = group["time"]
            self.times = np.asarray(self.time[:], dtype=np.float64)
            for name, arr in group.arrays():
                if name != "time":
                    self.arrays[name] = arr
        else:
            self.time = group.create_array("time", shape=(first_rows,), dtype="float64",
                                           chunks=(ROW_TIME_CHUNK,), fill_value=np.nan,
                                           compressors=_F8, chunk_key_encoding=_FLAT_KEYS)
            self.times = np.full(first_rows, np.nan)
        self.n = valid_rows(self.times)

    @property
    def capacity(self) -> int:
        return len(self.times)

    @property
    def last_t_s(self) -> float | None:
        return float(self.times[self.n - 1]) if self.n else None

    def array(self, name: str, dtype: str, attrs: Mapping[str, Any]) -> zarr.Array:
        """The array ``name``, created (empty rows: 0 for ints, NaN for floats) when new."""
        arr = self.arrays.get(name)
        if arr is None:
            fill: Any = 0 if np.dtype(dtype).kind in "iu" else np.nan
            arr = self.group.create_array(
                name, shape=(self.capacity, self.n_cols), dtype=dtype,
                chunks=(self.chunk_rows, max(1, self.n_cols)), fill_value=fill,
                compressors=_F8 if np.dtype(dtype).itemsize == 8 else _F4,
                chunk_key_encoding=_FLAT_KEYS, attributes=dict(attrs))
            self.arrays[name] = arr
        return arr

    def write(self, t_s: float, rows: Mapping[str, np.ndarray]) -> None:
        """Write the next row: every array (``rows`` by name, the others their fill), then
        its time ``t_s`` [s]."""
        r = self.n
        if r >= self.capacity:
            cap = 2 * self.capacity
            for arr in self.arrays.values():
                arr.resize((cap, self.n_cols))
            self.time.resize((cap,))
            self.times = np.r_[self.times, np.full(cap - len(self.times), np.nan)]
        for name, arr in self.arrays.items():
            value = rows.get(name)
            if value is None:
                value = np.full(self.n_cols, arr.fill_value, dtype=arr.dtype)
            arr[r] = np.asarray(value, dtype=arr.dtype)
        self.times[r] = t_s
        c0 = (r // ROW_TIME_CHUNK) * ROW_TIME_CHUNK
        c1 = min(c0 + ROW_TIME_CHUNK, self.capacity)
        self.time[c0:c1] = self.times[c0:c1]
        self.n = r + 1


def read_row_columns(arr: zarr.Array, folder: Path, rows: slice,
                     cols: np.ndarray) -> np.ndarray | None:
    """A few columns of rows of a :class:`RowSeries` array with one row per chunk, read
    straight from its chunk files (about ten times faster than zarr's selection, whose
    per-chunk cost dominates when a long range of rows gives a few values each).

    Returns None when the array is not laid out as :class:`RowSeries` makes one-row
    arrays (then read it through zarr); a missing chunk gives the fill value.

    Parameters
    ----------
    arr : zarr.Array
        The array (its metadata is checked).
    folder : Path
        Its folder on the local file system.
    rows : slice
        Rows ``start:stop``.
    cols : int array
        Columns.
    """
    meta = arr.metadata
    codecs = getattr(meta, "codecs", ())
    key_encoding = getattr(meta, "chunk_key_encoding", None)
    if (len(codecs) != 2 or not isinstance(codecs[0], BytesCodec)
            or getattr(codecs[0].endian, "value", None) != "little"
            or not isinstance(codecs[1], BloscCodec)
            or tuple(meta.chunk_grid.chunk_shape) != (1, arr.shape[1])
            or getattr(key_encoding, "separator", None) != "."):
        return None
    dtype = np.dtype(arr.dtype).newbyteorder("<")
    blosc = numcodecs.Blosc()
    out = np.full((rows.stop - rows.start, len(cols)), arr.fill_value, dtype=dtype)
    for i, r in enumerate(range(rows.start, rows.stop)):
        try:
            buf = (folder / f"c.{r}.0").read_bytes()
        except FileNotFoundError:
            continue  # never written or all fill: zarr leaves no file
        out[i] = np.frombuffer(blosc.decode(buf), dtype=dtype)[cols]
    return out
