"""Twin step throughput: device-steps per second, numba kernel vs numpy reference.

    python benchmarks/run.py twin --devices 1000000

Builds a generated fleet of about ``--devices`` devices (the reference mix,
scaled by sites), puts the sun up at every site (the PV path is the costly
one), gives every battery and PV a setpoint and some EVs a session, then times
whole-fleet steps of both backends in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from twin.fleet import BATTERY, EV_CHARGER, PV
from twin.generator import REFERENCE_SITES, generate_fleet
from twin.model import Twin
from twin.state import StepInputs

DEVICES_PER_SITE = 10_000 / REFERENCE_SITES  # 10,000 devices give the 342-site reference fleet


def build(devices: int, seed: int = 0):
    n_sites = max(1, round(devices / DEVICES_PER_SITE))
    fleet = generate_fleet(n_sites=n_sites, seed=seed)
    rng = np.random.default_rng(seed)
    inputs = StepInputs.constant(fleet.n_sites, ghi=700.0, dni=650.0, dhi=120.0,
                                 zenith_deg=35.0, azimuth_deg=170.0, temp_air_c=22.0,
                                 load_frac=0.6)
    inputs.ghi[:] = rng.uniform(500.0, 900.0, fleet.n_sites)
    sp = np.full(fleet.n_devices, np.nan)
    bat = fleet.device_type == BATTERY
    sp[bat] = rng.uniform(-1.0, 1.0, bat.sum()) * fleet.discharge_kw[bat] * 0.3
    pv = fleet.device_type == PV
    sp[pv] = np.where(rng.random(pv.sum()) < 0.2, 0.5 * fleet.inverter_kw[pv], np.nan)
    return fleet, inputs, sp


def time_steps(twin: Twin, inputs: StepInputs, sp: np.ndarray, min_s: float) -> tuple[int, float]:
    twin.step(0.0, 1.0, inputs, sp)  # compile / warm up
    steps, t0 = 0, time.perf_counter()
    while True:
        twin.step(float(steps), 1.0, inputs, sp)
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_s and steps >= 3:
            return steps, elapsed


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="benchmarks/run.py twin")
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds each")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    fleet, inputs, sp = build(args.devices, args.seed)
    build_s = time.perf_counter() - t0
    n = fleet.n_devices
    ev = np.flatnonzero(fleet.device_type == EV_CHARGER)
    results = {}
    for backend in ("numba", "numpy"):
        twin = Twin(fleet, backend)
        twin.plug_in(ev, np.full(len(ev), 40.0), np.full(len(ev), 1e12))
        steps, elapsed = time_steps(twin, inputs, sp, args.seconds)
        results[backend] = steps * n / elapsed
        if backend == "numba":
            state_bytes = twin.state.nbytes + sp.nbytes
            params_bytes = twin.params.nbytes
    import numba

    return {
        "benchmark": "twin",
        "devices": n,
        "sites": fleet.n_sites,
        "device_steps_per_s": round(results["numba"]),
        "numpy_device_steps_per_s": round(results["numpy"]),
        "speedup_vs_numpy": round(results["numba"] / results["numpy"], 1),
        "state_bytes_per_device": round(state_bytes / n, 1),
        "params_bytes_per_device": round(params_bytes / n, 1),
        "threads": numba.get_num_threads(),
        "fleet_build_s": round(build_s, 2),
    }
