"""Deterministic fleet generator.

``generate_fleet()`` with its defaults reproduces the reference fleet of the
original EcoGrid plan: 342 sites, 2,450 MW of installed capacity (PV peak plus
battery discharge power), about 10,000 devices. Three site archetypes make the
mix:

* utility PV plants (about 11 % of sites): tens of MWp in central-inverter
  blocks, a few battery containers and an auxiliary load, mostly in the sunny
  south of Europe;
* commercial rooftops (about 74 %): string inverters, a battery, some EV
  chargers and the building's load;
* charging hubs (about 15 %): dozens of EV chargers, a canopy PV array, a
  buffer battery and the hub's own load.

Sites are placed around real European load centres with the matching time zone;
neighbouring commercial sites and hubs share a feeder (a transformer with its
own import and export limit). The same seed always gives the same fleet; a
larger ``n_sites`` scales the mix (and the capacity) for benchmarks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.fleet import Fleet

REFERENCE_SITES = 342
REFERENCE_CAPACITY_MW = 2450.0

# (name, lat, lon, time zone, weight for utility PV, weight for commercial and hubs)
_REGIONS: tuple[tuple[str, float, float, str, float, float], ...] = (
    ("Munich", 48.14, 11.58, "Europe/Berlin", 0.05, 0.16),
    ("Ruhr", 51.45, 7.01, "Europe/Berlin", 0.02, 0.18),
    ("Brandenburg", 52.40, 13.06, "Europe/Berlin", 0.12, 0.06),
    ("Utrecht", 52.09, 5.12, "Europe/Amsterdam", 0.03, 0.14),
    ("Andalusia", 37.39, -5.98, "Europe/Madrid", 0.30, 0.08),
    ("Castile", 39.86, -4.02, "Europe/Madrid", 0.20, 0.08),
    ("Apulia", 41.12, 16.87, "Europe/Rome", 0.16, 0.06),
    ("Lombardy", 45.46, 9.19, "Europe/Rome", 0.02, 0.14),
    ("Occitania", 43.60, 1.44, "Europe/Paris", 0.10, 0.10),
)

UTILITY, COMMERCIAL, HUB = "utility", "commercial", "hub"
_ARCHETYPE_SHARE = {UTILITY: 38 / 342, COMMERCIAL: 252 / 342, HUB: 52 / 342}


def generate_fleet(
    n_sites: int = REFERENCE_SITES,
    seed: int = 0,
    capacity_mw: float | None = None,
) -> Fleet:
    """Generate a plausible fleet, deterministically for a given seed.

    Parameters
    ----------
    n_sites : int
        Number of sites. 342 gives the reference fleet (about 10,000 devices);
        devices scale about linearly with sites.
    seed : int
        Seed of the random generator; the same seed gives the same fleet.
    capacity_mw : float, optional
        Installed capacity to hit exactly [MW] (PV peak plus battery discharge
        power). Defaults to 2,450 MW scaled by ``n_sites / 342``.
    """
    if n_sites < 1:
        raise ValueError(f"n_sites must be at least 1, got {n_sites}")
    rng = np.random.default_rng(seed)
    if capacity_mw is None:
        capacity_mw = REFERENCE_CAPACITY_MW * n_sites / REFERENCE_SITES

    archetypes = _archetypes(n_sites, rng)
    sites: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    for i, kind in enumerate(archetypes):
        site_id = f"S{i + 1:05d}" if n_sites > 9999 else f"S{i + 1:04d}"
        region = _pick_region(kind, rng)
        sites.append(_site(site_id, kind, region, rng))
        devices.extend(_devices(site_id, kind, rng))

    _scale_to_capacity(devices, capacity_mw * 1000.0)
    _set_site_limits(sites, devices)
    feeders = _assign_feeders(sites, archetypes, rng)
    return Fleet.from_records(sites, devices, feeders)


def _archetypes(n_sites: int, rng: np.random.Generator) -> list[str]:
    n_util = max(1, round(n_sites * _ARCHETYPE_SHARE[UTILITY])) if n_sites >= 3 else 1
    n_hub = round(n_sites * _ARCHETYPE_SHARE[HUB]) if n_sites >= 3 else 0
    n_com = n_sites - n_util - n_hub
    kinds = [UTILITY] * n_util + [COMMERCIAL] * n_com + [HUB] * n_hub
    return [kinds[i] for i in rng.permutation(n_sites)]


def _pick_region(kind: str, rng: np.random.Generator) -> tuple[str, float, float, str]:
    weights = np.array([r[4] if kind == UTILITY else r[5] for r in _REGIONS])
    name, lat, lon, tz, _, _ = _REGIONS[rng.choice(len(_REGIONS), p=weights / weights.sum())]
    return name, lat, lon, tz


def _site(site_id: str, kind: str, region: tuple[str, float, float, str],
          rng: np.random.Generator) -> dict[str, Any]:
    name, lat, lon, tz = region
    spread = 0.9 if kind == UTILITY else 0.35  # degrees around the region's centre
    label = {UTILITY: "Solar Park", COMMERCIAL: "Rooftop", HUB: "Charging Hub"}[kind]
    return {
        "id": site_id,
        "name": f"{name} {label} {site_id}",
        "lat_deg": round(lat + rng.normal(0.0, spread / 2), 5),
        "lon_deg": round(lon + rng.normal(0.0, spread / 2), 5),
        "timezone": tz,
        "import_limit_kw": 0.0,  # set from the devices in _set_site_limits
        "export_limit_kw": 0.0,
        "status": "active",
        "_kind": kind,
        "_region": name,
    }


def _pv(device_id: str, site_id: str, kwp: float, dc_ac: float, tilt: float, azimuth: float,
        rng: np.random.Generator) -> dict[str, Any]:
    return {
        "id": device_id, "site_id": site_id, "type": "pv",
        "pv_kwp": kwp, "inverter_kw": kwp / dc_ac,
        "tilt_deg": tilt, "azimuth_deg": azimuth,
        "temp_coeff_per_c": round(float(rng.uniform(-0.0045, -0.0030)), 5),
    }


def _battery(device_id: str, site_id: str, power_kw: float, hours: float) -> dict[str, Any]:
    return {
        "id": device_id, "site_id": site_id, "type": "battery",
        "battery_kwh": power_kw * hours, "charge_kw": power_kw, "discharge_kw": power_kw,
        "charge_eff": 0.95, "discharge_eff": 0.95, "soc_min": 0.1, "soc_max": 0.95,
    }


def _ev(device_id: str, site_id: str, max_kw: float, connectors: int) -> dict[str, Any]:
    return {"id": device_id, "site_id": site_id, "type": "ev_charger",
            "ev_max_kw": max_kw, "ev_connectors": connectors}


def _load(device_id: str, site_id: str, peak_kw: float, profile: str) -> dict[str, Any]:
    return {"id": device_id, "site_id": site_id, "type": "load",
            "load_peak_kw": peak_kw, "load_profile": profile}


def _devices(site_id: str, kind: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if kind == UTILITY:
        plant_kwp = float(rng.uniform(20_000, 70_000))
        n_inv = max(4, round(plant_kwp / rng.uniform(1200, 1800)))
        tilt = float(rng.uniform(20, 35))
        for k in range(n_inv):
            out.append(_pv(f"{site_id}-PV{k + 1:03d}", site_id, plant_kwp / n_inv, 1.25, tilt,
                           180.0, rng))
        n_bat = int(rng.integers(2, 7))
        for k in range(n_bat):
            out.append(_battery(f"{site_id}-BAT{k + 1:02d}", site_id, 2000.0, 2.0))
        out.append(_load(f"{site_id}-LOAD01", site_id, round(plant_kwp * 0.004, 1), "flat"))
    elif kind == COMMERCIAL:
        roof_kwp = float(rng.lognormal(np.log(900), 0.5))
        n_inv = max(2, round(roof_kwp / rng.uniform(55, 80)))
        azimuth = float(rng.choice([90.0, 135.0, 180.0, 225.0, 270.0]))
        for k in range(n_inv):
            out.append(_pv(f"{site_id}-PV{k + 1:03d}", site_id, roof_kwp / n_inv, 1.15,
                           float(rng.uniform(5, 25)), azimuth, rng))
        for k in range(int(rng.integers(1, 3))):
            out.append(_battery(f"{site_id}-BAT{k + 1:02d}", site_id,
                                float(rng.choice([100.0, 150.0, 250.0])), 2.0))
        for k in range(int(rng.integers(0, 9))):
            out.append(_ev(f"{site_id}-EV{k + 1:03d}", site_id, 22.0, 2))
        for k in range(int(rng.integers(1, 4))):
            profile = "industrial" if rng.random() < 0.3 else "commercial"
            out.append(_load(f"{site_id}-LOAD{k + 1:02d}", site_id,
                             round(float(rng.uniform(80, 400)), 1), profile))
    else:  # charging hub
        for k in range(int(rng.integers(30, 61))):
            fast = rng.random() < 0.4
            out.append(_ev(f"{site_id}-EV{k + 1:03d}", site_id, 150.0 if fast else 50.0,
                           1 if fast else 2))
        for k in range(4):
            out.append(_pv(f"{site_id}-PV{k + 1:03d}", site_id, float(rng.uniform(80, 160)),
                           1.1, 10.0, 180.0, rng))
        for k in range(2):
            out.append(_battery(f"{site_id}-BAT{k + 1:02d}", site_id, 500.0, 1.5))
        out.append(_load(f"{site_id}-LOAD01", site_id, round(float(rng.uniform(30, 90)), 1),
                         "flat"))
    return out


def _scale_to_capacity(devices: list[dict[str, Any]], target_kw: float) -> None:
    """Scale PV so that PV kWp plus battery discharge kW hits ``target_kw`` exactly."""
    pv = [d for d in devices if d["type"] == "pv"]
    battery_kw = sum(d["discharge_kw"] for d in devices if d["type"] == "battery")
    pv_kwp = sum(d["pv_kwp"] for d in pv)
    factor = max(target_kw - battery_kw, 0.0) / pv_kwp if pv_kwp > 0 else 1.0
    for d in pv:
        dc_ac = d["pv_kwp"] / d["inverter_kw"]
        d["pv_kwp"] = d["pv_kwp"] * factor
        d["inverter_kw"] = d["pv_kwp"] / dc_ac


def _set_site_limits(sites: list[dict[str, Any]], devices: list[dict[str, Any]]) -> None:
    """Grid connection sized like a real one: export below PV AC, import for peak demand."""
    by_site: dict[str, dict[str, float]] = {}
    for d in devices:
        acc = by_site.setdefault(d["site_id"], {"pv_ac": 0.0, "bat": 0.0, "ev": 0.0, "load": 0.0})
        if d["type"] == "pv":
            acc["pv_ac"] += d["inverter_kw"]
        elif d["type"] == "battery":
            acc["bat"] += d["charge_kw"]
        elif d["type"] == "ev_charger":
            acc["ev"] += d["ev_max_kw"]
        else:
            acc["load"] += d["load_peak_kw"]
    for s in sites:
        acc = by_site.get(s["id"], {"pv_ac": 0.0, "bat": 0.0, "ev": 0.0, "load": 0.0})
        if s["_kind"] == UTILITY:
            s["export_limit_kw"] = round(0.9 * (acc["pv_ac"] + acc["bat"]), 1)
            s["import_limit_kw"] = round(acc["bat"] + acc["load"] * 1.2, 1)
        else:
            s["export_limit_kw"] = round(0.7 * (acc["pv_ac"] + acc["bat"]), 1)
            s["import_limit_kw"] = round(1.1 * acc["load"] + 0.7 * acc["ev"] + 0.5 * acc["bat"],
                                         1)


def _assign_feeders(sites: list[dict[str, Any]], archetypes: list[str],
                    rng: np.random.Generator) -> list[dict[str, Any]]:
    """Group neighbouring non-utility sites of a region into feeders of 2-6 sites."""
    feeders: list[dict[str, Any]] = []
    by_region: dict[str, list[dict[str, Any]]] = {}
    for s, kind in zip(sites, archetypes, strict=True):
        if kind == UTILITY:
            fid = f"F-{s['id']}"
            feeders.append({"id": fid, "import_limit_kw": s["import_limit_kw"],
                            "export_limit_kw": s["export_limit_kw"]})
            s["feeder_id"] = fid
        else:
            by_region.setdefault(s["_region"], []).append(s)
    for region in sorted(by_region):
        members = sorted(by_region[region], key=lambda s: (s["lat_deg"], s["lon_deg"]))
        i = 0
        while i < len(members):
            group = members[i:i + int(rng.integers(2, 7))]
            i += len(group)
            fid = f"F-{group[0]['id']}"
            feeders.append({
                "id": fid,
                "import_limit_kw": round(0.75 * sum(s["import_limit_kw"] for s in group), 1),
                "export_limit_kw": round(0.75 * sum(s["export_limit_kw"] for s in group), 1),
            })
            for s in group:
                s["feeder_id"] = fid
    for s in sites:
        del s["_kind"], s["_region"]
    return feeders
