"""Telemetry history at fleet scale: the cost of one append and of reading a day back.

    python benchmarks/run.py history --devices 10000 --metrics 8 --appends 60 \
        --day-interval 5

Part 1 appends ``--appends`` snapshots of ``--devices`` x ``--metrics`` values
(and their time stamps) with :class:`~adapters.history.writer.HistoryWriter`:
``append_ms`` is the median of the appends inside a bucket, ``close_5m_ms`` and
``close_1h_ms`` the appends that close a 5-minute or hourly bucket (they write
the rollups). Part 2 writes one UTC day of ``p_kw`` every ``--day-interval``
seconds and times :meth:`~adapters.history.History.read`: one device's day
(raw), every device's day from the 5 min and 1 h rollups, every device's
hour raw, and :meth:`~adapters.history.History.latest`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from adapters.history import History
from adapters.history.writer import HistoryWriter

DAY0 = 1_800_835_200.0  # a UTC midnight


def _snapshot(rng: np.random.Generator, base: np.ndarray, t: float,
              n_metrics: int) -> tuple[np.ndarray, np.ndarray]:
    values = np.round(base[:, None] + rng.normal(0, 0.5, (len(base), n_metrics)), 2)
    ts = np.round(t - rng.uniform(0, 5, (len(base), 1)), 3) * np.ones((1, n_metrics))
    return values, ts


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


def run(devices: int, n_metrics: int, appends: int, day_interval_s: float,
        folder: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    ids = [f"dev-{i:06d}" for i in range(devices)]
    base = rng.uniform(-10, 10, devices)
    metrics = ["p_kw", "q_kvar", "v", "soc", "e_kwh", "temp_c", "online", "i_a"][:n_metrics]
    out: dict[str, Any] = {"devices": devices, "metrics": n_metrics}

    root = folder / "appends"
    w = HistoryWriter(root, "bench", ids, 0).open()
    inside, close_5m, close_1h = [], [], []
    t = DAY0 + 3600 - 5 * (appends // 2)  # the hour boundary in the middle
    for _ in range(appends):
        values, ts = _snapshot(rng, base, t, n_metrics)
        ms, _ = _timed(lambda: w.append(t, metrics, values, ts))  # noqa: B023
        if t % 3600 == 0:
            close_1h.append(ms)
        elif t % 300 == 0:
            close_5m.append(ms)
        else:
            inside.append(ms)
        t += 5.0
    w.close()
    raw_bytes = sum(f.stat().st_size for f in (root).rglob("*") if f.is_file())
    out.update(append_ms=round(float(np.median(inside)), 2),
               append_p90_ms=round(float(np.percentile(inside, 90)), 2),
               close_5m_ms=round(float(np.median(close_5m)), 2) if close_5m else None,
               close_1h_ms=round(float(np.max(close_1h)), 2) if close_1h else None,
               bytes_per_snapshot=int(raw_bytes / appends))

    root = folder / "day"
    w = HistoryWriter(root, "bench", ids, 0).open()
    n_rows = int(86400 / day_interval_s)
    t0 = time.perf_counter()
    for i in range(n_rows + 1):  # the last one, past midnight, closes the day's buckets
        t = DAY0 + i * day_interval_s
        values, ts = _snapshot(rng, base, t, 1)
        w.append(t, ["p_kw"], values, ts)
    w.close()
    out["day_rows"] = n_rows
    out["day_write_s"] = round(time.perf_counter() - t0, 1)
    h = History(root)
    now = DAY0 + 86400
    dev = [ids[devices // 2]]
    for name, kw in (("read_one_device_day_raw_ms", {"devices": dev}),
                     ("read_all_devices_day_5m_ms", {"every_s": 300.0}),
                     ("read_all_devices_day_1h_ms", {"every_s": 3600.0}),
                     ("read_one_device_day_1h_ms", {"devices": dev, "every_s": 3600.0})):
        ms, r = _timed(lambda: h.read(DAY0, DAY0 + 86400, "p_kw", now_s=now, **kw))  # noqa: B023
        out[name] = round(ms, 1)
        out[name.replace("_ms", "_tier")] = r.tier
    ms, r = _timed(lambda: h.read(DAY0, DAY0 + 3600, "p_kw", now_s=now))
    out["read_all_devices_hour_raw_ms"] = round(ms, 1)
    out["hour_raw_shape"] = list(r.values.shape)
    ms, _ = _timed(lambda: h.read_since(DAY0 + 86400 - 3600, now_s=now))
    out["read_since_last_hour_15min_ms"] = round(ms, 1)
    ms, _ = _timed(h.latest)
    out["latest_ms"] = round(ms, 1)
    return out


def main(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="run.py history", description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--metrics", type=int, default=8, choices=range(1, 9))
    p.add_argument("--appends", type=int, default=60)
    p.add_argument("--day-interval", type=float, default=5.0,
                   help="snapshot interval of the one-day store [s]")
    p.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    args = p.parse_args(argv)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench-history-"))
    try:
        return run(args.devices, args.metrics, args.appends, args.day_interval, folder)
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
