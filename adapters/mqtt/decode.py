"""Parse MQTT telemetry and status messages: pure functions, no broker.

Two entry points share the same parsing rules (docs/protocol.md):

* :func:`decode` turns one ``(topic, payload)`` into readable
  :class:`TelemetryValue` rows with ids, for tests and tools;
* :class:`BatchDecoder` turns a list of ``(topic, payload)`` into
  :class:`Batch` arrays of device rows, metric columns, values and time
  stamps, ready for one vectorized write into :class:`twin.telemetry.Telemetry`.

Neither raises on bad input: every refused message or value is counted under
a reason from :data:`adapters.mqtt.types.REJECT_REASONS`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson

from adapters.mqtt.topics import (
    DEVICE,
    DEVICE_STATUS,
    MAX_METRIC_NAME,
    METRIC,
    SITE_STATUS,
    Topic,
    parse_topic,
)
from twin.fleet import Fleet
from twin.limits import rated_power_kw

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_FUTURE_S = 86_400.0  # a time stamp further ahead than this is refused
MAX_LAYOUTS = 200_000  # cached payload layouts (per site, device topic, metric topic)

# Physical range of each standard metric (inclusive). Unknown metrics: finite only.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "p_kw": (-1.0e6, 1.0e6),
    "q_kvar": (-1.0e6, 1.0e6),
    "v": (0.0, 1.0e6),
    "soc": (0.0, 1.0),
    "e_kwh": (-1.0e12, 1.0e12),
    "temp_c": (-80.0, 200.0),
}
DEFAULT_RANGE = (-1.0e15, 1.0e15)
P_KW_MARGIN = 1.5  # |p_kw| may reach this times the device's rated power (twin.limits)


class TelemetryValue(NamedTuple):
    site_id: str
    device_id: str
    metric: str
    value: float
    ts_s: float


@dataclass
class Decoded:
    """Result of :func:`decode` for one message."""

    values: list[TelemetryValue] = field(default_factory=list)
    status: tuple[str, str | None, bool] | None = None  # (site, device or None, online)
    rejects: Counter[str] = field(default_factory=Counter)


def parse_status(payload: bytes) -> bool | None:
    """``online`` -> True, ``offline`` -> False (plain or JSON string); else None."""
    text = bytes(payload).strip().strip(b'"').lower()
    if text == b"online":
        return True
    if text == b"offline":
        return False
    return None


def _load_json(payload: bytes) -> tuple[Any, str | None]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None, "too_large"
    try:
        return orjson.loads(payload), None
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        if "infinity" in text or b"NaN" in payload or b"Infinity" in payload:
            return None, "not_finite"
        return None, "malformed_json"


def _is_number(v: Any) -> bool:
    t = type(v)
    return t is float or t is int


def check_timestamp(ts: Any, now_s: float) -> tuple[float, str | None]:
    """Validate a time stamp [Unix s]; ``None`` means 'now'. Returns (ts, reject reason)."""
    if ts is None:
        return now_s, None
    if not _is_number(ts):
        return 0.0, "bad_timestamp"
    ts = float(ts)
    if not math.isfinite(ts) or ts <= 0.0:
        return 0.0, "bad_timestamp"
    if ts > now_s + MAX_FUTURE_S:
        return 0.0, "future_timestamp"
    return ts, None


def parse_telemetry(top: Topic, obj: Any, now_s: float
                    ) -> tuple[dict[str, dict[str, Any]] | None, float, str | None]:
    """Bring the three telemetry shapes to ``({device: {metric: value}}, ts_s, reason)``.

    Values are not checked here (see :func:`check_values`).
    """
    if top.kind == METRIC:
        if isinstance(obj, dict):
            if "value" not in obj:
                return None, 0.0, "wrong_type"
            ts, why = check_timestamp(obj.get("ts"), now_s)
            return {top.device_id: {top.metric: obj["value"]}}, ts, why
        return {top.device_id: {top.metric: obj}}, now_s, None
    if not isinstance(obj, dict):
        return None, 0.0, "wrong_type"
    ts, why = check_timestamp(obj.get("ts"), now_s)
    if why:
        return None, 0.0, why
    if top.kind == DEVICE:
        metrics = {k: v for k, v in obj.items() if k != "ts"}
        return {top.device_id: metrics}, ts, None
    devices = obj.get("devices")
    if not isinstance(devices, dict):
        return None, 0.0, "wrong_type"
    for metrics in devices.values():
        if not isinstance(metrics, dict):
            return None, 0.0, "wrong_type"
    return devices, ts, None


def check_value(metric: str, v: Any) -> str | None:
    """Reject reason of one value under the metric's global range, or None."""
    if not _is_number(v):
        return "wrong_type"
    v = float(v)
    if not math.isfinite(v):
        return "not_finite"
    lo, hi = METRIC_RANGES.get(metric, DEFAULT_RANGE)
    if not lo <= v <= hi:
        return "out_of_range"
    return None


