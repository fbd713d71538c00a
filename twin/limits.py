"""Device rules per type: the setpoint key, the setpoint bounds and the rated power.

One table, :data:`DEVICE_RULES`, states per device type which key its
setpoint object carries (docs/protocol.md), which parameters bound the
setpoint, and which parameters make its rated power. Every part that
validates, clamps, plans or checks setpoints reads it through the functions
here: API validation (:func:`record_setpoint_bounds_kw`), the device
emulator, the optimizer's bounds and its check
(:func:`setpoint_bounds_kw`), the command publisher and the plans
(:data:`SETPOINT_KEY`), the ingest's plausibility bound and the alert
detectors (:func:`rated_power_kw`).

The bounds are those the twin's kernel (``twin.kernels.step_fleet``) applies:

* battery ``p_kw`` in ``[-charge_kw, discharge_kw]`` (positive = discharge);
* PV ``p_limit_kw`` in ``[0, inverter_kw]`` (a curtailment limit);
* EV charger ``p_limit_kw`` in ``[0, ev_max_kw]``: the limit is the charger's,
  and its connectors' sessions share ``ev_max_kw`` (it is not multiplied by
  ``ev_connectors``);
* loads take no setpoint (NaN bounds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from twin.fleet import DEVICE_TYPES, TYPE_CODE, Fleet


class DeviceRule(NamedTuple):
    """The rules of one device type.

    ``setpoint_key`` is the key of its setpoint object (None: takes no
    setpoint); the setpoint's lower bound is ``-params[lo_neg_field]`` (0 when
    ``lo_neg_field`` is None) and its upper bound ``params[hi_field]`` [kW];
    the rated power is the largest of ``params[f]`` over ``rated_fields`` [kW].
    """

    setpoint_key: str | None
    lo_neg_field: str | None
    hi_field: str | None
    rated_fields: tuple[str, ...]


DEVICE_RULES: dict[str, DeviceRule] = {
    "pv": DeviceRule("p_limit_kw", None, "inverter_kw", ("inverter_kw",)),
    "battery": DeviceRule("p_kw", "charge_kw", "discharge_kw", ("charge_kw", "discharge_kw")),
    "ev_charger": DeviceRule("p_limit_kw", None, "ev_max_kw", ("ev_max_kw",)),
    "load": DeviceRule(None, None, None, ("load_peak_kw",)),
}

# Setpoint key by type name and by type code (both look up in the one dict).
SETPOINT_KEY: dict[int | str, str] = {
    **{name: r.setpoint_key for name, r in DEVICE_RULES.items() if r.setpoint_key},
    **{TYPE_CODE[name]: r.setpoint_key for name, r in DEVICE_RULES.items() if r.setpoint_key},
}
# Type codes of the devices that take a setpoint.
SETPOINT_TYPES: tuple[int, ...] = tuple(
    sorted(TYPE_CODE[name] for name, r in DEVICE_RULES.items() if r.setpoint_key))


def takes_setpoint(device_type: np.ndarray) -> np.ndarray:
    """Whether each device takes a setpoint.

    Parameters
    ----------
    device_type : (n,) int array
        Type codes (``twin.fleet.DEVICE_TYPES`` order), e.g. ``fleet.device_type``.

    Returns
    -------
    (n,) bool array
    """
    return np.isin(device_type, SETPOINT_TYPES)


def setpoint_bounds_kw(fleet: Fleet) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest setpoint each device of a fleet accepts.

    Parameters
    ----------
    fleet : Fleet

    Returns
    -------
    lo_kw, hi_kw : (n_devices,) float arrays
        Inclusive bounds [kW] of each device's setpoint (see the module
        docstring); NaN for devices that take none (loads).
    """
    lo = np.full(fleet.n_devices, np.nan)
    hi = np.full(fleet.n_devices, np.nan)
    f = fleet.device_float
    for name, rule in DEVICE_RULES.items():
        if rule.setpoint_key is None:
            continue
        rows = fleet.device_type == TYPE_CODE[name]
        hi[rows] = f[rule.hi_field][rows]
        lo[rows] = -f[rule.lo_neg_field][rows] if rule.lo_neg_field else 0.0
    return lo, hi


def record_setpoint_bounds_kw(rec: Mapping[str, Any]) -> tuple[float, float]:
    """Lowest and highest setpoint one device accepts, from its registry record.

    Parameters
    ----------
    rec : mapping
        A device record as :meth:`twin.fleet.Fleet.device_records` gives it
        (``type`` and the type's parameters [kW]).

    Returns
    -------
    lo_kw, hi_kw : float
        Inclusive bounds [kW]; NaN for a device that takes no setpoint (a load).

    Raises
    ------
    ValueError
        The type is unknown, or a parameter the bounds need is missing or not
        a number (the message names the device and the field).
    """
    dtype = rec.get("type")
    rule = DEVICE_RULES.get(dtype) if isinstance(dtype, str) else None
    if rule is None:
        raise ValueError(f"device {rec.get('id')!r}: type {dtype!r} is not one of "
                         f"{DEVICE_TYPES}")
    if rule.setpoint_key is None:
        return math.nan, math.nan
    hi = _number(rec, rule.hi_field)
    lo = -_number(rec, rule.lo_neg_field) if rule.lo_neg_field else 0.0
    return lo, hi


def rated_power_kw(fleet: Fleet) -> np.ndarray:
    """Rated power of each device [kW].

    PV ``inverter_kw``, battery ``max(charge_kw, discharge_kw)``, EV charger
    ``ev_max_kw``, load ``load_peak_kw``. An EV charger is rated at
    ``ev_max_kw`` and not ``ev_max_kw * ev_connectors``: the kernel lets all
    sessions of a charger share ``ev_max_kw``, so the charger never draws
    more, and the alert detectors always used this figure.

    Parameters
    ----------
    fleet : Fleet

    Returns
    -------
    (n_devices,) float array
        [kW]; 0 where a parameter is missing (NaN).
    """
    rated = np.zeros(fleet.n_devices)
    f = fleet.device_float
    for name, rule in DEVICE_RULES.items():
        rows = fleet.device_type == TYPE_CODE[name]
        values = [f[field][rows] for field in rule.rated_fields]
        rated[rows] = np.fmax.reduce(values) if len(values) > 1 else values[0]
    return np.nan_to_num(rated, nan=0.0)


def _number(rec: Mapping[str, Any], field: str) -> float:
    value = rec.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"device {rec.get('id')!r} ({rec.get('type')}): field {field!r} "
                         f"must be a number [kW], got {value!r}")
    return float(value)
