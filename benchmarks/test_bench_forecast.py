"""pytest-benchmark for the forecasts (opt-in: pytest benchmarks -m benchmark).

A 7-day scored run of ``benchmarks/bench_forecast.py`` (figures in ``extra_info``).
"""

import pytest

from benchmarks.bench_forecast import run

pytestmark = pytest.mark.benchmark


def test_forecast_week(benchmark):
    benchmark.group = "forecast"
    figures = benchmark.pedantic(run, args=(3, 7.0), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in figures.items() if k in ("pv", "load", "ev")})
    assert figures["origins"] == 7 * 24