def decode(topic: str, payload: bytes, now_s: float) -> Decoded:
    """Decode one message without a fleet: ids, metric names, values and time stamps.

    Parameters
    ----------
    topic : str
        MQTT topic.
    payload : bytes
        Message body.
    now_s : float
        The receiver's clock [Unix s]: the time stamp of values sent without
        one, and the reference for refusing time stamps from the future.
    """
    out = Decoded()
    top = parse_topic(topic)
    if top is None:
        out.rejects["bad_topic"] += 1
        return out
    if top.kind in (SITE_STATUS, DEVICE_STATUS):
        online = parse_status(payload)
        if online is None:
            out.rejects["bad_status"] += 1
        else:
            out.status = (top.site_id, top.device_id, online)
        return out
    obj, why = _load_json(payload)
    if why:
        out.rejects[why] += 1
        return out
    devices, ts, why = parse_telemetry(top, obj, now_s)
    if why or devices is None:
        out.rejects[why or "wrong_type"] += 1
        return out
    for device_id, metrics in devices.items():
        for metric, v in metrics.items():
            if not metric or len(metric) > MAX_METRIC_NAME:
                out.rejects["wrong_type"] += 1
                continue
            reason = check_value(metric, v)
            if reason:
                out.rejects[reason] += 1
            else:
                out.values.append(TelemetryValue(top.site_id, device_id, metric, float(v), ts))
    return out


