"""Anomaly detection on an emulator run with injected faults: precision, recall, time to detect.

    python benchmarks/run.py anomalies --sites 20 --days 2 --faults 6

The device emulator (:class:`adapters.emulator.Emulator`, its twin physics
without a broker) runs a generated fleet at ``--step`` seconds under a cloudy
sky (per-site clearness that wanders between overcast and clear), with
batteries following random setpoints that change every 15 minutes. Faults
start at random daytime moments and last to the end: PV strings down to 50 %
(``pv_derate``), batteries that ignore setpoints (``ignore_setpoint``) and
frozen meters on PV and batteries (``stuck_meter``). The same
:class:`~api.alerts.watch.FleetWatch` and
:class:`~api.alerts.manager.AlertManager` as the live service (on a SQLite
registry) watch the published measurements.

Scored per alert of an anomaly kind (setpoint deviation, PV shortfall, frozen
meter, SoC drift): an alert is a true positive when its device has a fault
that started before the alert opened. Precision = TP / alerts; recall =
faults with at least one alert / faults; time to detect = alert open time
minus fault start (median and max over detected faults).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from adapters.emulator import Emulator, weather_inputs
from adapters.registry import open_registry
from api.alerts.manager import AlertManager
from api.alerts.watch import ANOMALY_KINDS, FleetObservation, FleetWatch
from twin.fleet import BATTERY, PV, Fleet
from twin.generator import generate_fleet
from twin.state import StepInputs

START_S = 1_780_272_000.0  # 2026-06-01 00:00 UTC


class CloudySky:
    """Per-site clearness ``k`` in [0.15, 1] (AR(1), mean 0.75) applied to clear-sky irradiance:
    beam scaled by ``k``, diffuse raised by part of the lost beam."""

    def __init__(self, n_sites: int, seed: int, step_s: float):
        self.rng = np.random.default_rng(seed)
        self.k = np.full(n_sites, 0.8)
        self.phi = float(np.exp(-step_s / 1800.0))

    def __call__(self, fleet: Fleet, t_s: float) -> StepInputs:
        x = weather_inputs(fleet, t_s)
        noise = self.rng.normal(0.0, 0.12, len(self.k)) * np.sqrt(1 - self.phi ** 2)
        self.k = np.clip(0.75 + self.phi * (self.k - 0.75) + noise, 0.15, 1.0)
        beam_h = np.nan_to_num(x.dni * np.cos(np.radians(x.zenith_deg))).clip(min=0)
        x.dni = x.dni * self.k
        x.dhi = x.dhi + 0.5 * (1.0 - self.k) * beam_h
        x.ghi = x.dni * np.cos(np.radians(x.zenith_deg)).clip(min=0) + x.dhi
        return x


def plan_faults(fleet: Fleet, n_each: int, days: float, rng: np.random.Generator
                ) -> list[dict[str, Any]]:
    """Fault list: device row, kind, start [Unix s] (daytime, 07-14 UTC, after the first 12 h)."""
    pv = np.flatnonzero(fleet.device_type == PV)
    bat = np.flatnonzero(fleet.device_type == BATTERY)
    n_bat = min(len(bat), 2 * n_each)
    bat_pick = rng.choice(bat, n_bat, replace=False)
    pv_pick = rng.choice(pv, 2 * n_each, replace=False)
    rows = {"pv_derate": pv_pick[:n_each].tolist(),
            "ignore_setpoint": bat_pick[:n_bat // 2].tolist(),
            "stuck_meter": pv_pick[n_each:n_each + (n_each + 1) // 2].tolist()
            + bat_pick[n_bat // 2:n_bat // 2 + n_each // 2].tolist()}
    out = []
    n_days = max(1, int(days) - 1)
    for kind, rs in rows.items():
        for r in rs:
            day = int(rng.integers(0, n_days)) + (1 if days >= 2 else 0)
            start = START_S + day * 86400 + float(rng.uniform(7, 14)) * 3600
            out.append({"row": int(r), "kind": kind, "start_s": start})
    return out


def run(n_sites: int = 20, days: float = 2.0, n_faults: int = 6, step_s: float = 60.0,
        seed: int = 7, registry_dir: Path | None = None) -> dict[str, Any]:
    """One scored run; returns the figures."""
    t_wall = time.perf_counter()
    rng = np.random.default_rng(seed)
    fleet = generate_fleet(n_sites=n_sites, seed=seed)
    emu = Emulator(fleet, "mqtt://127.0.0.1:1", interval_s=step_s, seed=seed)
    emu.weather = CloudySky(fleet.n_sites, seed, step_s)
    faults = plan_faults(fleet, n_faults, days, rng)
    bat = np.flatnonzero(fleet.device_type == BATTERY)
    f = fleet.device_float
    with tempfile.TemporaryDirectory() as tmp:
        reg = open_registry(f"sqlite:///{Path(registry_dir or tmp) / 'bench.db'}")
        manager = AlertManager(reg)
        watch = FleetWatch(fleet)
        opened: list[dict[str, Any]] = []
        n_steps = int(days * 86400 / step_s)
        pending = sorted(faults, key=lambda x: x["start_s"])
        for k in range(1, n_steps + 1):
            now = START_S + k * step_s
            while pending and pending[0]["start_s"] <= now:
                ft = pending.pop(0)
                emu.faults.inject(ft["row"], ft["kind"])
            if k % max(1, int(900 / step_s)) == 1:  # new battery setpoints every 15 min
                share = rng.uniform(-0.6, 0.6, len(bat))
                rating = np.where(share > 0, f["discharge_kw"][bat], f["charge_kw"][bat])
                emu.setpoint[bat] = np.round(share * rating, 1)
                emu.valid_until_s[bat] = now + 3600.0
            emu.tick(now)
            soc = np.where(fleet.device_type == BATTERY, emu.twin.soc(), np.nan)
            obs = FleetObservation(now, np.round(emu.measured_p_kw, 4), np.round(soc, 5),
                              emu.setpoint.copy())
            out = manager.evaluate(now, watch.observe(obs))
            opened.extend(a for a in out["opened"] if a["kind"] in ANOMALY_KINDS)
        reg.close()
    return score(faults, opened, fleet) | {
        "sites": n_sites, "devices": fleet.n_devices, "days": days, "step_s": step_s,
        "wall_s": round(time.perf_counter() - t_wall, 1)}


def score(faults: list[dict[str, Any]], alerts: list[dict[str, Any]], fleet: Fleet
          ) -> dict[str, Any]:
    """Precision, recall and time to detect of anomaly alerts against the injected faults."""
    start = {fleet.device_id[ft["row"]]: ft for ft in faults}
    tp = [a for a in alerts if a["device_id"] in start
          and a["created_s"] >= start[a["device_id"]]["start_s"]]
    first: dict[str, float] = {}
    for a in tp:
        first[a["device_id"]] = min(first.get(a["device_id"], np.inf), a["created_s"])
    ttd = np.array([first[d] - start[d]["start_s"] for d in first])
    by_kind: dict[str, dict[str, int]] = {}
    for d, ft in start.items():
        k = by_kind.setdefault(ft["kind"], {"faults": 0, "detected": 0})
        k["faults"] += 1
        k["detected"] += d in first
    return {
        "precision": round(len(tp) / len(alerts), 4) if alerts else None,
        "recall": round(len(first) / len(faults), 4) if faults else None,
        "faults": len(faults), "alerts": len(alerts), "true_alerts": len(tp),
        "false_alerts": len(alerts) - len(tp),
        "false_alert_kinds": sorted({a["kind"] for a in alerts if a not in tp}),
        "false_alert_devices": sorted({a["device_id"] for a in alerts if a not in tp})[:10],
        "ttd_median_s": float(np.median(ttd)) if len(ttd) else None,
        "ttd_max_s": float(ttd.max()) if len(ttd) else None,
        "by_fault": by_kind,
        "alert_kinds": sorted({a["kind"] for a in alerts}),
    }


def main(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="anomalies", description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=20)
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--faults", type=int, default=6, help="faults of each kind")
    ap.add_argument("--step", type=float, default=60.0, help="telemetry step [s]")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    return {"benchmark": "anomalies", **run(a.sites, a.days, a.faults, a.step, a.seed)}
