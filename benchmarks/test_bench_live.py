"""pytest-benchmark for the live system (opt-in: pytest benchmarks -m benchmark).

One short, small run of ``benchmarks/bench_live.py`` (figures in ``extra_info``).
"""

import pytest

from benchmarks.bench_live import run

pytestmark = pytest.mark.benchmark


def test_live_small(benchmark):
    benchmark.group = "live"
    figures = benchmark.pedantic(run, args=(300, 20, 8.0), rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    assert figures["ws_clients"] > 0 and figures["rest_requests"] > 0
