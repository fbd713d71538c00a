"""pytest-benchmark for anomaly detection (opt-in: pytest benchmarks -m benchmark).

One small scored run of ``benchmarks/bench_anomalies.py`` (figures in ``extra_info``).
"""

import pytest

from benchmarks.bench_anomalies import run

pytestmark = pytest.mark.benchmark


def test_anomalies_small(benchmark):
    benchmark.group = "anomalies"
    figures = benchmark.pedantic(run, args=(6, 1.5, 3), rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    assert figures["faults"] == 9 and figures["recall"] is not None
