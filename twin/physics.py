"""Device physics as plain numpy functions of arrays: the reference implementation.

These functions state the twin's physics once, readably, for whole arrays of
devices. ``twin.kernels`` holds the numba version of the same formulas, fused
into one pass over the fleet; tests check that both agree to 1e-9.

Conventions (see docs/glossary.md): power in kW, energy in kWh, a device's
``p_kw`` is positive when it delivers power to its site and negative when it
draws power. Irradiance in W/m^2, temperatures in degC, angles in degrees.

PV follows pvlib's chain: isotropic plane-of-array transposition
(``pvlib.irradiance.get_total_irradiance(model='isotropic')``), Faiman cell
temperature (``pvlib.temperature.faiman``), PVWatts DC
(``pvlib.pvsystem.pvwatts_dc``) and the PVWatts inverter
(``pvlib.inverter.pvwatts``).
"""

from __future__ import annotations

import numpy as np

ALBEDO = 0.25
FAIMAN_U0 = 25.0  # [W/m^2/K]
FAIMAN_U1 = 6.84  # [W/m^2/K per m/s]
INVERTER_ETA_NOM = 0.96
INVERTER_ETA_REF = 0.9637


def pv_geometry(tilt_deg: np.ndarray, azimuth_deg: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-panel constants of the angle-of-incidence projection.

    Returns ``(cos_tilt, sin_tilt_cos_az, sin_tilt_sin_az)`` such that
    ``cos(aoi) = cos_zen*cos_tilt + sin_zen_cos_az*sin_tilt_cos_az
    + sin_zen_sin_az*sin_tilt_sin_az`` with the sun's terms from
    :func:`sun_geometry`.
    """
    tilt, az = np.radians(tilt_deg), np.radians(azimuth_deg)
    return np.cos(tilt), np.sin(tilt) * np.cos(az), np.sin(tilt) * np.sin(az)


def sun_geometry(zenith_deg: np.ndarray, azimuth_deg: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(cos_zen, sin_zen*cos_az, sin_zen*sin_az)`` of the sun's apparent position."""
    zen, az = np.radians(zenith_deg), np.radians(azimuth_deg)
    return np.cos(zen), np.sin(zen) * np.cos(az), np.sin(zen) * np.sin(az)


def pv_ac_power(
    ghi: np.ndarray,
    dni: np.ndarray,
    dhi: np.ndarray,
    sun: tuple[np.ndarray, np.ndarray, np.ndarray],
    temp_air_c: np.ndarray,
    wind_m_s: np.ndarray,
    panel: tuple[np.ndarray, np.ndarray, np.ndarray],
    pv_kwp: np.ndarray,
    inverter_kw: np.ndarray,
    temp_coeff_per_c: np.ndarray,
) -> np.ndarray:
    """Available AC power of PV systems [kW], before curtailment.

    Parameters
    ----------
    ghi, dni, dhi : numeric
        Global horizontal, direct normal and diffuse horizontal irradiance [W/m^2].
    sun : tuple of numeric
        Sun terms from :func:`sun_geometry`.
    temp_air_c, wind_m_s : numeric
        Air temperature [degC] and wind speed [m/s].
    panel : tuple of numeric
        Panel terms from :func:`pv_geometry`.
    pv_kwp, inverter_kw, temp_coeff_per_c : numeric
        DC peak power [kWp], inverter AC rating [kW], power temperature
        coefficient [1/degC].
    """
    cos_zen, szc, szs = sun
    cos_tilt, stc, sts = panel
    cos_aoi = np.clip(cos_zen * cos_tilt + szc * stc + szs * sts, -1.0, 1.0)
    poa = (
        np.maximum(dni * cos_aoi, 0.0)
        + dhi * (1.0 + cos_tilt) * 0.5
        + ghi * ALBEDO * (1.0 - cos_tilt) * 0.5
    )
    temp_cell = temp_air_c + poa / (FAIMAN_U0 + FAIMAN_U1 * wind_m_s)
    pdc = poa * 0.001 * pv_kwp * (1.0 + temp_coeff_per_c * (temp_cell - 25.0))
    return inverter_ac(pdc, inverter_kw)


def inverter_ac(pdc_kw: np.ndarray, inverter_kw: np.ndarray) -> np.ndarray:
    """PVWatts inverter: AC power [kW] from DC power [kW], clipped at the AC rating."""
    pdc0 = inverter_kw / INVERTER_ETA_NOM
    with np.errstate(divide="ignore", invalid="ignore"):
        zeta = pdc_kw / pdc0
        eta = INVERTER_ETA_NOM / INVERTER_ETA_REF * (-0.0162 * zeta - 0.0059 / zeta + 0.9858)
        pac = np.minimum(eta * pdc_kw, inverter_kw)
    return np.where(pdc_kw > 0.0, np.maximum(pac, 0.0), 0.0)


def battery_step(
    p_set_kw: np.ndarray,
    e_kwh: np.ndarray,
    battery_kwh: np.ndarray,
    charge_kw: np.ndarray,
    discharge_kw: np.ndarray,
    charge_eff: np.ndarray,
    discharge_eff: np.ndarray,
    soc_min: np.ndarray,
    soc_max: np.ndarray,
    dt_h: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Battery power [kW] and stored energy after the step [kWh].

    The setpoint (positive = discharge) is clamped to the power ratings and to
    what the SoC window allows in ``dt_h`` hours. Discharging ``p`` kW for
    ``dt_h`` takes ``p*dt_h/discharge_eff`` from storage; charging ``-p`` kW
    adds ``-p*dt_h*charge_eff``.
    """
    p = np.clip(np.nan_to_num(p_set_kw, nan=0.0), -charge_kw, discharge_kw)
    room_out = np.maximum(e_kwh - soc_min * battery_kwh, 0.0) * discharge_eff / dt_h
    room_in = np.maximum(soc_max * battery_kwh - e_kwh, 0.0) / (charge_eff * dt_h)
    p = np.where(p > 0.0, np.minimum(p, room_out), np.maximum(p, -room_in))
    e_new = np.where(p > 0.0, e_kwh - p * dt_h / discharge_eff, e_kwh - p * dt_h * charge_eff)
    e_new = np.clip(e_new, soc_min * battery_kwh, soc_max * battery_kwh)
    return p, e_new


def ev_allocate(avail_kw: np.ndarray, need_kw: np.ndarray) -> np.ndarray:
    """Share each charger's power among its connected sessions (water-filling).

    Parameters
    ----------
    avail_kw : (n_chargers,) array
        Power the charger may draw this step [kW] (its rating, lowered by a setpoint).
    need_kw : (n_chargers, n_connectors) array
        Power each connector's session could still take this step [kW]
        (remaining energy / dt); 0 where no car is connected.

    Returns
    -------
    (n_chargers, n_connectors) array of power given to each session [kW].
    Sessions that need less than an equal share get what they need; the rest
    share the remainder equally.
    """
    n_conn = need_kw.shape[1]
    given = np.zeros_like(need_kw)
    done = need_kw <= 0.0
    left = avail_kw.astype(np.float64).copy()
    for _ in range(n_conn):
        m = (~done).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(m > 0, left / m, 0.0)
        small = ~done & (need_kw <= share[:, None])
        if not small.any():
            break
        # Give the small ones what they need, in connector order (as the kernel does).
        for j in range(n_conn):
            col = small[:, j]
            given[col, j] = need_kw[col, j]
            left[col] -= need_kw[col, j]
        done |= small
    m = (~done).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(m > 0, left / m, 0.0)
    rest = ~done
    given[rest] = np.broadcast_to(share[:, None], given.shape)[rest]
    return given
