"""``ecogrid ingest``: worker processes on a real Mosquitto (site partitions and a
shared-subscription group), their history writers, the merged history, SIGTERM, claims,
bad input."""

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
import zarr

from adapters.broker import free_port
from adapters.history import History, HistoryError, read_latest
from adapters.history.claims import ClaimError
from adapters.ingest_worker import IngestWorker, parse_partition
from adapters.mqtt.client import connect, make_client
from adapters.mqtt.ingest import owns_site
from api.cli.main import main
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


def _terminate(procs: list[subprocess.Popen]) -> list[tuple[str, str]]:
    """SIGTERM to every worker, then their (stdout, stderr) once they exit."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    return [p.communicate(timeout=20) for p in procs]


def _cleanup(pub, procs: list[subprocess.Popen]) -> None:
    """Disconnect the test publisher and kill any worker still running."""
    pub.disconnect()
    pub.loop_stop()
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()


def _messages(port: int) -> int:
    code, text = _get(f"http://127.0.0.1:{port}/metrics")
    m = re.search(r'^ecogrid_ingest_messages_total\{[^}]+\} (\S+)$', text, re.M)
    return int(float(m.group(1))) if code == 200 and m else -1


def test_two_worker_processes_record_every_message_once_and_stop_on_sigterm(
        mosquitto, tmp_path):
    fleet = generate_fleet(SITES, seed=SEED)
    ports = [free_port(), free_port()]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "api.cli.main", "ingest", "--sites", str(SITES), "--seed", str(SEED),
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
        outs = _terminate(procs)
    finally:
        _cleanup(pub, procs)
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]

    h = History(tmp_path / "history")
    info = {w.writer: w for w in h.writers()}
    stores = {s.writer: s for s in h.stores()}
    recorded: dict[str, float] = {}
    for k in range(2):
        wid = f"p{k}of2"
        assert not info[wid].live  # the claim went with the worker
        assert info[wid].info["values"] == n_msgs[k]  # nothing refused
        assert info[wid].info["messages"] == n_msgs[k]  # flushed at SIGTERM, final counts
        figures = json.loads(outs[k][0].strip().splitlines()[-1])
        store = stores[wid]
        assert figures["snapshots"] == info[wid].info["snapshots"] == store.raw_rows >= 1
        # The last snapshot was written on SIGTERM (not before), with the final counts.
        assert store.last_t_s >= t_term
        last = h.read(store.last_t_s, store.last_t_s + 1, "v", devices=store.device_ids,
                      now_s=store.last_t_s)
        v_last = last.values[-1]
        assert not np.isnan(v_last).any()
        latest = h.latest(store.device_ids)
        assert (latest.column("v")[1] == now + 2).all()  # the newest of each device's three
        assert np.isnan(latest.column("p_kw")[0]).all()  # nothing else was sent
        assert "online" in latest.metrics
        for dev, v in zip(store.device_ids, v_last, strict=True):
            assert dev not in recorded  # each device's state in exactly one worker
            recorded[dev] = float(v)
    rows = {d: r for r, d in enumerate(fleet.device_id.tolist())}
    assert set(recorded) == set(rows)
    assert all(v == 2000 + rows[d] for d, v in recorded.items())
    assert sum(n_msgs) == 3 * fleet.n_devices


def _shared_worker(mosquitto, tmp_path, name: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli.main", "ingest", "--sites", str(SITES), "--seed", str(SEED),
         "--broker", mosquitto.url, "--shared", "ecogrid-ingest", "--client-id", name,
         "--data-dir", str(tmp_path), "--flush-interval", "1", "--metrics-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_shared_group_workers_split_the_messages_and_their_stores_merge(mosquitto, tmp_path):
    """Two members, a third joins mid-stream: each message in exactly one worker, and the
    merged stores give every device's newest value."""
    fleet = generate_fleet(SITES, seed=SEED)
    names = ["sw-a", "sw-b", "sw-c"]
    ports = [free_port() for _ in names]
    procs = [_shared_worker(mosquitto, tmp_path, names[k], ports[k]) for k in range(2)]
    pub = make_client("sw-pub")
    rounds, n_sent = 4, 0
    now = float(int(time.time()))

    def publish_round(rnd: int) -> None:
        nonlocal n_sent
        for row, dev in enumerate(fleet.device_id.tolist()):
            site = fleet.site_id[fleet.device_site[row]]
            pub.publish(f"sites/{site}/devices/{dev}/telemetry", orjson.dumps(
                {"ts": now + rnd, "v": float(rnd * 1000 + row)}), qos=1).wait_for_publish(5)
            n_sent += 1

    def healthy(ps) -> bool:
        return all(_get(f"http://127.0.0.1:{p}/healthz")[0] == 200 for p in ps)

    try:
        assert _wait(lambda: healthy(ports[:2]), 30), "workers did not become healthy"
        connect(pub, mosquitto.url)
        pub.loop_start()
        for rnd in range(2):
            publish_round(rnd)
        procs.append(_shared_worker(mosquitto, tmp_path, names[2], ports[2]))
        assert _wait(lambda: healthy(ports[2:]), 30), "the third worker did not become healthy"
        for rnd in range(2, rounds):
            publish_round(rnd)
        assert _wait(lambda: sum(_messages(p) for p in ports) == n_sent), \
            [_messages(p) for p in ports]
        counts = [_messages(p) for p in ports]
        assert min(counts) > 0, counts  # every member took a share, the late one too
        assert 'ecogrid_ingest_messages_total{client_id="sw-c",group="ecogrid-ingest"}' in \
            _get(f"http://127.0.0.1:{ports[2]}/metrics")[1]
        outs = _terminate(procs)
    finally:
        _cleanup(pub, procs)
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
    assert n_sent == rounds * fleet.n_devices

    root = tmp_path / "history"
    h = History(root)
    assert [st.path.name for st in h.stores()] == [f"telemetry-{n}-0.zarr" for n in names]
    info = {w.writer: w.info for w in h.writers()}
    for k, st in enumerate(h.stores()):
        assert info[names[k]]["messages"] == counts[k]  # each message in exactly one writer
        assert info[names[k]]["group"] == "ecogrid-ingest"
        assert info[names[k]]["client_id"] == names[k]
        assert st.device_ids == fleet.device_id.tolist()  # a member covers the whole fleet
        assert json.loads(outs[k][0].strip().splitlines()[-1])["messages"] == counts[k]
    assert sum(counts) == n_sent
    merged = h.latest()
    rows = {d: r for r, d in enumerate(fleet.device_id.tolist())}
    assert set(merged.device_ids) == set(rows)
    v, ts = merged.column("v")
    for dev, val, t in zip(merged.device_ids, v, ts, strict=True):
        assert (val, t) == (float((rounds - 1) * 1000 + rows[dev]), now + rounds - 1)
    # No single writer holds all the newest values: the merge is what makes them whole.
    singles = [read_latest(root / "latest" / f"{n}.npz") for n in names]
    assert not any((f["ts_s"][:, f["metrics"].index("v")] == now + rounds - 1).all()
                   for f in singles)
    assert np.isnan(merged.column("p_kw")[0]).all()  # nothing else sent


