"""Pure decoding: no broker."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from adapters.mqtt.decode import BatchDecoder, decode
from twin.generator import generate_fleet
from twin.telemetry import METRICS, Telemetry

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(4, seed=1)


def test_decode_three_shapes():
    one = decode("sites/A/devices/D/telemetry/p_kw", b"3.5", NOW)
    assert [(v.device_id, v.metric, v.value, v.ts_s) for v in one.values] == [
        ("D", "p_kw", 3.5, NOW)]
    stamped = decode("sites/A/devices/D/telemetry/soc", b'{"ts": 1700000000, "value": 0.4}', NOW)
    assert stamped.values[0].ts_s == 1.7e9 and stamped.values[0].value == 0.4
    dev = decode("sites/A/devices/D/telemetry", b'{"ts": 1.7e9, "p_kw": -2, "rpm": 7}', NOW)
    assert {(v.metric, v.value) for v in dev.values} == {("p_kw", -2.0), ("rpm", 7.0)}
    site = decode("sites/A/telemetry", orjson.dumps(
        {"ts": 1.7e9, "devices": {"D1": {"p_kw": 1}, "D2": {"v": 230.0, "temp_c": 20}}}), NOW)
    assert sorted((v.device_id, v.metric) for v in site.values) == [
        ("D1", "p_kw"), ("D2", "temp_c"), ("D2", "v")]
    assert not site.rejects
    status = decode("sites/A/status", b"offline", NOW)
    assert status.status == ("A", None, False)


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("sites/A/devices/D/telemetry", b"{oops", "malformed_json"),
    ("sites/A/devices/D/telemetry", b"[1, 2]", "wrong_type"),
    ("sites/A/devices/D/telemetry/p_kw", b'"12"', "wrong_type"),
    ("sites/A/devices/D/telemetry/p_kw", b"true", "wrong_type"),
    ("sites/A/devices/D/telemetry/p_kw", b"NaN", "not_finite"),
    ("sites/A/devices/D/telemetry/p_kw", b"-Infinity", "not_finite"),
    ("sites/A/devices/D/telemetry/p_kw", b"1e400", "not_finite"),
    ("sites/A/telemetry", b'{"ts": 1.7e9, "devices": {"D": 5}}', "wrong_type"),
    ("sites/A/telemetry", b'{"ts": 1.7e9}', "wrong_type"),
    ("sites/A/devices/D/telemetry", b'{"ts": 1.9e9, "p_kw": 1}', "future_timestamp"),
    ("sites/A/devices/D/telemetry", b'{"ts": -5, "p_kw": 1}', "bad_timestamp"),
    ("sites/A/devices/D/telemetry/soc", b"-0.1", "out_of_range"),
    ("sites/A/devices/D/telemetry/temp_c", b"900", "out_of_range"),
    ("sites/A/devices/D/telemetry", b"1" * 70_000, "too_large"),
    ("sites/A/weather", b"1", "bad_topic"),
    ("sites/A/devices/D/status", b"sleeping", "bad_status"),
])
def test_decode_refuses_bad_input(topic, payload, reason):
    out = decode(topic, payload, NOW)
    assert out.values == [] and out.status is None
    assert dict(out.rejects) == {reason: 1}


def test_batch_decoder_maps_rows_and_columns(fleet):
    tel = Telemetry(fleet)
    dec = BatchDecoder(fleet, tel.metric_column)
    s0, s1 = fleet.site_id[0], fleet.site_id[1]
    d0 = fleet.device_id[fleet.site_start[0]]
    d1 = fleet.device_id[fleet.site_start[1]]
    msgs = [
        (f"sites/{s0}/telemetry", orjson.dumps(
            {"ts": 1.7e9, "devices": {d0: {"p_kw": 1.0, "soc": 0.3}, "GHOST": {"p_kw": 1.0}}})),
        (f"sites/{s1}/devices/{d1}/telemetry", b'{"ts": 1.7e9, "v": 229.5, "hz": 50.01}'),
        (f"sites/{s1}/devices/{d0}/telemetry/p_kw", b"1"),  # d0 is not at site s1
        (f"sites/{s1}/devices/{d1}/telemetry/p_kw", b"1e9"),  # beyond the device's rating
        (f"sites/{s0}/status", b"online"),
    ]
    b = dec.decode(msgs, NOW)
    got = {(int(r), tel.metrics[c], float(v)) for r, c, v in zip(b.rows, b.cols, b.values,
                                                                   strict=True)}
    r0, r1 = fleet.device_row[d0], fleet.device_row[d1]
    assert got == {(r0, "p_kw", 1.0), (r0, "soc", 0.3), (r1, "v", 229.5), (r1, "hz", 50.01)}
    assert tel.metrics[len(METRICS):] == ["hz"]  # unknown metric got a column
    assert dict(b.rejects) == {"unknown_device": 2, "out_of_range": 1}
    assert b.site_status == [(0, True, NOW)] and b.messages == 5
    # the cached layout is reused, and a changed layout is rebuilt correctly
    again = dec.decode(msgs[:1], NOW)
    assert again.n_values == 2 and again.rejects["unknown_device"] == 1
    changed = dec.decode([(f"sites/{s0}/telemetry", orjson.dumps(
        {"ts": 1.7e9, "devices": {d0: {"temp_c": 21.0, "p_kw": "x"}}}))], NOW)
    assert changed.n_values == 1 and tel.metrics[changed.cols[0]] == "temp_c"
    assert dict(changed.rejects) == {"wrong_type": 1}


def test_batch_decoder_caps_metric_columns(fleet):
    tel = Telemetry(fleet, max_metrics=len(METRICS) + 1)
    dec = BatchDecoder(fleet, tel.metric_column)
    s, d = fleet.site_id[0], fleet.device_id[0]
    b = dec.decode([(f"sites/{s}/devices/{d}/telemetry", b'{"a": 1, "b": 2, "p_kw": 3}')], NOW)
    assert b.n_values == 2 and dict(b.rejects) == {"too_many_metrics": 1}
    assert np.array_equal(np.sort(b.values), [1.0, 3.0])


def test_rejects_are_logged_at_a_bounded_rate(caplog):
    from collections import Counter

    from adapters.mqtt.ingest import RateLimitedLog

    rl = RateLimitedLog(interval_s=10.0)
    with caplog.at_level("WARNING", logger="adapters.mqtt.ingest"):
        for i in range(100):  # 100 bad batches within 5 s
            rl.add(Counter({"malformed_json": 1}), 100.0 + i * 0.05)
        rl.add(Counter({"bad_topic": 2}), 111.0)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "'malformed_json': 1" in lines[0]
    assert "'malformed_json': 99" in lines[1] and "'bad_topic': 2" in lines[1]
