"""The one telemetry history: round trips, rollups against hand calculations, tiers,
retention, restarts, merges of writers and segments, claims across processes, old layouts."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import adapters.history.store as history_mod
from adapters.history import History, HistoryError, UnknownDeviceError, root_path, store_name
from adapters.history.claims import ClaimError
from adapters.history.legacy import LegacyHistoryError, check_layout, convert_legacy
from adapters.history.writer import HistoryWriter
from adapters.storage import TimeSeriesStore, bucket_means

T0 = 1_800_000_000.0  # a multiple of 3600 s: the start of an hour bucket
IDS = ["d0", "d1", "d2"]
ALL = ["p_kw", "q_kvar", "v", "soc", "e_kwh", "temp_c", "online", "vendor/x ü"]


def _writer(root: Path, wid: str = "w", ids: list[str] = IDS, version: int = 0,
            **kw) -> HistoryWriter:
    return HistoryWriter(root, wid, ids, version, sites=kw.pop("sites", ["s1"]),
                         clock=lambda: T0, **kw).open()


def _one(w: HistoryWriter, t: float, values, metric: str = "p_kw", ts=None) -> None:
    v = np.asarray(values, dtype=float).reshape(-1, 1)
    s = np.where(np.isfinite(v), t if ts is None else ts, np.nan)
    w.append(t, [metric], v, np.broadcast_to(s, v.shape))


# -- round trips -----------------------------------------------------------------------
def test_every_metric_round_trips_and_a_late_metric_reads_nan_before(tmp_path):
    w = _writer(tmp_path)
    rng = np.random.default_rng(1)
    sent = []
    for i in range(4):
        metrics = ALL if i >= 2 else ALL[:-1]  # the vendor metric appears at the third snapshot
        v = rng.normal(size=(3, len(metrics))).astype(np.float32).astype(float)
        v[1, 0] = np.nan  # d1 without p_kw
        ts = np.where(np.isfinite(v), T0 + 10 * i - 0.5, np.nan)
        w.append(T0 + 10 * i, metrics, v, ts)
        sent.append(dict(zip(metrics, v.T, strict=True)))
    w.close()
    h = History(tmp_path)
    assert h.metrics() == ALL
    for m in ALL:
        r = h.read(T0, T0 + 60, m, now_s=T0 + 60)
        assert r.tier == "raw" and r.resolution_s == 10.0 and r.device_ids == IDS
        assert r.t_s.tolist() == [T0, T0 + 10, T0 + 20, T0 + 30]
        want = np.array([s.get(m, np.full(3, np.nan)) for s in sent])
        np.testing.assert_array_equal(r.values, want)
    late = h.read(T0, T0 + 60, "vendor/x ü", devices=["d2"], now_s=T0 + 60)
    assert np.isnan(late.values[:2]).all() and np.isfinite(late.values[2:]).all()
    latest = h.latest(["d0", "d1"])
    np.testing.assert_array_equal(latest.column("p_kw")[0], [sent[3]["p_kw"][0], np.nan])
    assert latest.column("p_kw")[1][0] == T0 + 29.5 and latest.t_s == T0 + 30


def test_rollups_equal_a_hand_calculation_and_reaggregate(tmp_path):
    w = _writer(tmp_path, ids=["a", "b"])
    # 5-minute bucket T0: a = 1, 3, NaN, 8 (ts one second old); b only once.
    for i, (a, b) in enumerate([(1, np.nan), (3, 4), (np.nan, np.nan), (8, np.nan)]):
        _one(w, T0 + 60 * i, [a, b], ts=T0 + 60 * i - 1)
    _one(w, T0 + 300, [10, 20])  # bucket T0+300 (closes T0)
    _one(w, T0 + 600, [0, 0])  # closes T0+300
    _one(w, T0 + 3600, [5, 5])  # closes T0+600 and the hour T0
    w.close()
    h = History(tmp_path)
    far = T0 + 30 * 86400  # raw out of retention: rollups
    got = {s: h.read(T0, T0 + 900, "p_kw", every_s=300, stat=s, now_s=far) for s in
           ("mean", "min", "max", "last", "count")}
    assert got["mean"].tier == "5m" and got["mean"].resolution_s == 300.0
    assert got["mean"].t_s.tolist() == [T0, T0 + 300, T0 + 600]
    np.testing.assert_allclose(got["mean"].values[0], [(1 + 3 + 8) / 3, 4])
    assert got["min"].values[0].tolist() == [1, 4] and got["max"].values[0].tolist() == [8, 4]
    assert got["last"].values[0].tolist() == [8, 4]
    assert got["count"].values[0].tolist() == [3, 1]
    # 15 minutes from 5-minute buckets: mean weighted by counts.
    q = h.read(T0, T0 + 900, "p_kw", every_s=900, now_s=far)
    assert q.tier == "5m" and q.resolution_s == 900.0 and q.t_s.tolist() == [T0]
    np.testing.assert_allclose(q.values[0], [(1 + 3 + 8 + 10 + 0) / 5, (4 + 20 + 0) / 3])
    assert q.counts[0].tolist() == [5, 3]
    last = h.read(T0, T0 + 900, "p_kw", every_s=900, stat="last", now_s=far)
    assert last.values[0].tolist() == [0, 0]
    hour = h.read(T0, T0 + 3600, "p_kw", every_s=3600, now_s=far)
    assert hour.tier == "1h" and hour.counts[0].tolist() == [5, 3]
    np.testing.assert_allclose(hour.values[0], q.values[0])
    # Raw re-aggregated over the same 5 minutes gives the same numbers (bucket_means).
    raw = h.read(T0, T0 + 900, "p_kw", every_s=60, now_s=T0 + 900)
    assert raw.tier == "raw" and raw.resolution_s == 60.0
    t, (means,) = bucket_means(raw.t_s, [raw.values], T0, 300)
    assert t.tolist() == got["mean"].t_s.tolist()
    np.testing.assert_allclose(means, got["mean"].values)
    for stat in ("min", "max", "last", "count"):  # the four snapshots of bucket T0
        from_raw = h.read(T0, T0 + 240, "p_kw", every_s=240, stat=stat, now_s=T0 + 900)
        assert from_raw.tier == "raw" and from_raw.t_s.tolist() == [T0]
        np.testing.assert_array_equal(from_raw.values, got[stat].values[:1])


def test_tier_choice_states_the_resolution(tmp_path, monkeypatch):
    w = _writer(tmp_path, ids=["a"])
    for i in range(50):
        _one(w, T0 + 150 * i, [i])
    w.close()
    h = History(tmp_path, raw_days=7)
    now = T0 + 86400

    def tier(start, end, every=None, now_s=now):
        r = h.read(start, end, "p_kw", every_s=every, now_s=now_s)
        return r.tier, r.resolution_s

    assert tier(T0, T0 + 3600) == ("raw", 150.0)
    assert tier(T0, T0 + 3600, 60) == ("raw", 60.0)
    assert tier(T0, T0 + 3600, 299) == ("raw", 299.0)
    assert tier(T0, T0 + 7200, 300) == ("5m", 300.0)
    assert tier(T0, T0 + 7200, 900) == ("5m", 900.0)
    assert tier(T0, T0 + 7200, 3600) == ("1h", 3600.0)
    assert tier(T0, T0 + 86400, 7200) == ("1h", 7200.0)
    beyond = T0 + 30 * 86400  # the range lies before the raw retention
    assert tier(T0, T0 + 7200, None, beyond) == ("5m", 300.0)
    assert tier(T0, T0 + 7200, 60, beyond) == ("5m", 300.0)  # the coarser tier, stated
    assert tier(T0, T0 + 100 * 86400, None, beyond) == ("1h", 3600.0)  # 5m: > MAX_POINTS
    monkeypatch.setattr(history_mod, "MAX_POINTS", 10)
    assert tier(T0, T0 + 1800) == ("5m", 300.0)  # 12 raw rows: too many for raw, 6 buckets
    with pytest.raises(HistoryError, match="give every"):
        h.read(T0, T0 + 100 * 86400, "p_kw", now_s=beyond)


def test_raw_days_fall_out_of_retention_and_rollups_stay(tmp_path):
    w = _writer(tmp_path, ids=["a"], raw_days=1.0)
    day0 = np.floor(T0 / 86400) * 86400
    for d in range(3):
        _one(w, day0 + d * 86400 + 60, [d + 1])
        _one(w, day0 + d * 86400 + 4000, [d + 1])
    days = sorted(d for d in os.listdir(w.path / "raw") if d != "zarr.json")
    assert days == [history_mod.day_name(day0 + 86400), history_mod.day_name(day0 + 2 * 86400)]
    # (day 0 ended more than one day before the last snapshot: gone)
    w.close()
    h = History(tmp_path, raw_days=1.0)
    r = h.read(day0, day0 + 86400, "p_kw", every_s=3600, now_s=day0 + 2 * 86400 + 4000)
    assert r.tier == "1h" and r.values[:, 0].tolist() == [1.0, 1.0]


def test_restart_in_the_middle_of_a_bucket_counts_nothing_twice(tmp_path):
    w = _writer(tmp_path, ids=["a"])
    for i in range(3):
        _one(w, T0 + 10 * i, [i])
    w.close()  # like a crash: the open buckets are in memory only
    w = _writer(tmp_path, ids=["a"])  # a new process
    assert w.last_t_s == T0 + 20
    with pytest.raises(HistoryError, match="not after the last"):
        _one(w, T0 + 20, [9])
    _one(w, T0 + 30, [3])
    w.close()
    w.open()  # the same writer object again: rebuilt from the raw rows, not added to
    _one(w, T0 + 40, [4])
    _one(w, T0 + 3600, [100])  # closes the 5 min and the 1 h bucket
    w.close()
    h = History(tmp_path)
    for every in (300, 3600):
        r = h.read(T0, T0 + 3600, "p_kw", every_s=every, now_s=T0 + 90 * 86400)
        assert r.counts[0, 0] == 5 and r.values[0, 0] == 2.0  # mean of 0..4
        assert r.tier == ("5m" if every == 300 else "1h")


def _append_then_die(root: str, rows: int) -> None:
    w = HistoryWriter(root, "w", ["a"], 0, sites=["s1"]).open()
    for i in range(rows):
        w.append(T0 + 10 * i, ["p_kw"], np.array([[float(i)]]), np.array([[T0 + 10 * i]]))
    os._exit(0)  # no close: the claim goes with the process, the open bucket with memory


def test_killed_writer_claim_is_taken_over_and_its_bucket_rebuilt(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_append_then_die, args=(str(tmp_path), 3))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    w = _writer(tmp_path, ids=["a"])  # the stale claim of the same writer id: taken over
    _one(w, T0 + 300, [3])
    w.close()
    r = History(tmp_path).read(T0, T0 + 300, "p_kw", every_s=300, now_s=T0 + 90 * 86400)
    assert r.counts[0, 0] == 3 and r.values[0, 0] == 1.0


def test_half_written_snapshot_is_not_data_and_is_overwritten(tmp_path):
    w = _writer(tmp_path, ids=["a", "b"])
    _one(w, T0, [1, 2])
    w.close()
    # A crash after the values of row 1 but before its time: the values are there...
    day = zarr.open_group(str(w.path / "raw" / history_mod.day_name(T0)), mode="r+")
    day["p_kw"][1] = np.array([7, 7], dtype=np.float32)
    h = History(tmp_path)
    r = h.read(T0 - 10, T0 + 100, "p_kw", now_s=T0 + 100)
    assert r.t_s.tolist() == [T0] and r.values.tolist() == [[1, 2]]  # ...but not data
    w = _writer(tmp_path, ids=["a", "b"])
    w.append(T0 + 10, ["soc"], np.array([[0.5], [0.6]]), np.full((2, 1), T0 + 10))
    w.close()
    r = h.read(T0 - 10, T0 + 100, "p_kw", now_s=T0 + 100)
    assert np.isnan(r.values[1]).all()  # the row was written whole, p_kw with its fill


def _append_rows(root: str, rows: int, started) -> None:
    ids = [f"d{i}" for i in range(50)]
    w = HistoryWriter(root, "busy", ids, 0, sites=["s1"]).open()
    for i in range(rows):
        t = T0 + i
        w.append(t, ["p_kw", "soc"], np.full((50, 2), float(i)), np.full((50, 2), t))
        if i == 0:
            started.set()
    w.close()


def test_a_reader_in_another_process_sees_only_whole_snapshots(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    p = ctx.Process(target=_append_rows, args=(str(tmp_path), 300, started))
    p.start()
    try:
        assert started.wait(60)
        h = History(tmp_path)
        seen = 0
        while p.is_alive() or seen < 300:
            r = h.read(T0, T0 + 400, "soc", now_s=T0 + 400)
            assert (r.values == (r.t_s - T0)[:, None]).all()  # every row whole, in order
            assert r.t_s.tolist() == (T0 + np.arange(len(r.t_s))).tolist()
            one = h.read(T0, T0 + 400, "p_kw", devices=["d7"], now_s=T0 + 400)
            assert (one.values[:, 0] == one.t_s - T0).all()  # (read from the chunk files)
            seen = len(r.t_s)
            if not p.is_alive() and seen < 300:
                break
    finally:
        p.join(60)
    assert p.exitcode == 0 and seen == 300


# -- merges ------------------------------------------------------------------------------
def test_two_shared_writers_merge_by_the_newest_time_stamp(tmp_path):
    a = _writer(tmp_path, "m-a", exclusive=False)
    b = _writer(tmp_path, "m-b", exclusive=False)
    # Each member heard other messages; its snapshot holds what it had.
    _one(a, T0, [1, 1, np.nan], ts=np.array([[T0 - 5], [T0 - 1], [np.nan]]))
    _one(b, T0, [2, 2, 2], ts=np.array([[T0 - 2], [T0 - 3], [T0 - 9]]))
    _one(a, T0 + 5, [3, 3, 3], ts=T0 + 4)  # a's snapshot at +5 stands until b's at +7
    _one(b, T0 + 7, [4, 4, 4], ts=np.array([[T0 + 6], [T0 + 3], [T0 + 6]]))
    _one(a, T0 + 300, [0, 0, 0])
    _one(b, T0 + 301, [0, 0, 0])
    h = History(tmp_path)
    r = h.read(T0, T0 + 60, "p_kw", now_s=T0 + 60)
    assert r.t_s.tolist() == [T0, T0 + 5, T0 + 7]
    assert r.values.tolist() == [[2, 1, 2], [3, 3, 3], [4, 3, 4]]
    roll = h.read(T0, T0 + 300, "p_kw", every_s=300, stat="last", now_s=T0 + 90 * 86400)
    assert roll.values.tolist() == [[4, 3, 4]]  # per device the bucket with the newest last
    mean = h.read(T0, T0 + 300, "p_kw", every_s=300, now_s=T0 + 90 * 86400)
    assert mean.values.tolist() == [[3, 2, 3]] and mean.counts.tolist() == [[2, 2, 2]]
    assert h.latest().column("p_kw")[0].tolist() == [0, 0, 0]
    a.close()
    b.close()


def test_fleet_segment_change_reads_by_id_across_segments(tmp_path):
    w = _writer(tmp_path, ids=["a", "b"])
    _one(w, T0, [1, 2])
    _one(w, T0 + 60, [1, 4])
    w.set_fleet(["b", "c"], 1, sites=["s1", "s2"])  # a removed, c added, mid-bucket
    assert w.path.name == store_name("w", 1)
    _one(w, T0 + 120, [6, 7])
    _one(w, T0 + 300, [0, 0])  # closes the bucket in both segments
    w.close()
    assert sorted(p.name for p in tmp_path.glob("telemetry-*")) == ["telemetry-w-0.zarr",
                                                                    "telemetry-w-1.zarr"]
    h = History(tmp_path)
    r = h.read(T0, T0 + 200, "p_kw", devices=["c", "a", "b"], now_s=T0 + 200)
    assert r.device_ids == ["c", "a", "b"]
    np.testing.assert_array_equal(r.values, [[np.nan, 1, 2], [np.nan, 1, 4], [7, np.nan, 6]])
    roll = h.read(T0, T0 + 300, "p_kw", devices=["a", "b", "c"], every_s=300,
                  now_s=T0 + 90 * 86400)
    assert roll.counts.tolist() == [[2, 3, 1]]  # b's bucket carried over: all three rows
    assert roll.values.tolist() == [[1, 4, 7]]
    assert [s.fleet_version for s in h.stores()] == [0, 1]
    with pytest.raises(HistoryError, match="new fleet_version"):
        HistoryWriter(tmp_path, "w", ["x"], 1).open()


def test_read_since_gives_planner_means_of_closed_buckets(tmp_path):
    w = _writer(tmp_path, ids=["a"])
    for i in range(8):  # one snapshot a minute... every 150 s: two per 5 minutes
        _one(w, T0 + 150 * i, [i])
    _one(w, T0 + 1200, [0])
    w.close()
    h = History(tmp_path)
    r = h.read_since(T0 + 100, every_s=900, now_s=T0 + 1300)
    assert r.tier == "5m" and r.resolution_s == 900.0 and r.t_s.tolist() == [T0, T0 + 900]
    assert r.values[:, 0].tolist() == [2.5, 6.5] and r.counts[:, 0].tolist() == [6, 2]
    with pytest.raises(HistoryError, match="multiple of 300"):
        h.read_since(T0, every_s=100)


# -- claims ------------------------------------------------------------------------------
def _hold_claim(root: str, wid: str, sites: list[str], exclusive: bool, ready, stop) -> None:
    w = HistoryWriter(root, wid, [], 0, sites=sites, exclusive=exclusive).open()
    ready.set()
    stop.wait(60)
    w.close()


def test_claims_are_refused_across_processes_and_stale_ones_taken_over(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_claim, args=(str(tmp_path), "p0of2", ["s1", "s2"], True,
                                              ready, stop))
    p.start()
    try:
        assert ready.wait(60)
        with pytest.raises(ClaimError, match=rf"'p1of2'.*s2 exclusively.*'p0of2' \(host "
                                             rf".*, pid {p.pid}, exclusive"):
            HistoryWriter(tmp_path, "p1of2", [], 0, sites=["s2", "s3"]).open()
        with pytest.raises(ClaimError, match=r"s1, s2 shared.*'p0of2'"):
            HistoryWriter(tmp_path, "member", [], 0, sites=["s1", "s2", "s3"],
                          exclusive=False).open()
        with pytest.raises(ClaimError, match=rf"id 'p0of2' is in use.*pid {p.pid}.*s1, s2"):
            HistoryWriter(tmp_path, "p0of2", [], 0, sites=["s9"]).open()
        ok = HistoryWriter(tmp_path, "p1of2", [], 0, sites=["s3"]).open()  # disjoint: fine
        live = {c.writer: c.live for c in History(tmp_path).writers() if c.claim}
        assert live == {"p0of2": True, "p1of2": True}
        ok.close()
        # A shared claim does not block another shared one, but blocks an exclusive one.
        m1 = HistoryWriter(tmp_path, "m1", [], 0, sites=["s5"], exclusive=False).open()
        m2 = HistoryWriter(tmp_path, "m2", [], 0, sites=["s5"], exclusive=False).open()
        with pytest.raises(ClaimError, match="'m1'"):
            HistoryWriter(tmp_path, "p9", [], 0, sites=["s5"]).open()
        m1.close()
        m2.close()
    finally:
        os.kill(p.pid, signal.SIGKILL)  # dies holding its claim: the claim turns stale
        p.join(30)
    taken = HistoryWriter(tmp_path, "p1of2", [], 0, sites=["s1", "s2"]).open()
    assert [c.writer for c in History(tmp_path).writers() if c.live] == ["p1of2"]
    taken.close()


# -- bad input ---------------------------------------------------------------------------
def test_unknown_device_bad_range_and_bad_names_are_clear_errors(tmp_path):
    w = _writer(tmp_path, ids=["a"])
    _one(w, T0, [1])
    with pytest.raises(HistoryError, match=r"values and ts_s must be \(devices, metrics\)"):
        w.append(T0 + 1, ["p_kw"], np.ones((2, 1)), np.ones((2, 1)))
    w.close()
    h = History(tmp_path)
    with pytest.raises(UnknownDeviceError, match="nope") as exc:
        h.read(T0, T0 + 10, "p_kw", devices=["a", "nope"], now_s=T0)
    assert exc.value.device_ids == ["nope"]
    with pytest.raises(UnknownDeviceError):
        h.latest(["nope"])
    for start, end, every, msg in ((T0, T0, None, "must be after"),
                                   (T0, np.nan, None, "finite"),
                                   (T0, T0 + 10, 0, "positive"),
                                   (T0, T0 + 10 * 86400, 1, "at most 20000")):
        with pytest.raises(HistoryError, match=msg):
            h.read(start, end, "p_kw", every_s=every, now_s=T0)
    with pytest.raises(HistoryError, match="stat must be one of"):
        h.read(T0, T0 + 10, "p_kw", stat="median", now_s=T0)
    with pytest.raises(HistoryError, match="no metric 'volts'"):
        h.read(T0, T0 + 10, "volts", now_s=T0)
    assert root_path(f"file://{tmp_path}") == tmp_path
    with pytest.raises(HistoryError, match="scheme 's3' is not supported"):
        root_path("s3://bucket/history")
    with pytest.raises(ClaimError, match="names the writer's files"):
        HistoryWriter(tmp_path, "../x", ["a"], 0)


# -- old layouts -------------------------------------------------------------------------
def _old_service_store(data_dir: Path, t: np.ndarray) -> None:
    """``history.zarr`` exactly as api/history.py wrote it."""
    group = zarr.open_group(str(data_dir / "history.zarr"), mode="w")
    group.attrs["device_ids"] = ["a", "b"]
    group.create_array("t_s", shape=(0,), chunks=(360,), dtype="f8", fill_value=np.nan)
    for m in ("p_kw", "soc"):
        group.create_array(m, shape=(0, 2), chunks=(360, 2), dtype="f4", fill_value=np.nan)
    for i, ti in enumerate(t):
        for m, base in (("p_kw", 1.0), ("soc", 0.5)):
            group[m].append(np.array([[base + i, np.nan]], dtype=np.float32), axis=0)
        group["t_s"].append(np.array([ti]), axis=0)


def _old_worker_store(data_dir: Path, t: np.ndarray) -> None:
    """``telemetry-0-of-1.zarr`` as the old ingest worker wrote it (TimeSeriesStore)."""
    store = TimeSeriesStore(data_dir / "telemetry-0-of-1.zarr", time_chunk=720)
    for i, ti in enumerate(t):
        data = {}
        for m in ("p_kw", "q_kvar", "v", "soc", "e_kwh", "temp_c"):
            data[m] = (("time", "device"), np.array([[10.0 + i, 20.0 + i]]))
            data[f"{m}_ts_s"] = (("time", "device"), np.array([[ti - 1, ti - 2]]))
        store.append(xr.Dataset(data, coords={"time": np.array([int(ti)], dtype=np.int64),
                                              "device_id": ("device", ["c", "d"])}))
        store.set_attrs({"partition": "0/1", "messages": i})


def test_old_layouts_are_refused_then_converted_and_moved_aside(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    now = T0 + 10 * 86400
    old_t = np.array([T0, T0 + 60, T0 + 3600])  # beyond the raw retention: rollups only
    new_t = now - 600 + 60 * np.arange(3)  # inside it: raw rows too
    _old_service_store(data, np.r_[old_t, new_t])
    _old_worker_store(data, np.r_[old_t, new_t])
    root = data / "history"
    with pytest.raises(LegacyHistoryError, match=r"history.zarr, telemetry-0-of-1.zarr.*"
                                                 r"ecogrid history convert --data-dir"):
        check_layout(data)
    summary = convert_legacy(data, root, now_s=now)
    assert [(s.writer, s.rows, s.raw_rows, s.devices) for s in summary.stores] == [
        ("legacy-history", 6, 3, 2), ("legacy-0-of-1", 6, 3, 2)]
    assert summary.moved_to == data / "history-old-layout"
    assert sorted(os.listdir(summary.moved_to)) == ["history.zarr", "telemetry-0-of-1.zarr"]
    check_layout(data)  # nothing old is left in the data folder
    h = History(root)
    raw = h.read(now - 700, now, "soc", devices=["a", "c"], now_s=now)
    assert raw.tier == "raw" and raw.values.tolist() == [[3.5, 13], [4.5, 14], [5.5, 15]]
    hour = h.read(T0, T0 + 7200, "p_kw", devices=["a", "b", "d"], every_s=3600, now_s=now)
    assert hour.tier == "1h" and hour.values[:, 0].tolist() == [1.5, 3.0]  # (1+2)/2, then 3
    assert np.isnan(hour.values[:, 1]).all() and hour.values[:, 2].tolist() == [20.5, 22.0]
    assert h.read(now - 700, now, "v", devices=["d"], every_s=300, stat="last",
                  now_s=now).values.size  # every standard metric of the worker came along