def test_history_takes_the_newest_time_stamp_of_any_worker(tmp_path):
    fleet = generate_fleet(2, seed=1)
    t = [1_800_000_000.0]
    workers = [IngestWorker(fleet, "mqtt://127.0.0.1:1", tmp_path, shared_group="g",
                            client_id=f"m-{k}", clock=lambda: t[0]) for k in range(2)]
    col = workers[0].ingest.telemetry.metric_column("p_kw")
    rows = np.array([0, 1, 2])

    def write(k: int, values, ts) -> None:
        workers[k].ingest.telemetry.write(rows, np.full(3, col), np.array(values, float),
                                          np.array(ts, float))

    write(0, [1.0, 2.0, 3.0], [10, 10, 10])
    write(1, [5.0, np.nan, 7.0], [20, np.nan, 5])  # row 1 never seen by m-1
    assert all(w.flush() for w in workers)
    assert not workers[0].flush()  # the same grid slot: no snapshot due
    t[0] += 10
    write(0, [9.0, 9.0, 9.0], [30, 30, 30])
    assert workers[0].flush()
    h = History(tmp_path)
    first = h.read(t[0] - 10, t[0] - 5, "p_kw", now_s=t[0])  # the first snapshots
    assert first.values[0, :3].tolist() == [5.0, 2.0, 3.0]
    assert h.read(t[0], t[0] + 1, "p_kw", now_s=t[0]).values[0, :3].tolist() == [9.0] * 3
    latest = h.latest()
    assert latest.column("p_kw")[0][:3].tolist() == [9.0, 9.0, 9.0]
    assert latest.column("p_kw")[1][:3].tolist() == [30.0, 30.0, 30.0]
    assert np.isnan(latest.column("p_kw")[0][3:]).all()  # devices nobody heard from
    assert np.isnan(latest.column("online")[0]).all()  # no status seen yet
    assert h.read(t[0] - 100, t[0] - 50, "p_kw", now_s=t[0]).t_s.size == 0  # before any
    with pytest.raises(HistoryError, match="nope"):
        h.read(t[0] - 10, t[0], "nope", now_s=t[0])
    for w in workers:
        w.writer.close()


