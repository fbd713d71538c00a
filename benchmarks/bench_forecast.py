"""Forecast skill on an emulated month: MAE and skill against persistence at 1-24 h ahead.

    python benchmarks/run.py forecast --sites 5 --days 30

The month is an offline simulation of a generated fleet at 15-minute steps:
weather from :class:`scenarios.weather.CloudWeather` (pvlib clear sky times a
correlated cloud field) through the twin's PV model
(:func:`optimizer.forecast.pv_forecast`); site load from
:class:`scenarios.loads.LoadProfiles` times a slow random level (AR(1), 12 h,
10 %) standing for weather and occupancy; EV arrivals as a Poisson process
with morning and evening peaks. 28 days of history come before the month.

Every hour of the month each site is forecast with :mod:`optimizer.forecast`
(PV, load) and :mod:`optimizer.ev_forecast` (EV arrivals) from the telemetry
before that hour only, for lead times 1..24 h. Errors are
15-minute mean powers per site; PV is scored where the clear-sky output is
positive (daylight). Persistence holds the last measured value; for PV the
same time a day earlier (``diurnal``) is reported too. Skill = 1 - MAE /
MAE(persistence).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from optimizer.ev_forecast import ev_arrival_stats, ev_forecast
from optimizer.forecast import (
    clear_sky_index_by_time,
    clear_sky_pv_forecast,
    load_deviation_forecast,
    load_forecast,
    load_profile,
    pv_forecast,
    pv_index_forecast,
    recent_clear_sky_index,
)
from scenarios.loads import LoadProfiles
from scenarios.weather import CloudWeather
from twin.generator import generate_fleet
from twin.profiles import day_type, time_bin

STEP_S = 900.0
START_S = 1_775_001_600.0  # 2026-04-01 00:00 UTC; the scored month starts 28 days later
HORIZONS_H = (1, 2, 3, 6, 12, 18, 24)


def emulate(n_sites: int, days: float, seed: int, history_days: int = 28
            ) -> dict[str, Any]:
    """Measured PV, clear-sky PV, load and EV arrivals per site at 15-minute steps."""
    rng = np.random.default_rng(seed)
    fleet = generate_fleet(n_sites=n_sites, seed=seed)
    n = int((history_days + days + 1) * 86400 / STEP_S)
    times = START_S + np.arange(n) * STEP_S
    w = CloudWeather(fleet.lat_deg, fleet.lon_deg, STEP_S, rng).generate(times)
    mid = times + STEP_S / 2
    pv_kw, _ = pv_forecast(fleet, mid, w["ghi"], w["dni"], w["dhi"], w["temp_air_c"],
                           w["wind_m_s"], w["zenith_deg"], w["azimuth_deg"])
    clear_kw, _ = clear_sky_pv_forecast(fleet, mid)
    frac = LoadProfiles(fleet.timezone, rng).generate(times)
    base_load = load_forecast(fleet, frac)
    phi = np.exp(-STEP_S / (12 * 3600.0))
    level = np.zeros((n, n_sites))
    for k in range(1, n):
        level[k] = phi * level[k - 1] + np.sqrt(1 - phi ** 2) * 0.1 * rng.standard_normal(n_sites)
    load_kw = base_load * (1.0 + level)
    offsets = np.round(fleet.lon_deg / 15.0) * 3600.0
    local_h = np.mod((times[:, None] + offsets[None, :]) / 3600.0, 24.0)
    weekday = day_type(times[:, None] + offsets[None, :]) == 0
    rate_h = 0.2 + 1.5 * np.exp(-0.5 * ((local_h - 8.5) / 1.2) ** 2) \
        + 2.0 * np.exp(-0.5 * ((local_h - 18.0) / 1.5) ** 2)
    rate_h *= np.where(weekday, 1.0, 0.6)
    ev_arrivals = rng.poisson(rate_h * STEP_S / 3600.0)
    return {"times": times, "pv": pv_kw, "clear": clear_kw, "load": load_kw,
            "ev": ev_arrivals.astype(float), "offsets": offsets,
            "history_steps": int(history_days * 86400 / STEP_S), "days": days,
            "peak_clear": clear_kw.max(axis=0)}


def evaluate(data: dict[str, Any]) -> dict[str, Any]:
    """Forecast every hour of the scored period; MAE and skill per lead time."""
    times, pv, clear, load, ev = (data[k] for k in ("times", "pv", "clear", "load", "ev"))
    offsets = data["offsets"]
    n_sites = pv.shape[1]
    per_h = int(3600 / STEP_S)
    h0 = data["history_steps"]
    origins = np.arange(h0, h0 + int(data["days"] * 24) * per_h, per_h)
    lead = np.arange(1, 24 * per_h + 1)  # steps ahead
    err: dict[str, dict[int, list[np.ndarray]]] = {
        k: {h: [] for h in HORIZONS_H} for k in ("pv", "pv_persist", "pv_diurnal", "load",
                                                 "load_persist", "ev", "ev_persist")}
    profiles: dict[int, list[np.ndarray]] = {}
    ev_stats: dict[int, list[Any]] = {}
    refs: dict[int, np.ndarray] = {}
    min_clear = 0.05 * data["peak_clear"]
    for i0 in origins.tolist():
        t0 = times[i0]
        day = i0 // (24 * per_h)
        if day not in profiles:  # refit the profiles and EV statistics once a day
            lo = max(0, i0 - 28 * 24 * per_h)
            profiles[day] = [load_profile(times[lo:i0], load[lo:i0, s], STEP_S, offsets[s])
                             for s in range(n_sites)]
            ev_stats[day] = []
            for s in range(n_sites):
                arrivals = np.repeat(times[lo:i0] + STEP_S / 2, ev[lo:i0, s].astype(int))
                ev_stats[day].append(ev_arrival_stats(arrivals, np.ones(len(arrivals)),
                                                      times[lo], t0, offsets[s]))
        tgt = i0 + lead
        # PV: reference = clear sky x the last 7 days' index per time of day; the index
        # against that reference over the last 2 h relaxes to 1 with the lead time
        if day not in refs:
            lo7 = i0 - 7 * 24 * per_h
            refs[day] = clear_sky_index_by_time(times[lo7:i0], pv[lo7:i0], clear[lo7:i0],
                                                STEP_S, min_clear)
        kbin = refs[day]
        ref_now = clear[i0 - 7:i0 + 1] * kbin[time_bin(times[i0 - 7:i0 + 1], STEP_S)]
        k_now = recent_clear_sky_index(pv[i0 - 7:i0 + 1], ref_now, min_clear)
        ref_tgt = clear[tgt] * kbin[time_bin(times[tgt], STEP_S)]
        f_pv = pv_index_forecast(ref_tgt, (lead * STEP_S).astype(float), k_now,
                                  np.ones(n_sites))
        f_load = np.stack([load_deviation_forecast(profiles[day][s], t0, times[tgt],
                                                   load[i0:i0 + 1, s],
                                                   utc_offset_s=offsets[s])[:, 0]
                           for s in range(n_sites)], axis=1)
        for h in HORIZONS_H:
            j = h * per_h - 1  # index of the step ending h hours ahead
            t = tgt[j]
            day_mask = clear[t] > 0
            err["pv"][h].append(np.abs(f_pv[j] - pv[t])[day_mask])
            err["pv_persist"][h].append(np.abs(pv[i0] - pv[t])[day_mask])
            err["pv_diurnal"][h].append(np.abs(pv[t - 24 * per_h] - pv[t])[day_mask])
            err["load"][h].append(np.abs(f_load[j] - load[t]))
            err["load_persist"][h].append(np.abs(load[i0] - load[t]))
            # EV: arrivals in the hour ending h hours ahead
            hour = slice(t - per_h + 1, t + 1)
            actual = ev[hour].sum(axis=0)
            expect = np.array([ev_forecast(ev_stats[day][s], times[hour], STEP_S,
                                           offsets[s])[0].sum() for s in range(n_sites)])
            err["ev"][h].append(np.abs(expect - actual))
            err["ev_persist"][h].append(np.abs(ev[i0 - per_h + 1:i0 + 1].sum(axis=0) - actual))
    mae = {k: {h: float(np.mean(np.concatenate(v[h]))) for h in HORIZONS_H}
           for k, v in err.items()}

    def block(name: str, ref: str, unit: str) -> dict[str, Any]:
        skill = {h: round(1.0 - mae[name][h] / mae[ref][h], 3) for h in HORIZONS_H}
        return {f"mae_{unit}": {h: round(mae[name][h], 3) for h in HORIZONS_H},
                f"persistence_mae_{unit}": {h: round(mae[ref][h], 3) for h in HORIZONS_H},
                "skill": skill, "min_skill": min(skill.values())}

    pv_block = block("pv", "pv_persist", "kw")
    pv_block["skill_vs_diurnal"] = {h: round(1.0 - mae["pv"][h] / mae["pv_diurnal"][h], 3)
                                    for h in HORIZONS_H}
    return {"pv": pv_block, "load": block("load", "load_persist", "kw"),
            "ev": block("ev", "ev_persist", "arrivals"), "origins": len(origins)}


def run(n_sites: int = 5, days: float = 30.0, seed: int = 11) -> dict[str, Any]:
    t_wall = time.perf_counter()
    data = emulate(n_sites, days, seed)
    out = evaluate(data)
    out.update({"sites": n_sites, "days": days, "step_s": STEP_S,
                "horizons_h": list(HORIZONS_H),
                "pv_skill_positive_1_24h": out["pv"]["min_skill"] > 0,
                "load_skill_positive_1_24h": out["load"]["min_skill"] > 0,
                "wall_s": round(time.perf_counter() - t_wall, 1)})
    return out


def main(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="forecast", description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=5)
    ap.add_argument("--days", type=float, default=30.0, help="scored days")
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args(argv)
    return {"benchmark": "forecast", **run(a.sites, a.days, a.seed)}