@dataclass
class Batch:
    """Decoded telemetry of many messages, as arrays.

    ``rows``/``cols``/``values``/``ts_s`` are the accepted values (device row,
    metric column, value, time stamp [Unix s]); ``site_status`` and
    ``device_status`` are ``(row, online, t_s)`` events in arrival order;
    ``rejects`` counts refused messages and values by reason.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    ts_s: np.ndarray
    messages: int
    site_status: list[tuple[int, bool, float]]
    device_status: list[tuple[int, bool, float]]
    rejects: Counter[str]

    @property
    def n_values(self) -> int:
        return len(self.values)


class _Layout(NamedTuple):
    keys: list[tuple[str, tuple[str, ...]]]
    rows: list[int]
    cols: list[int]
    keep: tuple[tuple[str, str], ...] | None  # (device, metric) kept when some are refused
    rejects: tuple[tuple[str, int], ...]


class BatchDecoder:
    """Decode batches of messages into fleet rows and metric columns.

    Parameters
    ----------
    fleet : Fleet
        Sites and devices that exist; others are refused.
    metric_column : callable
        ``name -> column`` (``-1`` when no column can be given), e.g.
        :meth:`twin.telemetry.Telemetry.metric_column`.
    """

    def __init__(self, fleet: Fleet, metric_column: Callable[[str], int]):
        self.fleet = fleet
        self.metric_column = metric_column
        self.site_row = fleet.site_row
        self.device_row = fleet.device_row
        self.device_site = fleet.device_site.tolist()
        self.p_max_kw = rated_power_kw(fleet) * P_KW_MARGIN + 1.0
        self._layouts: dict[tuple[str, str | None, str | None], _Layout] = {}
        self._lo = np.zeros(0)
        self._hi = np.zeros(0)
        self._p_col = metric_column("p_kw")

    def _bounds(self, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self._lo) < n_cols:
            names = [None] * n_cols
            for name in list(METRIC_RANGES):
                c = self.metric_column(name)
                if 0 <= c < n_cols:
                    names[c] = name
            rng = [METRIC_RANGES.get(n, DEFAULT_RANGE) if n else DEFAULT_RANGE for n in names]
            self._lo = np.array([r[0] for r in rng])
            self._hi = np.array([r[1] for r in rng])
        return self._lo, self._hi

    def _layout(self, site: str, site_row: int, key: tuple[str, str | None, str | None],
                keys: list[tuple[str, tuple[str, ...]]]) -> _Layout:
        rows: list[int] = []
        cols: list[int] = []
        refused: Counter[str] = Counter()
        keep: list[tuple[str, str]] = []
        for device_id, metrics in keys:
            row = self.device_row.get(device_id)
            if row is None or self.device_site[row] != site_row:
                refused["unknown_device"] += len(metrics) or 1
                continue
            for m in metrics:
                if not m or len(m) > MAX_METRIC_NAME:
                    refused["wrong_type"] += 1
                    continue
                c = self.metric_column(m)
                if c < 0:
                    refused["too_many_metrics"] += 1
                    continue
                rows.append(row)
                cols.append(c)
                keep.append((device_id, m))
        lay = _Layout(keys, rows, cols, None if not refused else tuple(keep),
                      tuple(refused.items()))
        if len(self._layouts) >= MAX_LAYOUTS:  # bound memory against floods of bogus ids
            self._layouts.clear()
        self._layouts[key] = lay
        return lay

    def decode(self, messages: Iterable[tuple[str, bytes]], now_s: float) -> Batch:
        """Decode ``(topic, payload)`` pairs received up to ``now_s`` [Unix s]."""
        rows: list[int] = []
        cols: list[int] = []
        vals: list[Any] = []
        tss: list[float] = []
        rejects: Counter[str] = Counter()
        site_status: list[tuple[int, bool, float]] = []
        device_status: list[tuple[int, bool, float]] = []
        n_msg = 0
        for topic, payload in messages:
            n_msg += 1
            top = parse_topic(topic)
            if top is None:
                rejects["bad_topic"] += 1
                continue
            site_row = self.site_row.get(top.site_id)
            if site_row is None:
                rejects["unknown_site"] += 1
                continue
            if top.kind == SITE_STATUS or top.kind == DEVICE_STATUS:
                online = parse_status(payload)
                if online is None:
                    rejects["bad_status"] += 1
                elif top.kind == SITE_STATUS:
                    site_status.append((site_row, online, now_s))
                else:
                    row = self.device_row.get(top.device_id)
                    if row is None or self.device_site[row] != site_row:
                        rejects["unknown_device"] += 1
                    else:
                        device_status.append((row, online, now_s))
                continue
            obj, why = _load_json(payload)
            if why:
                rejects[why] += 1
                continue
            devices, ts, why = parse_telemetry(top, obj, now_s)
            if why or devices is None:
                rejects[why or "wrong_type"] += 1
                continue
            key = (top.site_id, top.device_id, top.metric)
            keys = [(d, tuple(m)) for d, m in devices.items()]
            lay = self._layouts.get(key)
            if lay is None or lay.keys != keys:
                lay = self._layout(top.site_id, site_row, key, keys)
            for reason, count in lay.rejects:
                rejects[reason] += count
            if lay.keep is None:
                if top.kind == METRIC:
                    v = devices[top.device_id][top.metric]
                    if type(v) is float or type(v) is int:
                        rows.append(lay.rows[0])
                        cols.append(lay.cols[0])
                        vals.append(v)
                        tss.append(ts)
                    else:
                        rejects["wrong_type"] += 1
                    continue
                new = [v for m in devices.values() for v in m.values()]
            else:  # some devices or metrics refused: take the kept pairs only
                new = [devices[d][m] for d, m in lay.keep]
            kinds = set(map(type, new))
            if kinds <= {float, int}:
                rows.extend(lay.rows)
                cols.extend(lay.cols)
                vals.extend(new)
                tss.extend([ts] * len(new))
            else:  # keep the numbers, refuse the rest
                for r, c, v in zip(lay.rows, lay.cols, new, strict=True):
                    if type(v) is float or type(v) is int:
                        rows.append(r)
                        cols.append(c)
                        vals.append(v)
                        tss.append(ts)
                    else:
                        rejects["wrong_type"] += 1
        return self._finish(rows, cols, vals, tss, n_msg, site_status, device_status, rejects)

    def _finish(self, rows: list[int], cols: list[int], vals: list[Any], tss: list[float],
                n_msg: int, site_status: list[tuple[int, bool, float]],
                device_status: list[tuple[int, bool, float]], rejects: Counter[str]) -> Batch:
        r = np.array(rows, dtype=np.int64)
        c = np.array(cols, dtype=np.int64)
        try:
            v = np.array(vals, dtype=np.float64)
        except OverflowError:  # integers beyond float range
            v = np.array([float(x) if abs(x) < 1e300 else np.inf for x in vals])
        t = np.array(tss, dtype=np.float64)
        if len(v):
            lo, hi = self._bounds(int(c.max()) + 1)
            finite = np.isfinite(v)
            ok = finite & (v >= lo[c]) & (v <= hi[c])
            p = c == self._p_col
            ok[p] &= np.abs(v[p]) <= self.p_max_kw[r[p]]
            if not ok.all():
                n_inf = int((~finite).sum())
                if n_inf:
                    rejects["not_finite"] += n_inf
                n_rng = int((~ok).sum()) - n_inf
                if n_rng:
                    rejects["out_of_range"] += n_rng
                r, c, v, t = r[ok], c[ok], v[ok], t[ok]
        return Batch(r, c, v, t, n_msg, site_status, device_status, rejects)


def site_payload(ts_s: float, devices: Mapping[str, Mapping[str, float]]) -> bytes:
    """Encode a whole-site telemetry payload (the emulator's and benchmark's shape)."""
    return orjson.dumps({"ts": ts_s, "devices": devices})
