"""The twin's arrays: parameters derived from a fleet, mutable state, per-step inputs.

Everything here is a flat numpy array indexed by device row, connector row or
site row, so that both the numba kernel and the numpy reference can work on
the whole fleet in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from twin.fleet import BATTERY, EV_CHARGER, LOAD, LOAD_PROFILES, PV, Fleet
from twin.physics import pv_geometry

# Site flows written every step, shape (n_sites, len(SITE_FLOWS)) [kW].
SITE_FLOWS: tuple[str, ...] = (
    "pv_kw",            # PV delivered (after curtailment)
    "pv_curtailed_kw",  # PV available but not delivered
    "battery_kw",       # battery, positive when discharging
    "ev_kw",            # EV charging (negative)
    "load_kw",          # fixed load (negative)
    "net_kw",           # sum of device powers = grid exchange, positive for export
    "import_kw",
    "export_kw",
    "violation_kw",     # import or export beyond the site's limits
)
# Site accumulators since the start, shape (n_sites, len(SITE_TOTALS)).
SITE_TOTALS: tuple[str, ...] = (
    "pv_kwh",
    "pv_curtailed_kwh",
    "battery_discharge_kwh",
    "battery_charge_kwh",
    "ev_kwh",
    "load_kwh",
    "import_kwh",
    "export_kwh",
    "self_consumed_kwh",  # PV energy used on site (PV minus export, per step, >= 0)
    "violation_kwh",
    "cost_eur",           # import at the import price
    "revenue_eur",        # export at the feed-in price
    "co2_avoided_kg",     # PV energy at the grid's carbon intensity
    "peak_import_kw",
)
FLOW = {name: i for i, name in enumerate(SITE_FLOWS)}
TOTAL = {name: i for i, name in enumerate(SITE_TOTALS)}

IDLE = np.nan  # setpoint meaning "no setpoint": battery idle, no PV/EV limit


@dataclass(frozen=True, eq=False)
class TwinParams:
    """Read-only arrays the kernels need, derived once from a :class:`Fleet`.

    Per-type columns are full length (one entry per device row); entries of
    other types are unused. PV panel orientation is precomputed as the three
    terms of the angle-of-incidence projection.
    """

    site_start: np.ndarray  # (n_sites,) int64: first device row of each site
    site_stop: np.ndarray  # (n_sites,) int64
    import_limit_kw: np.ndarray  # (n_sites,)
    export_limit_kw: np.ndarray  # (n_sites,)
    device_site: np.ndarray  # (n_devices,) int32
    device_type: np.ndarray  # (n_devices,) int8
    pv_kwp: np.ndarray
    inverter_kw: np.ndarray
    temp_coeff_per_c: np.ndarray
    cos_tilt: np.ndarray
    sin_tilt_cos_az: np.ndarray
    sin_tilt_sin_az: np.ndarray
    battery_kwh: np.ndarray
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    charge_eff: np.ndarray
    discharge_eff: np.ndarray
    soc_min: np.ndarray
    soc_max: np.ndarray
    ev_max_kw: np.ndarray
    conn_start: np.ndarray  # (n_devices,) int64: first connector row of each EV charger
    conn_stop: np.ndarray  # (n_devices,) int64
    load_peak_kw: np.ndarray
    load_profile: np.ndarray  # (n_devices,) int8, -1 for non-loads
    # Compact per-type tables for the numba kernel: each type's devices are
    # dense, in device-row order, so a step streams only the bytes it needs.
    type_start: np.ndarray  # (n_sites, 4) int64: site's first row in each type's table
    type_count: np.ndarray  # (n_sites, 4) int64: site's number of devices of each type
    pv_table: np.ndarray  # (n_pv, 6) float32: kwp, inverter_kw, temp_coeff, cos_tilt, stc, sts
    battery_table: np.ndarray  # (n_bat, 7): kwh, charge_kw, discharge_kw, charge_eff,
    #                             discharge_eff, soc_min, soc_max
    ev_max_c_kw: np.ndarray  # (n_ev,): charger rating
    ev_conn: np.ndarray  # (n_ev, 2) int64: first and end connector row
    load_table: np.ndarray  # (n_load, 2): peak_kw, profile code

    @classmethod
    def from_fleet(cls, fleet: Fleet) -> TwinParams:
        def col(name: str) -> np.ndarray:
            return np.nan_to_num(fleet.device_float[name], nan=0.0)

        tilt = np.nan_to_num(fleet.tilt_deg, nan=0.0)
        az = np.nan_to_num(fleet.azimuth_deg, nan=180.0)
        # PV parameters are held at float32 precision (7 significant digits, far
        # finer than any rating): the kernel streams them as float32, and the
        # full-length float64 columns carry the same rounded values.
        cos_tilt, stc, sts = (_f32(x) for x in pv_geometry(tilt, az))
        connectors = fleet.ev_connectors.astype(np.int64)
        conn_stop = np.cumsum(connectors)
        kind = fleet.device_type
        count = np.zeros((fleet.n_sites, 4), dtype=np.int64)
        np.add.at(count, (fleet.device_site, kind), 1)
        start = np.zeros_like(count)
        start[1:] = np.cumsum(count, axis=0)[:-1]
        pv, bat, ev, ld = (kind == code for code in (PV, BATTERY, EV_CHARGER, LOAD))
        ev_rows = np.flatnonzero(ev)
        return cls(
            site_start=fleet.site_start,
            site_stop=fleet.site_stop,
            import_limit_kw=fleet.import_limit_kw.copy(),
            export_limit_kw=fleet.export_limit_kw.copy(),
            device_site=fleet.device_site,
            device_type=fleet.device_type,
            pv_kwp=_f32(col("pv_kwp")),
            inverter_kw=_f32(col("inverter_kw")),
            temp_coeff_per_c=_f32(col("temp_coeff_per_c")),
            cos_tilt=cos_tilt,
            sin_tilt_cos_az=stc,
            sin_tilt_sin_az=sts,
            battery_kwh=col("battery_kwh"),
            charge_kw=col("charge_kw"),
            discharge_kw=col("discharge_kw"),
            charge_eff=np.nan_to_num(fleet.charge_eff, nan=1.0),
            discharge_eff=np.nan_to_num(fleet.discharge_eff, nan=1.0),
            soc_min=col("soc_min"),
            soc_max=col("soc_max"),
            ev_max_kw=col("ev_max_kw"),
            conn_start=conn_stop - connectors,
            conn_stop=conn_stop,
            load_peak_kw=col("load_peak_kw"),
            load_profile=fleet.load_profile,
            type_start=start,
            type_count=count,
            pv_table=np.column_stack([col("pv_kwp")[pv], col("inverter_kw")[pv],
                                      col("temp_coeff_per_c")[pv], cos_tilt[pv], stc[pv],
                                      sts[pv]]).astype(np.float32),
            battery_table=np.column_stack([col(name)[bat] for name in (
                "battery_kwh", "charge_kw", "discharge_kw", "charge_eff", "discharge_eff",
                "soc_min", "soc_max")]),
            ev_max_c_kw=col("ev_max_kw")[ev],
            ev_conn=np.column_stack([(conn_stop - connectors)[ev_rows], conn_stop[ev_rows]]),
            load_table=np.column_stack([col("load_peak_kw")[ld],
                                        fleet.load_profile[ld].astype(np.float64)]),
        )

    @property
    def n_sites(self) -> int:
        return len(self.site_start)

    @property
    def n_devices(self) -> int:
        return len(self.device_type)

    @property
    def n_connectors(self) -> int:
        return int(self.conn_stop[-1]) if len(self.conn_stop) else 0

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes for f in fields(self))

    @property
    def kernel_nbytes(self) -> int:
        """Bytes of the parameter arrays the numba kernel reads."""
        return sum(getattr(self, name).nbytes for name in (
            "site_start", "site_stop", "import_limit_kw", "export_limit_kw", "type_start",
            "type_count", "pv_table", "battery_table", "ev_max_c_kw", "ev_conn", "load_table"))


def _f32(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to float32 precision, as float64."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


@dataclass(eq=False)
class TwinState:
    """Mutable state of the whole fleet.

    ``p_kw`` is every device's power over the last step; ``e_kwh`` the energy
    stored in each battery; ``throughput_kwh`` the AC energy through each
    battery (charge plus discharge, for equivalent full cycles); EV sessions
    live on connector rows (``conn_need_kwh`` energy still wanted,
    ``conn_departure_s`` Unix time it leaves, ``inf`` when free);
    ``device_ok`` is 0 for a failed or switched-off device.
    """

    p_kw: np.ndarray
    e_kwh: np.ndarray
    throughput_kwh: np.ndarray
    ev_delivered_kwh: np.ndarray
    ev_unmet_kwh: np.ndarray
    device_ok: np.ndarray
    conn_need_kwh: np.ndarray
    conn_departure_s: np.ndarray
    site_flows: np.ndarray  # (n_sites, len(SITE_FLOWS)) of the last step
    site_totals: np.ndarray  # (n_sites, len(SITE_TOTALS)) since the start
    t_s: float = field(default=0.0)  # Unix time at the end of the last step
    steps: int = field(default=0)

    @classmethod
    def initial(cls, params: TwinParams, soc: float | np.ndarray = 0.5,
                t_s: float = 0.0) -> TwinState:
        n, s = params.n_devices, params.n_sites
        soc_arr = np.clip(np.broadcast_to(np.asarray(soc, dtype=np.float64), (n,)),
                          params.soc_min, params.soc_max)
        return cls(
            p_kw=np.zeros(n),
            e_kwh=soc_arr * params.battery_kwh,
            throughput_kwh=np.zeros(n),
            ev_delivered_kwh=np.zeros(n),
            ev_unmet_kwh=np.zeros(n),
            device_ok=np.ones(n, dtype=np.uint8),
            conn_need_kwh=np.zeros(params.n_connectors),
            conn_departure_s=np.full(params.n_connectors, np.inf),
            site_flows=np.zeros((s, len(SITE_FLOWS))),
            site_totals=np.zeros((s, len(SITE_TOTALS))),
            t_s=t_s,
        )

    def soc(self, params: TwinParams) -> np.ndarray:
        """State of charge (0..1) per device row; NaN for non-batteries."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(params.battery_kwh > 0, self.e_kwh / params.battery_kwh, np.nan)

    def copy(self) -> TwinState:
        return TwinState(**{
            f.name: (v.copy() if isinstance(v := getattr(self, f.name), np.ndarray) else v)
            for f in fields(self)
        })

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for f in fields(self)
                   if isinstance(v := getattr(self, f.name), np.ndarray))


