"""``ecogrid ingest``: two worker processes on a real Mosquitto, zarr history, SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import orjson
import pytest

from adapters.broker import free_port
from adapters.ingest_worker import parse_partition
from adapters.mqtt.client import connect, make_client
from adapters.mqtt.ingest import owns_site
from adapters.storage import read_time_range
from api.cli import main
from twin.generator import generate_fleet

SITES, SEED = 8, 5


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def _wait(cond, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _messages(port: int) -> int:
    code, text = _get(f"http://127.0.0.1:{port}/metrics")
    m = re.search(r'^ecogrid_ingest_messages_total\{partition="[^"]+"\} (\S+)$', text, re.M)
    return int(float(m.group(1))) if code == 200 and m else -1


def test_two_worker_processes_record_every_message_once_and_stop_on_sigterm(
        mosquitto, tmp_path):
    fleet = generate_fleet(SITES, seed=SEED)
    ports = [free_port(), free_port()]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "api.cli", "ingest", "--sites", str(SITES), "--seed", str(SEED),
         "--broker", mosquitto.url, "--partition", f"{k}/2", "--client-id", f"iw-{k}",
         "--data-dir", str(tmp_path), "--flush-interval", "1", "--metrics-port",
         str(ports[k])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in range(2)]
    pub = make_client("iw-pub")
    try:
        assert _wait(lambda: all(_get(f"http://127.0.0.1:{p}/healthz")[0] == 200
                                 for p in ports), 30), "workers did not become healthy"
        connect(pub, mosquitto.url)
        pub.loop_start()
        now = float(int(time.time()))
        n_msgs = [0, 0]
        for rnd in range(3):
            for row, dev in enumerate(fleet.device_id.tolist()):
                site = fleet.site_id[fleet.device_site[row]]
                k = 0 if owns_site(site, (0, 2)) else 1
                payload = {"ts": now + rnd, "v": float(rnd * 1000 + row)}
                pub.publish(f"sites/{site}/devices/{dev}/telemetry", orjson.dumps(payload),
                            qos=1).wait_for_publish(5)
                n_msgs[k] += 1
        assert min(n_msgs) > 0
        assert _wait(lambda: [_messages(p) for p in ports] == n_msgs), \
            [_messages(p) for p in ports]
        t_term = int(time.time())
        for p in procs:
            p.send_signal(signal.SIGTERM)
        outs = [p.communicate(timeout=20) for p in procs]
    finally:
        pub.disconnect()
        pub.loop_stop()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]

    recorded: dict[str, float] = {}
    for k in range(2):
        ds = read_time_range(tmp_path / f"telemetry-{k}-of-2.zarr")
        assert ds.attrs["values"] == n_msgs[k]  # nothing refused
        assert ds.attrs["messages"] == n_msgs[k]  # flushed at SIGTERM, with the final counts
        figures = json.loads(outs[k][0].strip().splitlines()[-1])
        assert figures["snapshots"] == ds.sizes["time"] >= 1
        # The last snapshot was written on SIGTERM (not before), with the final counts.
        assert int(ds["time"].values[-1].astype("datetime64[s]").astype(np.int64)) >= t_term
        last = ds.isel(time=-1)
        ids = [str(d) for d in ds["device_id"].values]
        v_last = last["v"].values
        assert not np.isnan(v_last).any()
        assert (last["v_ts_s"].values == now + 2).all()  # the newest of each device's three
        assert np.isnan(last["p_kw"].values).all()  # nothing else was sent
        for dev, v in zip(ids, v_last, strict=True):
            assert dev not in recorded  # each device's state in exactly one worker
            recorded[dev] = float(v)
    rows = {d: r for r, d in enumerate(fleet.device_id.tolist())}
    assert set(recorded) == set(rows)
    assert all(v == 2000 + rows[d] for d, v in recorded.items())
    assert sum(n_msgs) == 3 * fleet.n_devices


def test_partition_parsing_and_bad_input(capsys, tmp_path):
    assert parse_partition("1/3") == (1, 3)
    assert parse_partition("auto/4", "ecogrid-ingest-2") == (2, 4)
    with pytest.raises(ValueError, match="pod name"):
        parse_partition("auto/4", "ecogrid-ingest-abc")
    with pytest.raises(ValueError, match="0 <= K < N"):
        parse_partition("3/3")
    assert main(["ingest", "--sites", "2", "--broker", "mqtt://127.0.0.1:1",
                 "--partition", "x"]) == 2
    assert "--partition must be K/N" in capsys.readouterr().err
    assert main(["ingest", "--sites", "2", "--broker", "http://x"]) == 2
    assert "scheme must be mqtt://" in capsys.readouterr().err
    assert main(["ingest", "--sites", "2", "--broker", "mqtt://127.0.0.1:1",
                 "--flush-interval", "30", "--data-dir", str(tmp_path)]) == 2
    assert "flush interval" in capsys.readouterr().err


def test_snapshot_into_a_store_of_another_fleet_is_refused_and_counted(tmp_path):
    from adapters.ingest_worker import IngestWorker

    clock = iter(range(1_800_000_000, 1_800_000_100))
    first = IngestWorker(generate_fleet(2, seed=1), "mqtt://127.0.0.1:1", tmp_path,
                         clock=lambda: float(next(clock)))
    assert first.flush() and first.snapshots == 1
    other = IngestWorker(generate_fleet(3, seed=1), "mqtt://127.0.0.1:1", tmp_path,
                         clock=lambda: float(next(clock)))
    assert not other.flush()
    assert other.flush_errors == 1 and other.snapshots == 0
    assert b"ecogrid_ingest_snapshot_errors_total" in other.metrics_text()
    assert read_time_range(tmp_path / "telemetry-0-of-1.zarr").sizes["time"] == 1
