"""pytest-benchmark suite of the dispatch optimizer (opt-in: pytest -m benchmark benchmarks).

Figures only; nothing asserts a time. The full reference-fleet figures come
from ``python benchmarks/run.py optimizer --sites 342 --steps 96``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from optimizer import Dispatcher, OptimizerConfig, optimize, synthetic_inputs
from optimizer.compile import TemplateCache, assemble_group
from optimizer.model import solve_pyomo
from optimizer.sitedata import build_site_data
from optimizer.solve import HighsGroup
from optimizer.validate import check_forecast
from twin.generator import generate_fleet

T0 = 1_717_200_000.0
SITES = 60
FLEET = generate_fleet(SITES, seed=0)
FC = synthetic_inputs(FLEET, 96, T0)
CFG = OptimizerConfig(peak_charge_eur_per_kw=0.5, terminal_soc=0.5, time_limit_s=120.0)


@pytest.mark.benchmark(group="optimizer-cold")
def test_bench_fast_path_cold(benchmark):
    plan = benchmark.pedantic(optimize, args=(FLEET, 0.5, FC, CFG, T0), rounds=3, iterations=1)
    assert plan.status == "optimal"


@pytest.mark.benchmark(group="optimizer-cold")
def test_bench_reference_highs_whole_lp(benchmark):
    whole = replace(CFG, decompose=False)
    sd = build_site_data(FLEET, 0.5, check_forecast(FLEET, FC, whole), whole, T0, FC)
    lp = assemble_group(sd, sd.groups[0], TemplateCache())

    def run():
        return HighsGroup(lp).run(whole.time_limit_s)

    res = benchmark.pedantic(run, rounds=3, iterations=1)
    assert res.status == "optimal"


@pytest.mark.benchmark(group="optimizer-cold")
def test_bench_naive_pyomo(benchmark):
    small = generate_fleet(15, seed=0)
    fc = synthetic_inputs(small, 96, T0)
    whole = replace(CFG, decompose=False)
    sd = build_site_data(small, 0.5, check_forecast(small, fc, whole), whole, T0, fc)
    objective, _ = benchmark.pedantic(solve_pyomo, args=(sd,), rounds=1, iterations=1)
    assert np.isfinite(objective)


@pytest.mark.benchmark(group="optimizer-resolve")
def test_bench_mpc_resolve(benchmark):
    disp = Dispatcher(FLEET, CFG, strict=True)
    disp.plan(0.5, FC, T0)
    rng = np.random.default_rng(1)

    def resolve():
        fc = replace(FC, import_price_eur_per_mwh=FC.import_price_eur_per_mwh
                     * rng.uniform(0.9, 1.1, 96), pv_kw=FC.pv_kw * rng.uniform(0.85, 1.0),
                     pv_device_kw=None)
        return disp.plan(rng.uniform(0.3, 0.7, FLEET.n_devices), fc, T0)

    plan = benchmark.pedantic(resolve, rounds=3, iterations=1)
    assert plan.solver["reused_model"]
