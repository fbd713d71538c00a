"""Exogenous inputs of a scenario, generated a chunk of steps at a time.

:class:`InputGenerator` owns the weather, price, carbon, load and EV
generators, each with its own seeded random stream (``[seed, k]``), so the
same scenario gives the same numbers bit for bit, whatever the chunk length
is for the deterministic parts. :class:`InputChunk` holds (steps, sites)
arrays, C-contiguous so that each step's row is a view the twin's kernel
takes as it is, plus each PV device's available power for the controllers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.ev import EvArrivals
from scenarios.loads import LoadProfiles
from scenarios.markets import CarbonProfile, CsvSeries, SyntheticPrices
from scenarios.schema import Scenario
from scenarios.weather import CloudWeather, CsvWeather
from twin.fleet import EV_CHARGER, LOAD, PV, Fleet
from twin.physics import pv_ac_power, sun_geometry
from twin.state import StepInputs, TwinParams

_STREAMS = {"weather": 1, "prices": 2, "loads": 3, "ev": 4, "forecast": 5}


def stream(seed: int, name: str) -> np.random.Generator:
    """The seeded random stream ``name`` of a scenario."""
    return np.random.default_rng([seed, _STREAMS[name]])


@dataclass
class InputChunk:
    """Inputs for steps ``first .. first + n - 1``; arrays are (n, n_sites) unless noted."""

    first: int
    t_s: np.ndarray  # (n,) step start times [s]
    ghi: np.ndarray
    dni: np.ndarray
    dhi: np.ndarray
    zenith_deg: np.ndarray
    azimuth_deg: np.ndarray
    temp_air_c: np.ndarray
    wind_m_s: np.ndarray
    load_frac: np.ndarray  # (n, n_sites, 4)
    price_eur_per_mwh: np.ndarray
    feed_in_eur_per_mwh: np.ndarray
    co2_kg_per_mwh: np.ndarray
    pv_avail_kw: np.ndarray | None  # (n, n_pv) available AC power of each PV device
    pv_site_kw: np.ndarray | None  # (n, n_sites) its sum per site (all PV working)
    load_site_kw: np.ndarray  # (n, n_sites) fixed load per site, negative (all loads working)
    ev_step: np.ndarray  # (m,) arrivals: index of the step within the chunk
    ev_charger: np.ndarray  # (m,) device row
    ev_need_kwh: np.ndarray
    ev_departure_s: np.ndarray

    @property
    def n(self) -> int:
        return len(self.t_s)

    def step_inputs(self, i: int, price_factor: float = 1.0,
                    price_add: float = 0.0) -> StepInputs:
        """The twin's inputs for step ``i`` of the chunk (views, no copies)."""
        price = self.price_eur_per_mwh[i]
        if price_factor != 1.0 or price_add != 0.0:
            price = price * price_factor + price_add
        return StepInputs(
            ghi=self.ghi[i], dni=self.dni[i], dhi=self.dhi[i], zenith_deg=self.zenith_deg[i],
            azimuth_deg=self.azimuth_deg[i], temp_air_c=self.temp_air_c[i],
            wind_m_s=self.wind_m_s[i], load_frac=self.load_frac[i], price_eur_per_mwh=price,
            feed_in_eur_per_mwh=self.feed_in_eur_per_mwh[i], co2_kg_per_mwh=self.co2_kg_per_mwh[i],
        )