@dataclass(eq=False)
class StepInputs:
    """Exogenous inputs for one step, per site.

    ``ghi``, ``dni``, ``dhi`` [W/m^2]; ``zenith_deg``, ``azimuth_deg`` of the sun;
    ``temp_air_c`` [degC]; ``wind_m_s`` [m/s]; ``load_frac`` (n_sites,
    n_profiles) fraction of peak per load profile class; prices
    [EUR/MWh] and the grid's carbon intensity [kg/MWh] for the step.
    """

    ghi: np.ndarray
    dni: np.ndarray
    dhi: np.ndarray
    zenith_deg: np.ndarray
    azimuth_deg: np.ndarray
    temp_air_c: np.ndarray
    wind_m_s: np.ndarray
    load_frac: np.ndarray
    price_eur_per_mwh: np.ndarray
    feed_in_eur_per_mwh: np.ndarray
    co2_kg_per_mwh: np.ndarray

    @classmethod
    def constant(cls, n_sites: int, *, ghi: float = 0.0, dni: float = 0.0, dhi: float = 0.0,
                 zenith_deg: float = 90.0, azimuth_deg: float = 180.0,
                 temp_air_c: float = 20.0, wind_m_s: float = 1.0, load_frac: float = 0.5,
                 price_eur_per_mwh: float = 100.0, feed_in_eur_per_mwh: float = 50.0,
                 co2_kg_per_mwh: float = 300.0) -> StepInputs:
        """Inputs equal at every site (for tests and examples)."""
        def full(v: float) -> np.ndarray:
            return np.full(n_sites, float(v))

        return cls(
            ghi=full(ghi), dni=full(dni), dhi=full(dhi), zenith_deg=full(zenith_deg),
            azimuth_deg=full(azimuth_deg), temp_air_c=full(temp_air_c), wind_m_s=full(wind_m_s),
            load_frac=np.full((n_sites, len(LOAD_PROFILES)), float(load_frac)),
            price_eur_per_mwh=full(price_eur_per_mwh),
            feed_in_eur_per_mwh=full(feed_in_eur_per_mwh),
            co2_kg_per_mwh=full(co2_kg_per_mwh),
        )

    def validate(self, n_sites: int) -> None:
        """Refuse inputs of the wrong shape or with NaN, naming the input."""
        for f in fields(self):
            arr = getattr(self, f.name)
            want = (n_sites, len(LOAD_PROFILES)) if f.name == "load_frac" else (n_sites,)
            if np.shape(arr) != want:
                raise ValueError(f"step input {f.name!r} has shape {np.shape(arr)}, "
                                 f"expected {want}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"step input {f.name!r} has NaN or infinite values")


def default_setpoints(params: TwinParams) -> np.ndarray:
    """One setpoint per device row, all 'no setpoint' (NaN).

    For a battery the setpoint is ``p_kw`` (positive = discharge, NaN = idle);
    for PV and EV chargers it is a power limit ``p_limit_kw`` (NaN = none);
    loads ignore it.
    """
    return np.full(params.n_devices, IDLE)


TYPE_CODES = {"pv": PV, "battery": BATTERY, "ev_charger": EV_CHARGER, "load": LOAD}
