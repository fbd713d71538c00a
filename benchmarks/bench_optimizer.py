"""Dispatch optimizer figures on the reference fleet (feeder coupling included).

    python benchmarks/run.py optimizer --sites 342 --steps 96 [--naive]

Measures, in one run: the cold fast path (build, solve, disaggregate), an MPC
re-solve after new prices, PV forecast and SoC, HiGHS alone on the whole
fleet's LP handed over as matrices (``reference_highs_s``), and optionally
the naive route (Pyomo builds the whole fleet, solved through Pyomo's HiGHS
interface). Figures only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

import numpy as np

from optimizer import Forecast, OptimizerConfig
from optimizer.dispatch import Dispatcher
from optimizer.synthetic import synthetic_inputs
from twin.generator import generate_fleet


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="optimizer", description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=342)
    ap.add_argument("--steps", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=600.0,
                    help="time limit of each solve [s] (default 600, so that all finish)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolves", type=int, default=3,
                    help="MPC re-solves to time (each against a cold solve of the same problem)")
    ap.add_argument("--naive", action="store_true",
                    help="also build and solve the whole fleet through Pyomo (slow)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip HiGHS on the whole-fleet LP")
    args = ap.parse_args(argv)

    fleet = generate_fleet(args.sites, seed=args.seed)
    t0_s = 1_717_200_000.0  # 2024-06-01 00:00 UTC
    forecast = synthetic_inputs(fleet, args.steps, t0_s, seed=args.seed)
    cfg = OptimizerConfig(n_steps=args.steps, time_limit_s=args.time_limit,
                          peak_charge_eur_per_kw=0.5, co2_price_eur_per_t=80.0,
                          terminal_soc=0.5, threads=args.threads)
    out: dict = {"sites": fleet.n_sites, "devices": fleet.n_devices, "steps": args.steps,
                 "feeders_coupled": 0}

    dispatcher = Dispatcher(fleet, cfg, strict=True)
    cpu0 = time.process_time()
    cold = dispatcher.plan(0.5, forecast, t0_s)
    cold_cpu_s = time.process_time() - cpu0
    out.update({
        "variables": cold.solver["variables"], "constraints": cold.solver["constraints"],
        "groups": cold.solver["groups"], "status": cold.status,
        "build_s": round(cold.timings["build_s"], 4),
        "solve_s": round(cold.timings["solve_s"], 4),
        "disaggregate_s": round(cold.timings["disaggregate_s"], 4),
        "total_s": round(cold.timings["total_s"], 4),
        "total_cpu_s": round(cold_cpu_s, 4),
        "objective": cold.objective, "simplex_iterations": cold.solver["iterations"],
        "slacks": len(cold.slacks),
        "feeders_coupled": int(sum(len(lp.feeders) for lp in dispatcher.lps)),
    })

    # MPC re-solves: new prices, PV forecast and SoC on the kept HiGHS models,
    # each compared with a cold solve of the same changed problem.
    rng = np.random.default_rng(args.seed + 1)
    problems = [_perturbed(fleet, forecast, args.steps, rng) for _ in range(args.resolves)]
    warm_s, warm_cpu_s, warm_solve_s, warm_iters, objectives = [], [], [], [], []
    for soc, changed in problems:
        cpu0 = time.process_time()
        warm = dispatcher.plan(soc, changed, t0_s)
        warm_cpu_s.append(time.process_time() - cpu0)
        warm_s.append(warm.timings["total_s"])
        warm_solve_s.append(warm.timings["solve_s"])
        warm_iters.append(warm.solver["iterations"])
        objectives.append(warm.objective)
        assert warm.solver["reused_model"]
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    del dispatcher, cold, warm
    gc.collect()
    cold_s, cold_cpu, rel_diff = [], [], []
    for (soc, changed), objective in zip(problems, objectives, strict=True):
        cpu0 = time.process_time()
        again = Dispatcher(fleet, cfg, strict=True).plan(soc, changed, t0_s)
        cold_cpu.append(time.process_time() - cpu0)
        cold_s.append(again.timings["total_s"])
        rel_diff.append(abs(objective - again.objective) / max(1.0, abs(again.objective)))
        del again
        gc.collect()
    ratios = [w / c for w, c in zip(warm_s, cold_s, strict=True)]
    cpu_ratios = [w / c for w, c in zip(warm_cpu_s, cold_cpu, strict=True)]
    out.update({
        "resolve_s": round(float(np.median(warm_s)), 4),
        "resolve_solve_s": round(float(np.median(warm_solve_s)), 4),
        "resolve_iterations": int(np.median(warm_iters)),
        "resolve_runs_s": [round(x, 4) for x in warm_s],
        "cold_same_problem_total_s": [round(x, 4) for x in cold_s],
        "resolve_over_cold_same_problem": [round(x, 3) for x in ratios],
        "resolve_over_cold_median": round(float(np.median(ratios)), 3),
        "resolve_cpu_over_cold_cpu_median": round(float(np.median(cpu_ratios)), 3),
        "resolve_objective_rel_diff_max": float(max(rel_diff)),
    })

    if not args.no_reference:
        out.update(reference_highs(fleet, forecast, cfg, t0_s))
    if args.naive:
        out.update(naive_pyomo(fleet, forecast, cfg, t0_s))
    out["peak_rss_mb_after_all"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["machine"] = "2 cores shared with other engineers; timings are noisy"
    return out


def _perturbed(fleet, forecast, n_steps, rng) -> tuple[np.ndarray, Forecast]:
    """New SoC per battery and a forecast with new prices and PV (the MPC case)."""
    changed = Forecast(
        pv_kw=forecast.pv_kw * rng.uniform(0.85, 1.0, forecast.pv_kw.shape),
        load_kw=forecast.load_kw,
        import_price_eur_per_mwh=np.asarray(forecast.import_price_eur_per_mwh)
        * rng.uniform(0.9, 1.1, n_steps),
        feed_in_eur_per_mwh=np.asarray(forecast.feed_in_eur_per_mwh)
        * rng.uniform(0.9, 1.1, n_steps),
        co2_kg_per_mwh=forecast.co2_kg_per_mwh, ev_sessions=forecast.ev_sessions)
    return rng.uniform(0.3, 0.7, fleet.n_devices), changed


def reference_highs(fleet, forecast, cfg, t0_s) -> dict:
    """HiGHS alone on the whole fleet's LP (one matrix, coupling rows), cold."""
    from dataclasses import replace

    from optimizer.compile import TemplateCache, assemble_group
    from optimizer.sitedata import build_site_data
    from optimizer.solve import HighsGroup
    from optimizer.validate import check_forecast

    whole = replace(cfg, decompose=False)
    sd = build_site_data(fleet, 0.5, check_forecast(fleet, forecast, whole), whole, t0_s,
                         forecast)
    lp = assemble_group(sd, sd.groups[0], TemplateCache())
    t = time.perf_counter()
    group = HighsGroup(lp)
    res = group.run(whole.time_limit_s)
    elapsed = time.perf_counter() - t
    return {"reference_highs_s": round(elapsed, 4), "reference_status": res.status,
            "reference_objective": res.objective,
            "reference_variables": lp.n_cols, "reference_constraints": lp.n_rows}


def naive_pyomo(fleet, forecast, cfg, t0_s) -> dict:
    """The whole fleet built in Pyomo and solved through Pyomo's HiGHS interface."""
    from dataclasses import replace

    from optimizer.model import solve_pyomo
    from optimizer.sitedata import build_site_data
    from optimizer.validate import check_forecast

    whole = replace(cfg, decompose=False)
    t = time.perf_counter()
    sd = build_site_data(fleet, 0.5, check_forecast(fleet, forecast, whole), whole, t0_s,
                         forecast)
    objective, _ = solve_pyomo(sd, time_limit_s=whole.time_limit_s)
    return {"naive_pyomo_total_s": round(time.perf_counter() - t, 4),
            "naive_pyomo_objective": objective}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(main(sys.argv[1:])))
