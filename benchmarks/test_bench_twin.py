"""pytest-benchmark suite for the twin step (opt-in: pytest benchmarks -m benchmark)."""

import numpy as np
import pytest

from benchmarks.bench_twin import build
from twin.fleet import EV_CHARGER
from twin.model import Twin

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module", params=[10_000, 100_000])
def fleet_case(request):
    return build(request.param)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_twin_step(benchmark, fleet_case, backend):
    fleet, inputs, sp = fleet_case
    twin = Twin(fleet, backend)
    ev = np.flatnonzero(fleet.device_type == EV_CHARGER)
    twin.plug_in(ev, np.full(len(ev), 40.0), np.full(len(ev), 1e12))
    twin.step(0.0, 1.0, inputs, sp)
    benchmark.group = f"twin-step-{fleet.n_devices}"
    benchmark.extra_info["devices"] = fleet.n_devices
    benchmark(twin.step, 1.0, 1.0, inputs, sp)
