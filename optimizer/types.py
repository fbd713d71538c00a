"""Boundary types of the optimizer: configuration, forecast, EV sessions, errors.

These are the objects callers build (the scenario runner, the live service)
and hand to :func:`optimizer.optimize` or :class:`optimizer.MpcController`.
All arrays are numpy; times are UTC Unix seconds; powers in kW, energies in
kWh, prices in EUR/MWh, carbon intensity in kg/MWh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class OptimizerInputError(ValueError):
    """Input refused before the solve; the message names the offending input."""


@dataclass(frozen=True)
class OptimizerConfig:
    """Settings of one dispatch solve.

    Parameters
    ----------
    n_steps : int
        Steps in the horizon (default 96, i.e. 24 h at 15 min).
    dt_s : float
        Step length [s].
    time_limit_s : float
        Wall-clock limit of the whole solve [s]; at the limit the plan holds
        what was solved so far and falls back for the rest.
    co2_price_eur_per_t : float
        Price of emitted CO2 [EUR/t], applied to imports at the grid's carbon
        intensity. May be zero.
    peak_charge_eur_per_kw : float
        Charge on each site's highest import over the horizon [EUR/kW].
    degradation_eur_per_kwh : float
        Battery wear cost per kWh of AC throughput (charge plus discharge) [EUR/kWh].
    terminal_soc : float or None
        Target state of charge (0..1) of every site's batteries at the end of
        the horizon; ``None`` for no target.
    terminal_value_eur_per_kwh : float
        Value of energy left in storage at the end [EUR/kWh] (alternative or
        complement to ``terminal_soc``).
    vpp_export_kw : array or None
        Fleet-wide export commitment per step [kW] (a virtual power plant
        bid), length ``n_steps``; ``None`` for none. It couples every site,
        so the fleet is then solved as one LP.
    limit_penalty_eur_per_kwh : float
        Penalty on energy beyond a site or feeder limit [EUR/kWh] (soft limits).
    ev_unmet_penalty_eur_per_kwh : float
        Penalty on EV energy not delivered by departure [EUR/kWh].
    terminal_penalty_eur_per_kwh : float
        Penalty on stored energy below the terminal target [EUR/kWh].
    vpp_penalty_eur_per_kwh : float
        Penalty on export below the VPP commitment [EUR/kWh].
    curtail_cost_eur_per_kwh : float
        Small cost on curtailed PV [EUR/kWh], so that PV is only curtailed
        when that earns something (a negative feed-in price, a limit).
    decompose : bool
        Solve independent feeders as separate LPs (the fast path). The LP and
        its optimum are the same either way.
    batch_sites : int
        Feeders are packed into LPs of about this many sites (each its own
        HiGHS instance); 1 gives one LP per feeder.
    threads : int
        Worker threads for the independent feeder LPs.
    highs_options : dict
        Extra HiGHS options (name -> value), e.g. ``{"simplex_iteration_limit": 10000}``.
    """

    n_steps: int = 96
    dt_s: float = 900.0
    time_limit_s: float = 10.0
    co2_price_eur_per_t: float = 0.0
    peak_charge_eur_per_kw: float = 0.0
    degradation_eur_per_kwh: float = 0.005
    terminal_soc: float | None = None
    terminal_value_eur_per_kwh: float = 0.0
    vpp_export_kw: np.ndarray | None = None
    limit_penalty_eur_per_kwh: float = 10.0
    ev_unmet_penalty_eur_per_kwh: float = 2.0
    terminal_penalty_eur_per_kwh: float = 1.0
    vpp_penalty_eur_per_kwh: float = 5.0
    curtail_cost_eur_per_kwh: float = 1e-5
    decompose: bool = True
    batch_sites: int = 8
    threads: int = 1
    highs_options: dict = field(default_factory=dict)

    @property
    def dt_h(self) -> float:
        return self.dt_s / 3600.0

    @property
    def horizon_s(self) -> float:
        return self.n_steps * self.dt_s


@dataclass(frozen=True)
class EvSessions:
    """EV charging sessions, one entry each.

    Parameters
    ----------
    charger_row : (n,) int array
        Device row of the EV charger the car is (or will be) plugged into.
    arrival_s, departure_s : (n,) float arrays
        Plug-in and departure times [Unix s]; sessions already connected have
        ``arrival_s <= t0_s``. A car charges in every step that starts
        before its departure.
    need_kwh : (n,) float array
        Energy the car still wants [kWh].
    """

    charger_row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    arrival_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    departure_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    need_kwh: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.charger_row)


@dataclass(frozen=True)
class Forecast:
    """Exogenous series over the horizon, one row per step.

    Per-site arrays have shape ``(n_steps, n_sites)``; price and carbon
    series may also be ``(n_steps,)`` (the same at every site). Longer series
    are cut to the horizon; shorter ones are refused.

    Parameters
    ----------
    pv_kw : (n_steps, n_sites) array
        Available PV AC power per site before curtailment [kW].
    load_kw : (n_steps, n_sites) array
        Fixed site load, as a positive demand [kW].
    import_price_eur_per_mwh, feed_in_eur_per_mwh : array
        Import price and feed-in tariff [EUR/MWh].
    co2_kg_per_mwh : array
        Grid carbon intensity [kg/MWh].
    ev_sessions : EvSessions
        Connected and expected EV sessions.
    pv_device_kw : (n_steps, n_devices) array, optional
        Available power per PV device row [kW]. When given, a site's PV is
        the sum over its working inverters (``pv_kw`` is then not used) and
        curtailment is shared in proportion to it; without it ``pv_kw`` is
        shared by inverter rating. Either way each inverter is capped at its
        AC rating.
    """

    pv_kw: np.ndarray
    load_kw: np.ndarray
    import_price_eur_per_mwh: np.ndarray
    feed_in_eur_per_mwh: np.ndarray
    co2_kg_per_mwh: np.ndarray
    ev_sessions: EvSessions | None = field(default_factory=EvSessions)
    pv_device_kw: np.ndarray | None = None
