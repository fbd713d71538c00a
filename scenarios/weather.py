"""Weather for every site and step: pvlib clear sky times a correlated stochastic cloud field.

Cloud cover at each site follows a stationary Gaussian AR(1) process in time
whose innovations are correlated between sites as ``exp(-distance / L)``
(nearby sites see the same clouds). Cover becomes a clear-sky index with
Kasten and Czeplak's relation ``kt = 1 - 0.75 cover^3.4``; GHI is clear-sky GHI
(pvlib Ineichen) times ``kt``, split into DNI and DHI with pvlib's Erbs model.
Air temperature is a seasonal and daily cycle, damped under clouds.

:class:`CloudWeather` is stateful only in its random stream and the cloud
field's last value, so generating a period in chunks gives exactly the numbers
of one call over the whole period. :class:`CsvWeather` reads measured or
forecast irradiance from a file instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
from scipy.signal import lfilter

from twin.solar import clear_sky, sun_position

EARTH_RADIUS_KM = 6371.0
WEATHER_FIELDS = ("ghi", "dni", "dhi", "zenith_deg", "azimuth_deg", "temp_air_c", "wind_m_s")


def distance_km(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """Great-circle distances between all pairs of points [km], shape (n, n)."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    dlat = lat[:, None] - lat[None, :]
    dlon = lon[:, None] - lon[None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(lat[:, None]) * np.cos(lat[None, :]) * np.sin(dlon / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def correlation_factor(lat_deg: np.ndarray, lon_deg: np.ndarray,
                       correlation_km: float) -> np.ndarray:
    """A matrix ``F`` with ``F @ F.T = exp(-d / correlation_km)`` (Cholesky factor)."""
    corr = np.exp(-distance_km(lat_deg, lon_deg) / correlation_km)
    try:
        return np.linalg.cholesky(corr + 1e-9 * np.eye(len(corr)))
    except np.linalg.LinAlgError:  # sites at the same place: fall back to the eigenbasis
        pass
    w, v = np.linalg.eigh(corr)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def clear_sky_index(cover: np.ndarray) -> np.ndarray:
    """Kasten-Czeplak clear-sky index ``1 - 0.75 cover^3.4`` for cloud cover 0..1."""
    return 1.0 - 0.75 * np.clip(cover, 0.0, 1.0) ** 3.4


def air_temperature_c(unix_s: np.ndarray, lat_deg: np.ndarray, lon_deg: np.ndarray,
                      cover: np.ndarray, mean_c: float, seasonal_amplitude_c: float,
                      daily_amplitude_c: float) -> np.ndarray:
    """Air temperature [degC], shape (n_times, n_sites).

    Seasonal cosine (coldest mid-January in the north), cooler towards the
    poles (0.5 degC per degree of latitude from 45), a daily sine peaking at
    15:00 solar time, its swing halved under full cloud.
    """
    doy = pd.DatetimeIndex(pd.to_datetime(unix_s, unit="s", utc=True)).day_of_year.to_numpy()
    hemi = np.where(lat_deg >= 0, 1.0, -1.0)[None, :]
    season = -seasonal_amplitude_c * np.cos(2 * np.pi * (doy[:, None] - 15.0) / 365.25) * hemi
    solar_h = ((unix_s % 86400.0) / 3600.0)[:, None] + lon_deg[None, :] / 15.0
    daily = daily_amplitude_c * np.sin(2 * np.pi * (solar_h - 9.0) / 24.0) * (1.0 - 0.5 * cover)
    return mean_c - 0.5 * (np.abs(lat_deg)[None, :] - 45.0) + season + daily


class CloudWeather:
    """Clear-sky irradiance times a seeded, spatially correlated cloud field.

    Parameters
    ----------
    lat_deg, lon_deg : (n_sites,) array
        Site locations [deg].
    dt_s : float
        Step [s] (sets the AR(1) coefficient ``exp(-dt / time_constant)``).
    rng : numpy.random.Generator
        The random stream (seeded by the caller).
    mean_cover, variability : float
        Mean and standard deviation of the cloud cover (0..1).
    correlation_km, time_constant_h : float
        Spatial e-folding distance [km] and temporal correlation time [h].
    temperature : dict
        ``mean_c``, ``seasonal_amplitude_c``, ``daily_amplitude_c`` [degC].
    wind_m_s : float
        Wind speed [m/s], constant.
    """

    def __init__(self, lat_deg: np.ndarray, lon_deg: np.ndarray, dt_s: float,
                 rng: np.random.Generator, mean_cover: float = 0.35, variability: float = 0.3,
                 correlation_km: float = 60.0, time_constant_h: float = 3.0,
                 temperature: dict[str, float] | None = None, wind_m_s: float = 2.0):
        self.lat_deg = np.asarray(lat_deg, dtype=np.float64)
        self.lon_deg = np.asarray(lon_deg, dtype=np.float64)
        self.rng = rng
        self.mean_cover = mean_cover
        self.variability = variability
        self.phi = float(np.exp(-dt_s / (time_constant_h * 3600.0)))
        self.factor = correlation_factor(self.lat_deg, self.lon_deg, correlation_km)
        self.temperature = temperature or {"mean_c": 14.0, "seasonal_amplitude_c": 9.0,
                                           "daily_amplitude_c": 5.0}
        self.wind_m_s = wind_m_s
        self._x: np.ndarray | None = None  # the cloud field's last value (standard normal)

    def cloud_cover(self, n_times: int) -> np.ndarray:
        """The next ``n_times`` steps of cloud cover (0..1), shape (n_times, n_sites)."""
        n = len(self.lat_deg)
        z = self.rng.standard_normal((n_times, n)) @ self.factor.T
        scale = np.sqrt(1.0 - self.phi ** 2)
        if self._x is None:  # start in the stationary distribution: x[0] = z[0]
            first = z[0].copy()
            z[0] = 0.0
            zi = first[None, :]
        else:
            zi = (self.phi * self._x)[None, :]
        # x[k] = phi * x[k-1] + scale * z[k], as one IIR filter along time.
        x = lfilter([scale], [1.0, -self.phi], z, axis=0, zi=zi)[0]
        self._x = x[-1].copy()
        return np.clip(self.mean_cover + self.variability * x, 0.0, 1.0)

    def generate(self, unix_s: np.ndarray) -> dict[str, np.ndarray]:
        """Weather at the given step times, each field shape (n_times, n_sites).

        Returns ``ghi``, ``dni``, ``dhi`` [W/m^2], ``zenith_deg``,
        ``azimuth_deg`` [deg], ``temp_air_c`` [degC], ``wind_m_s`` [m/s] and
        ``cloud_cover`` (0..1). Irradiance is taken at the middle of each step.
        """
        unix_s = np.asarray(unix_s, dtype=np.float64)
        mid = unix_s + 0.5 * (unix_s[1] - unix_s[0] if len(unix_s) > 1 else 0.0)
        zen, az = sun_position(self.lat_deg, self.lon_deg, mid)
        ghi_cs, _dni_cs, _dhi_cs = clear_sky(zen, mid)
        cover = self.cloud_cover(len(unix_s))
        ghi = ghi_cs * clear_sky_index(cover)
        doy = pd.DatetimeIndex(pd.to_datetime(mid, unit="s", utc=True)).day_of_year.to_numpy()
        split = pvlib.irradiance.erbs(ghi, zen, doy[:, None])
        dni = np.nan_to_num(np.asarray(split["dni"]), nan=0.0)
        dhi = np.nan_to_num(np.asarray(split["dhi"]), nan=0.0)
        temp = air_temperature_c(mid, self.lat_deg, self.lon_deg, cover, **self.temperature)
        return {
            "ghi": ghi, "dni": dni, "dhi": dhi, "zenith_deg": zen, "azimuth_deg": az,
            "temp_air_c": temp, "wind_m_s": np.full_like(ghi, self.wind_m_s),
            "cloud_cover": cover,
        }


def read_time_csv(path: str | Path, columns: tuple[str, ...],
                  optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV with a ``time`` column (ISO 8601, naive = UTC, or Unix seconds).

    Returns a frame indexed by Unix seconds, sorted, with the wanted columns;
    refuses a file that lacks a column or holds non-numeric values, naming them.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: cannot read CSV: {exc}") from exc
    missing = [c for c in ("time", *columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    raw = frame["time"]
    if pd.api.types.is_numeric_dtype(raw):
        t_s = raw.to_numpy(dtype=np.float64)
    else:
        try:
            stamps = pd.to_datetime(raw, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: column 'time' has values that are not times") from exc
        naive = stamps.dt.tz_convert(None).to_numpy().astype("datetime64[ns]")
        t_s = naive.astype(np.int64) / 1e9
    out = pd.DataFrame(index=pd.Index(t_s, name="time_s"))
    for col in (*columns, *[c for c in optional if c in frame.columns]):
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(values).any():
            bad = int(np.flatnonzero(np.isnan(values))[0]) + 2
            raise ValueError(f"{path}: column {col!r} has a missing or non-numeric value "
                             f"(line {bad})")
        out[col] = values
    out = out.sort_index()
    if out.index.has_duplicates:
        raise ValueError(f"{path}: duplicate times")
    return out


def hold_values(frame: pd.DataFrame, column: str, unix_s: np.ndarray,
                source: str) -> np.ndarray:
    """Values of ``column`` at the given times, held from the last row at or before each."""
    idx = frame.index.to_numpy()
    pos = np.searchsorted(idx, unix_s, side="right") - 1
    if len(unix_s) and (pos.min() < 0):
        raise ValueError(f"{source}: starts at {_iso(idx[0])}, after the period start "
                         f"{_iso(unix_s[0])}")
    return frame[column].to_numpy()[pos]


def _iso(t_s: float) -> str:
    return pd.Timestamp(t_s, unit="s", tz="UTC").isoformat()


class CsvWeather:
    """Fleet-wide irradiance from a CSV (linear interpolation), sun position per site.

    Columns: ``time``, ``ghi``, ``dni``, ``dhi`` [W/m^2], optional
    ``temp_air_c`` [degC] and ``wind_m_s`` [m/s].
    """

    def __init__(self, path: str | Path, lat_deg: np.ndarray, lon_deg: np.ndarray,
                 start_s: float, end_s: float, wind_m_s: float = 2.0, temp_c: float = 15.0):
        self.frame = read_time_csv(path, ("ghi", "dni", "dhi"), ("temp_air_c", "wind_m_s"))
        idx = self.frame.index.to_numpy()
        if idx[0] > start_s or idx[-1] < end_s - 1.0:
            raise ValueError(f"{path}: covers {_iso(idx[0])} to {_iso(idx[-1])}, not the "
                             f"whole period {_iso(start_s)} to {_iso(end_s)}")
        self.path = str(path)
        self.lat_deg = np.asarray(lat_deg, dtype=np.float64)
        self.lon_deg = np.asarray(lon_deg, dtype=np.float64)
        self.wind_m_s = wind_m_s
        self.temp_c = temp_c

    def generate(self, unix_s: np.ndarray) -> dict[str, np.ndarray]:
        """Weather at the given step times (see :meth:`CloudWeather.generate`)."""
        unix_s = np.asarray(unix_s, dtype=np.float64)
        zen, az = sun_position(self.lat_deg, self.lon_deg, unix_s)
        n = len(self.lat_deg)
        idx = self.frame.index.to_numpy()

        def col(name: str, default: float) -> np.ndarray:
            if name not in self.frame:
                return np.full((len(unix_s), n), default)
            return np.repeat(np.interp(unix_s, idx, self.frame[name].to_numpy())[:, None], n, 1)

        night = zen >= 90.0
        out = {name: np.where(night, 0.0, col(name, 0.0)) for name in ("ghi", "dni", "dhi")}
        out.update(zenith_deg=zen, azimuth_deg=az, temp_air_c=col("temp_air_c", self.temp_c),
                   wind_m_s=col("wind_m_s", self.wind_m_s),
                   cloud_cover=np.full((len(unix_s), n), np.nan))
        return out