def test_shared_mode_bad_input(capsys, tmp_path):
    base = ["ingest", "--sites", "2", "--broker", "mqtt://127.0.0.1:1",
            "--data-dir", str(tmp_path)]
    assert main([*base, "--shared", "g", "--partition", "0/2"]) == 2
    err = capsys.readouterr().err
    assert "--shared and --partition are alternatives" in err
    for bad in ("a/b", "", "x+", "#"):
        assert main([*base, "--shared", bad]) == 2
        assert "--shared: shared subscription group" in capsys.readouterr().err
    assert main([*base, "--shared", "g", "--client-id", "../x"]) == 2
    assert "names its store" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"shared_group=.*partition="):
        IngestWorker(generate_fleet(2, seed=1), "mqtt://127.0.0.1:1", tmp_path,
                     shared_group="g", partition=(1, 2), client_id="x")
    w = IngestWorker(generate_fleet(2, seed=1), "mqtt://127.0.0.1:1", tmp_path,
                     shared_group="g")
    assert w.ingest.client_id.startswith("ecogrid-ingest-")
    assert w.writer.writer_id == w.ingest.client_id
    assert w.writer.path.name == f"telemetry-{w.ingest.client_id}-0.zarr"
    assert w.labels == {"group": "g", "client_id": w.ingest.client_id}


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


def test_workers_claim_their_sites_and_a_store_of_another_fleet_is_refused(tmp_path, capsys):
    clock = iter(range(1_800_000_000, 1_800_000_100, 5))
    first = IngestWorker(generate_fleet(2, seed=1), "mqtt://127.0.0.1:1", tmp_path,
                         clock=lambda: float(next(clock))).open()
    assert first.flush() and first.snapshots == 1
    assert b"ecogrid_ingest_snapshot_errors_total" in first.metrics_text()
    other = IngestWorker(generate_fleet(3, seed=1), "mqtt://127.0.0.1:1", tmp_path)
    with pytest.raises(ClaimError, match="'p0of1' is in use"):
        other.open()
    member = IngestWorker(generate_fleet(2, seed=1), "mqtt://127.0.0.1:1", tmp_path,
                          shared_group="g", client_id="m1")
    with pytest.raises(ClaimError, match="shared: writer 'p0of1'"):
        member.open()  # a shared member may see any device: not beside a partition worker
    first.writer.close()
    with pytest.raises(HistoryError, match="new fleet_version"):
        other.open()
    IngestWorker(generate_fleet(3, seed=1), "mqtt://127.0.0.1:1", tmp_path,
                 fleet_version=1).open().writer.close()  # a new segment is fine
    assert [s.fleet_version for s in History(tmp_path).stores()] == [0, 1]
    assert History(tmp_path).stores()[0].raw_rows == 1
    # The CLI refuses a data folder with history in an old layout, naming the command.
    (tmp_path / "old").mkdir()
    zarr.open_group(str(tmp_path / "old" / "history.zarr"), mode="w").attrs["device_ids"] = []
    zarr.open_group(str(tmp_path / "old" / "history.zarr"), mode="a").create_array(
        "t_s", shape=(0,), dtype="f8")
    assert main(["ingest", "--sites", "2", "--broker", "mqtt://127.0.0.1:1",
                 "--data-dir", str(tmp_path / "old")]) == 2
    assert "ecogrid history convert --data-dir" in capsys.readouterr().err


def test_latest_values_are_published_every_second_between_snapshots(tmp_path):
    fleet = generate_fleet(2, seed=1)
    t = [1_800_000_000.0]
    w = IngestWorker(fleet, "mqtt://127.0.0.1:1", tmp_path, flush_s=5.0,
                     clock=lambda: t[0]).open()
    tel = w.ingest.telemetry
    col = tel.metric_column("p_kw")
    assert w.tick()  # the first tick takes a snapshot
    t[0] += 1
    tel.write(np.array([0]), np.array([col]), np.array([4.0]), np.array([t[0]]))
    assert not w.tick()  # inside the same 5 s: only the latest file
    h = History(tmp_path)
    assert h.latest([fleet.device_id[0]]).column("p_kw")[0].tolist() == [4.0]
    assert h.stores()[0].raw_rows == 1
    t[0] += 4
    assert w.tick() and h.stores()[0].raw_rows == 2
    w.writer.close()