class InputGenerator:
    """All exogenous inputs of a scenario for a fleet.

    Parameters
    ----------
    scenario : Scenario
        The validated scenario.
    fleet : Fleet
        The (edited) fleet.
    params : TwinParams
        The twin's parameters (for PV availability).
    pv_availability : bool
        Compute each PV device's available power (needed by the controllers).
    extra_steps : int
        Steps generated beyond the period's end, for controllers that look ahead
        (CSV series hold their last value there).
    """

    def __init__(self, scenario: Scenario, fleet: Fleet, params: TwinParams,
                 pv_availability: bool = True, extra_steps: int = 0):
        sc = scenario
        per = sc.period
        self.dt_s = per.step
        self.start_s = per.start_s
        self.n_steps = per.n_steps
        self.n_total = per.n_steps + max(0, int(extra_steps))
        self.n_sites = fleet.n_sites
        if sc.weather.source == "csv":
            assert sc.weather.file is not None
            self.weather: CloudWeather | CsvWeather = CsvWeather(
                sc.weather.file, fleet.lat_deg, fleet.lon_deg, per.start_s, per.end_s,
                wind_m_s=sc.weather.wind_m_s, temp_c=sc.weather.temperature.mean_c)
        else:
            c = sc.weather.clouds
            self.weather = CloudWeather(
                fleet.lat_deg, fleet.lon_deg, per.step, stream(sc.seed, "weather"),
                mean_cover=c.mean_cover, variability=c.variability,
                correlation_km=c.correlation_km, time_constant_h=c.time_constant_h,
                temperature=sc.weather.temperature.model_dump(), wind_m_s=sc.weather.wind_m_s)
        if sc.prices.source == "csv":
            assert sc.prices.file is not None
            self.prices: SyntheticPrices | CsvSeries = CsvSeries(
                sc.prices.file, "price_eur_per_mwh", per.start_s, per.end_s)
        else:
            self.prices = SyntheticPrices(per.start_s, per.timezone, stream(sc.seed, "prices"),
                                          **sc.prices.synthetic.model_dump())
        self.feed_in = sc.prices.feed_in_eur_per_mwh
        if sc.carbon.source == "csv":
            assert sc.carbon.file is not None
            self.carbon: CarbonProfile | CsvSeries = CsvSeries(
                sc.carbon.file, "co2_kg_per_mwh", per.start_s, per.end_s)
        else:
            self.carbon = CarbonProfile(per.timezone, sc.carbon.mean_kg_per_mwh,
                                        sc.carbon.midday_dip_kg_per_mwh)
        self.loads = LoadProfiles(fleet.timezone, stream(sc.seed, "loads"))
        ev_rows = np.flatnonzero(fleet.device_type == EV_CHARGER)
        self.ev = EvArrivals(ev_rows, fleet.ev_connectors[ev_rows], per.timezone, per.step,
                             stream(sc.seed, "ev"), **sc.ev.model_dump())
        self.params = params
        self.pv_rows = np.flatnonzero(fleet.device_type == PV)
        self.pv_site = fleet.device_site[self.pv_rows].astype(np.int64)
        self.load_rows = np.flatnonzero(fleet.device_type == LOAD)
        self.load_site = fleet.device_site[self.load_rows].astype(np.int64)
        self.pv_availability = pv_availability

    def chunk(self, first: int, n: int) -> InputChunk:
        """Inputs for steps ``first .. first + n - 1`` (call with increasing ``first``)."""
        n = min(n, self.n_total - first)
        t_s = self.start_s + self.dt_s * np.arange(first, first + n, dtype=np.float64)
        w = self.weather.generate(t_s)
        n_s = self.n_sites

        def per_site(series: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(np.repeat(np.asarray(series, np.float64)[:, None],
                                                  n_s, axis=1))

        ev = self.ev.generate(t_s)
        chunk = InputChunk(
            first=first, t_s=t_s,
            **{k: np.ascontiguousarray(w[k], dtype=np.float64)
               for k in ("ghi", "dni", "dhi", "zenith_deg", "azimuth_deg", "temp_air_c",
                         "wind_m_s")},
            load_frac=self.loads.generate(t_s),
            price_eur_per_mwh=per_site(self.prices.generate(t_s)),
            feed_in_eur_per_mwh=np.full((n, n_s), float(self.feed_in)),
            co2_kg_per_mwh=per_site(self.carbon.generate(t_s)),
            pv_avail_kw=None, pv_site_kw=None,
            load_site_kw=self.load_site_kw(0, 0),
            ev_step=ev[0], ev_charger=ev[1], ev_need_kwh=ev[2], ev_departure_s=ev[3],
        )
        chunk.load_site_kw = self.load_site_kw(chunk.load_frac, 1)
        if self.pv_availability:
            chunk.pv_avail_kw = self.pv_available(chunk)
            chunk.pv_site_kw = self.per_site(self.pv_site, chunk.pv_avail_kw)
        return chunk

    def per_site(self, site_of_column: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Sum the columns of (n, m) ``values`` into (n, n_sites) by each column's site.

        Columns are device rows of one type, so their sites are sorted.
        """
        out = np.zeros((values.shape[0], self.n_sites))
        if values.shape[1] == 0:
            return out
        starts = np.flatnonzero(np.r_[True, site_of_column[1:] != site_of_column[:-1]])
        out[:, site_of_column[starts]] = np.add.reduceat(values, starts, axis=1)
        return out

    def load_site_kw(self, load_frac: np.ndarray | int, ok: np.ndarray | int) -> np.ndarray:
        """Fixed load per site [kW] (negative) for (n, n_sites, 4) ``load_frac``.

        ``ok`` (per load device, 0 or 1) switches loads off; ``0`` as
        ``load_frac`` gives an empty placeholder.
        """
        if isinstance(load_frac, int):
            return np.zeros((0, self.n_sites))
        p, rows = self.params, self.load_rows
        site = self.load_site
        frac = load_frac[:, site, p.load_profile[rows].astype(np.int64)]
        return -self.per_site(site, frac * (p.load_peak_kw[rows] * ok))

    def pv_available(self, chunk: InputChunk) -> np.ndarray:
        """Available AC power of each PV device [kW], (n, n_pv).

        The twin's own physics (:func:`twin.physics.pv_ac_power`), so the
        controllers see what the twin will deliver without curtailment.
        """
        p, rows, site = self.params, self.pv_rows, self.pv_site
        out = np.zeros((chunk.n, len(rows)))
        day = np.flatnonzero((chunk.zenith_deg < 90.0).any(axis=1) & (chunk.ghi > 0).any(axis=1))
        if len(day) == 0 or len(rows) == 0:
            return out
        # Float32 halves the bytes moved; the controllers need no more than 1e-6 relative.
        f32 = np.float32

        def per_pv(values: np.ndarray) -> np.ndarray:
            return np.take(values[day].astype(f32), site, axis=1)

        sun = tuple(per_pv(v) for v in sun_geometry(chunk.zenith_deg, chunk.azimuth_deg))
        panel = (p.cos_tilt[rows].astype(f32), p.sin_tilt_cos_az[rows].astype(f32),
                 p.sin_tilt_sin_az[rows].astype(f32))
        out[day] = pv_ac_power(per_pv(chunk.ghi), per_pv(chunk.dni), per_pv(chunk.dhi), sun,
                               per_pv(chunk.temp_air_c), per_pv(chunk.wind_m_s), panel,
                               p.pv_kwp[rows].astype(f32), p.inverter_kw[rows].astype(f32),
                               p.temp_coeff_per_c[rows].astype(f32))
        return out
