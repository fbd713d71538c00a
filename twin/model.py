"""The digital twin of a fleet: parameters, state and one ``step`` call.

``Twin`` is a thin holder: it derives the kernel parameters from a
:class:`~twin.fleet.Fleet`, owns the :class:`~twin.state.TwinState`, and
advances the whole fleet with the numba kernel (default) or the numpy
reference (``backend="numpy"``). Time always comes in as an argument.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from twin.fleet import Fleet
from twin.reference import step_fleet_numpy
from twin.state import (
    SITE_TOTALS,
    TOTAL,
    StepInputs,
    TwinParams,
    TwinState,
    default_setpoints,
)

try:  # numba is optional: without it the twin runs the numpy reference physics
    from twin import kernels
except ImportError:  # pragma: no cover - numba is installed with the project
    kernels = None

log = logging.getLogger(__name__)

Backend = Literal["numba", "numpy"]


def numba_available() -> bool:
    return kernels is not None


class Twin:
    """Digital twin of every site and device of a fleet.

    Parameters
    ----------
    fleet : Fleet
        The fleet to model.
    backend : {"numba", "numpy"}
        Physics implementation. "numba" falls back to "numpy" with a warning
        when numba is not installed.
    soc : float or array
        Initial state of charge of the batteries (0..1).
    t_s : float
        Unix time [s] at which the twin starts.
    """

    def __init__(self, fleet: Fleet, backend: Backend = "numba", soc: float | np.ndarray = 0.5,
                 t_s: float = 0.0):
        if backend not in ("numba", "numpy"):
            raise ValueError(f"backend must be 'numba' or 'numpy', got {backend!r}")
        if backend == "numba" and not numba_available():
            log.warning("numba is not installed; the twin uses the numpy backend "
                        "(pip install numba for speed)")
            backend = "numpy"
        self.fleet = fleet
        self.backend: Backend = backend
        self.params = TwinParams.from_fleet(fleet)
        self.state = TwinState.initial(self.params, soc=soc, t_s=t_s)

    # -- the step --------------------------------------------------------------
    def step(self, t_s: float, dt_s: float, inputs: StepInputs,
             setpoint: np.ndarray | None = None, check: bool = False) -> TwinState:
        """Advance the whole fleet over ``[t_s, t_s + dt_s)``.

        ``setpoint`` holds one value per device row (see
        :func:`twin.state.default_setpoints`); ``None`` means no setpoints.
        ``check=True`` validates the inputs' shapes and values first.
        """
        if dt_s <= 0:
            raise ValueError(f"dt_s must be positive, got {dt_s}")
        if setpoint is None:
            setpoint = default_setpoints(self.params)
        if check:
            inputs.validate(self.params.n_sites)
            if setpoint.shape != (self.params.n_devices,):
                raise ValueError(f"setpoint has shape {setpoint.shape}, expected "
                                 f"({self.params.n_devices},)")
        if self.backend == "numba":
            _step_numba(t_s, dt_s, self.params, inputs, setpoint, self.state)
        else:
            step_fleet_numpy(t_s, dt_s, self.params, inputs, setpoint, self.state)
        self.state.t_s = t_s + dt_s
        self.state.steps += 1
        return self.state

    # -- events ----------------------------------------------------------------
    def plug_in(self, charger_rows: np.ndarray, need_kwh: np.ndarray,
                departure_s: np.ndarray) -> np.ndarray:
        """Connect EV sessions to free connectors of the given chargers.

        Returns a boolean array: True where a free connector took the session,
        False where the charger was full (the arrival is turned away).
        """
        charger_rows = np.asarray(charger_rows, dtype=np.int64)
        need_kwh = np.asarray(need_kwh, dtype=np.float64)
        departure_s = np.asarray(departure_s, dtype=np.float64)
        if np.any(need_kwh < 0) or not np.all(np.isfinite(need_kwh)):
            raise ValueError("EV session energy must be finite and non-negative")
        taken = np.zeros(len(charger_rows), dtype=bool)
        if self.backend == "numba":
            assert kernels is not None
            kernels.plug_in_sessions(self.params.conn_start, self.params.conn_stop,
                             self.state.conn_need_kwh, self.state.conn_departure_s,
                             charger_rows, need_kwh, departure_s, taken)
            return taken
        free = self.state.conn_departure_s
        for i, d in enumerate(charger_rows):
            c0, c1 = self.params.conn_start[d], self.params.conn_stop[d]
            idle = np.flatnonzero(np.isinf(free[c0:c1]))
            if len(idle):
                c = c0 + idle[0]
                self.state.conn_need_kwh[c] = need_kwh[i]
                self.state.conn_departure_s[c] = departure_s[i]
                taken[i] = True
        return taken

    def set_device_ok(self, rows: np.ndarray, ok: bool) -> None:
        """Mark devices as working (True) or failed/switched off (False)."""
        self.state.device_ok[np.asarray(rows, dtype=np.int64)] = 1 if ok else 0

    # -- read-outs ---------------------------------------------------------------
    def soc(self) -> np.ndarray:
        return self.state.soc(self.params)

    def fleet_totals(self) -> dict[str, float]:
        """Fleet sums of the site accumulators (peak import: the largest site's)."""
        t = self.state.site_totals
        out = {name: float(t[:, i].sum()) for i, name in enumerate(SITE_TOTALS)}
        out["peak_import_kw"] = float(t[:, TOTAL["peak_import_kw"]].max(initial=0.0))
        return out


def _step_numba(t_s: float, dt_s: float, p: TwinParams, x: StepInputs, setpoint: np.ndarray,
                s: TwinState) -> None:
    assert kernels is not None
    kernels.step_fleet(
        float(t_s), float(dt_s),
        p.site_start, p.import_limit_kw, p.export_limit_kw, p.type_start, p.type_count,
        p.pv_table, p.battery_table, p.ev_max_c_kw, p.ev_conn, p.load_table,
        x.ghi, x.dni, x.dhi, x.zenith_deg, x.azimuth_deg, x.temp_air_c, x.wind_m_s,
        x.load_frac, x.price_eur_per_mwh, x.feed_in_eur_per_mwh, x.co2_kg_per_mwh,
        setpoint,
        s.p_kw, s.e_kwh, s.throughput_kwh, s.ev_delivered_kwh, s.ev_unmet_kwh, s.device_ok,
        s.conn_need_kwh, s.conn_departure_s, s.site_flows, s.site_totals,
    )
