"""A small scored anomaly run (the benchmark's code on a tiny fleet): every injected fault
is found and no healthy device is accused."""

from __future__ import annotations

from benchmarks.bench_anomalies import run, score
from twin.generator import generate_fleet


def test_small_run_finds_every_fault():
    figures = run(n_sites=3, days=1.0, n_faults=2, step_s=60.0, seed=3)
    assert figures["faults"] == 6
    assert figures["recall"] == 1.0
    assert figures["precision"] >= 0.9
    assert 0 <= figures["ttd_median_s"] <= figures["ttd_max_s"] < 12 * 3600  # detected the same day


def test_score_counts_by_hand():
    fleet = generate_fleet(n_sites=1)
    d0, d1, d2 = fleet.device_id[:3].tolist()
    faults = [{"row": 0, "kind": "pv_derate", "start_s": 100.0},
              {"row": 1, "kind": "stuck_meter", "start_s": 100.0}]
    alerts = [{"device_id": d0, "created_s": 160.0, "kind": "pv_shortfall"},
              {"device_id": d0, "created_s": 400.0, "kind": "pv_shortfall"},
              {"device_id": d1, "created_s": 50.0, "kind": "meter_frozen"},   # before the fault
              {"device_id": d2, "created_s": 300.0, "kind": "pv_shortfall"}]  # healthy device
    s = score(faults, alerts, fleet)
    assert s["precision"] == 0.5 and s["recall"] == 0.5
    assert s["ttd_median_s"] == 60.0 and s["false_alerts"] == 2
