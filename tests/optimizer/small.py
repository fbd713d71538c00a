"""Tiny hand-made fleets and forecasts for the optimizer tests."""

from __future__ import annotations

import numpy as np

from optimizer import EvSessions, Forecast
from twin.fleet import Fleet

T0 = 1_717_200_000.0  # 2024-06-01 00:00 UTC


def site(sid: str, import_kw: float = 1e4, export_kw: float = 1e4,
         feeder: str | None = None) -> dict:
    rec = {"id": sid, "lat_deg": 48.0, "lon_deg": 11.0, "import_limit_kw": import_kw,
           "export_limit_kw": export_kw}
    if feeder is not None:
        rec["feeder_id"] = feeder
    return rec


def battery(did: str, sid: str, kwh: float = 10.0, kw: float = 5.0, eff: float = 1.0,
            soc_min: float = 0.0, soc_max: float = 1.0) -> dict:
    return {"id": did, "site_id": sid, "type": "battery", "battery_kwh": kwh,
            "charge_kw": kw, "discharge_kw": kw, "charge_eff": eff, "discharge_eff": eff,
            "soc_min": soc_min, "soc_max": soc_max}


def pv(did: str, sid: str, kwp: float = 100.0) -> dict:
    return {"id": did, "site_id": sid, "type": "pv", "pv_kwp": kwp, "inverter_kw": kwp,
            "tilt_deg": 20.0, "azimuth_deg": 180.0, "temp_coeff_per_c": -0.004}


def ev(did: str, sid: str, kw: float = 10.0, connectors: int = 1) -> dict:
    return {"id": did, "site_id": sid, "type": "ev_charger", "ev_max_kw": kw,
            "ev_connectors": connectors}


def load(did: str, sid: str, peak_kw: float = 100.0) -> dict:
    return {"id": did, "site_id": sid, "type": "load", "load_peak_kw": peak_kw,
            "load_profile": "flat"}


def forecast(n_steps: int, n_sites: int, pv_kw: float | np.ndarray = 0.0,
             load_kw: float | np.ndarray = 0.0, price: float | np.ndarray = 100.0,
             feed_in: float | np.ndarray | None = None, co2: float = 300.0,
             sessions: EvSessions | None = None) -> Forecast:
    def grid(x: float | np.ndarray) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        return np.broadcast_to(arr, (n_steps, n_sites)).copy()

    return Forecast(pv_kw=grid(pv_kw), load_kw=grid(load_kw),
                    import_price_eur_per_mwh=grid(price),
                    feed_in_eur_per_mwh=grid(0.0 if feed_in is None else feed_in),
                    co2_kg_per_mwh=grid(co2), ev_sessions=sessions or EvSessions())


def fleet(sites: list[dict], devices: list[dict], feeders: list[dict] = ()) -> Fleet:
    return Fleet.from_records(sites, devices, list(feeders))
