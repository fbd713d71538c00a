"""The scenario's fleet: generated or read from a file, then edited.

Edits, in this order: remove sites, scale batteries (energy and power), add
EV chargers. An edit that names an unknown site is refused.
"""

from __future__ import annotations

from typing import Any

from scenarios.schema import FleetSpec
from twin.fleet import Fleet, read_fleet
from twin.generator import generate_fleet


def build_fleet(spec: FleetSpec) -> Fleet:
    """Build the fleet a scenario describes.

    Raises
    ------
    ValueError
        When an edit names a site that is not in the fleet, or the result has no site.
    """
    if spec.file is not None:
        fleet = read_fleet(spec.file)
    else:
        gen = spec.generator
        assert gen is not None
        fleet = generate_fleet(n_sites=gen.n_sites, seed=gen.seed, capacity_mw=gen.capacity_mw)
    edits = spec.edits
    add = edits.add_ev_chargers
    if edits.battery_scale == 1.0 and not edits.remove_sites and add.per_site == 0:
        return fleet
    recs = fleet.to_records()
    known = set(fleet.site_row)
    unknown = sorted(set(edits.remove_sites) - known)
    if add.sites != "all":
        unknown += sorted(set(add.sites) - known)
    if unknown:
        raise ValueError(f"fleet.edits: unknown site(s) {unknown[:10]}")
    removed = set(edits.remove_sites)
    sites = [s for s in recs["sites"] if s["id"] not in removed]
    if not sites:
        raise ValueError("fleet.edits.remove_sites removes every site")
    devices: list[dict[str, Any]] = []
    for d in recs["devices"]:
        if d["site_id"] in removed:
            continue
        if d["type"] == "battery" and edits.battery_scale != 1.0:
            if edits.battery_scale == 0.0:
                continue
            d = {**d, "battery_kwh": d["battery_kwh"] * edits.battery_scale,
                 "charge_kw": d["charge_kw"] * edits.battery_scale,
                 "discharge_kw": d["discharge_kw"] * edits.battery_scale}
        devices.append(d)
    if add.per_site:
        targets = [s["id"] for s in sites] if add.sites == "all" else list(add.sites)
        for sid in targets:
            for k in range(add.per_site):
                devices.append({"id": f"{sid}-EVX{k + 1:03d}", "site_id": sid,
                                "type": "ev_charger", "ev_max_kw": add.max_kw,
                                "ev_connectors": add.connectors})
    used = {s["feeder_id"] for s in sites}
    feeders = [f for f in recs["feeders"] if f["id"] in used]
    return Fleet.from_records(sites, devices, feeders)
