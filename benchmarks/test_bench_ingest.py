"""pytest-benchmark suite for telemetry ingest (opt-in: pytest benchmarks -m benchmark).

Decoding alone (pure, no broker) per payload shape, and one short end-to-end
run per shape through a private Mosquitto (figures in ``extra_info``).
"""

import pytest

from adapters.mqtt.decode import BatchDecoder
from benchmarks.bench_ingest import _messages, _n_sites, run
from twin.generator import generate_fleet
from twin.telemetry import Telemetry

pytestmark = pytest.mark.benchmark

SHAPES = ["site", "device", "metric"]


@pytest.mark.parametrize("shape", SHAPES)
def test_decode_batch(benchmark, shape):
    n_sites = _n_sites(10_000)
    fleet = generate_fleet(n_sites)
    msgs = _messages(shape, n_sites, 5, 1.7e9)
    decoder = BatchDecoder(fleet, Telemetry(fleet).metric_column)
    decoder.decode(msgs, 1.7e9)  # warm the layout cache
    benchmark.group = "ingest-decode"
    benchmark.extra_info["values"] = fleet.n_devices * 5
    batch = benchmark(decoder.decode, msgs, 1.7e9)
    assert batch.n_values == fleet.n_devices * 5


@pytest.mark.parametrize("shape", SHAPES)
def test_ingest_end_to_end(benchmark, shape):
    benchmark.group = "ingest-mqtt"
    result = benchmark.pedantic(run, args=(shape, 10_000, 5, 3.0), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["lost"] == 0
