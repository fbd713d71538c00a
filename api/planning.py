"""The live planner: the optimizer over the twin's current state and a forecast.

:class:`OptimizerPlanner` implements :class:`api.types.Planner` with
``optimizer.optimize``. The batteries' state of charge comes from live
telemetry (devices that have not reported start at ``default_soc``).

The forecast starts from ``optimizer.synthetic.synthetic_inputs`` (clear-sky
PV at each site, profile-shaped loads, a day-ahead-like price and carbon
curve: the live service has no weather, market or carbon feed yet) and is
corrected by the recent telemetry the service hands in (``history_t_s``,
``history_p_kw`` in ``state``) through :func:`optimizer.forecasting.live_forecast`:
PV is clear sky times a clear-sky index from recent telemetry, the load blends
the day-type profile with the latest measurement, and EV sessions come from the
arrival statistics of recent charging sessions. :class:`HistoryWindow` keeps
those recent 15-minute means from the zarr history (:class:`api.history.TelemetryHistory`),
reading only the snapshots it has not seen.

:class:`ProcessPlanner` runs an :class:`OptimizerPlanner` in one long-lived
worker process. The model build and the solve take seconds at fleet scale and
hold the GIL much of that time; in the service's own process they would stall
the event loop and push REST and WebSocket latencies far past their target.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import traceback
import weakref
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, NoReturn

import numpy as np

from optimizer.plan import jsonable
from twin.fleet import BATTERY, Fleet
from twin.limits import SETPOINT_KEY

log = logging.getLogger(__name__)


def plan_setpoints(fleet: Fleet, setpoints: np.ndarray, digits: int = 2
                   ) -> dict[str, dict[str, list[float | None]]]:
    """``(n_steps, n_devices)`` setpoints as ``{kind: {device_id: [value or None]}}``.

    Devices without any setpoint over the horizon are left out; values are
    rounded to ``digits`` decimals [kW].
    """
    out: dict[str, dict[str, list[float | None]]] = {"p_kw": {}, "p_limit_kw": {}}
    has = np.isfinite(setpoints).any(axis=0)
    ids = fleet.device_id
    for row in np.flatnonzero(has).tolist():
        kind = SETPOINT_KEY.get(int(fleet.device_type[row]))
        if kind is None:
            continue
        col = np.round(setpoints[:, row], digits)
        out[kind][ids[row]] = [None if not np.isfinite(v) else float(v) for v in col]
    return {k: v for k, v in out.items() if v}


class OptimizerPlanner:
    """Plans with ``optimizer.optimize`` (see the module docstring for the forecast).

    Parameters
    ----------
    time_limit_s : float
        Solver wall-clock limit [s].
    default_soc : float
        State of charge assumed for batteries without telemetry (0..1).
    min_history_s : float
        History needed before the telemetry corrects the forecast [s].
    """

    def __init__(self, time_limit_s: float = 30.0, default_soc: float = 0.5,
                 min_history_s: float = 86400.0):
        from optimizer.dispatch import optimize  # noqa: F401  (fail early when missing)

        self.time_limit_s = time_limit_s
        self.default_soc = default_soc
        self.min_history_s = min_history_s
        self.last_forecast: Any = None

    def forecast(self, fleet: Fleet, state: dict[str, np.ndarray], start_s: float,
                 step_s: float, n_steps: int) -> Any:
        """The plan's forecast (:class:`optimizer.types.Forecast`) from ``start_s`` [Unix s].

        ``state`` may hold ``history_t_s`` (n_times,) [Unix s] and
        ``history_p_kw`` (n_times, n_devices) [kW]: recent device powers (e.g.
        15-minute means). With at least ``min_history_s`` of them the
        synthetic stand-in is corrected (:func:`optimizer.forecasting.live_forecast`).
        """
        from optimizer.forecasting import live_forecast
        from optimizer.synthetic import synthetic_inputs

        base = synthetic_inputs(fleet, n_steps=n_steps, t0_s=start_s, dt_s=step_s)
        hist_t, hist_p = state.get("history_t_s"), state.get("history_p_kw")
        if hist_t is None or hist_p is None or len(hist_t) < 2:
            return base
        hist_t, hist_p = np.asarray(hist_t, dtype=np.float64), np.asarray(hist_p)
        if hist_p.shape != (len(hist_t), fleet.n_devices):
            raise ValueError(f"history_p_kw has shape {hist_p.shape}; expected "
                             f"({len(hist_t)}, {fleet.n_devices}): one row per history_t_s "
                             "and one column per device")
        return live_forecast(fleet, base, start_s, step_s, hist_t, hist_p,
                             min_history_s=self.min_history_s, ev_sessions=True)

    def plan(self, fleet: Fleet, state: dict[str, np.ndarray], start_s: float, step_s: float,
             n_steps: int) -> dict[str, Any]:
        from optimizer.dispatch import optimize
        from optimizer.types import OptimizerConfig

        soc = np.asarray(state["soc"], dtype=np.float64).copy()
        bat = fleet.device_type == BATTERY
        lo = np.nan_to_num(fleet.soc_min, nan=0.0)
        hi = np.nan_to_num(fleet.soc_max, nan=1.0)
        soc = np.where(np.isfinite(soc), soc, self.default_soc)
        soc = np.where(bat, np.clip(soc, lo, hi), 0.0)
        forecast = self.forecast(fleet, state, start_s, step_s, n_steps)
        self.last_forecast = forecast
        config = OptimizerConfig(n_steps=n_steps, dt_s=step_s, time_limit_s=self.time_limit_s)
        plan = optimize(fleet, soc, forecast, config, t0_s=start_s)
        kpis = {k: v for k, v in plan.kpis.items() if k != "peak_import_kw_by_site"}
        if plan.reason:
            kpis["solver_reason"] = plan.reason
        return {"setpoints": plan_setpoints(fleet, np.asarray(plan.setpoints)),
                "kpis": jsonable(kpis),
                "solver_status": plan.status,
                "solver_time_s": float(plan.timings.get("total_s", 0.0))}


def fleet_fingerprint(fleet: Fleet) -> str:
    """A digest of every column of ``fleet``: equal digests mean the same fleet.

    Hashes the bytes of the site, feeder and device columns (a few MB for
    10,000 devices: milliseconds), so a fleet edited in place or replaced by an
    equal copy is recognized as well as a new one.
    """
    h = hashlib.blake2b(digest_size=16)
    for f in fields(fleet):
        if not f.init:
            continue
        value = getattr(fleet, f.name)
        items = sorted(value.items()) if isinstance(value, dict) else [("", value)]
        for key, arr in items:
            arr = np.asarray(arr)
            h.update(f"{f.name}.{key}:{arr.dtype.str}:{arr.shape};".encode())
            if arr.dtype.kind == "O":
                h.update("\x1f".join(map(str, arr.tolist())).encode())
            else:
                h.update(np.ascontiguousarray(arr).view(np.uint8))
    return h.hexdigest()


class WorkerTraceback(Exception):
    """The traceback of an exception raised in the worker process (its ``__cause__``)."""

    def __str__(self) -> str:
        return "\n\n(in the optimizer worker process)\n" + str(self.args[0] if self.args else "")


class _RecordBuffer(logging.Handler):
    """Keeps the worker's log records of one call, ready to pickle to the parent."""

    def __init__(self, limit: int = 200):
        super().__init__()
        self.limit = limit
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) >= self.limit:
            return
        rec = copy.copy(record)
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
        rec.msg, rec.args, rec.exc_info, rec.exc_text = msg, None, None, None
        self.records.append(rec)

    def take(self) -> list[logging.LogRecord]:
        out, self.records = self.records, []
        return out


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError naming its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _serve(conn: Connection, planner_kwargs: dict[str, Any], log_level: int,
           nice: int = 0) -> None:
    """The worker process: one :class:`OptimizerPlanner` and the last fleet sent.

    Messages from the parent are ``("plan", fleet_key, fleet or None, state,
    start_s, step_s, n_steps)`` and ``("stop",)``; replies are ``("ready", pid)``
    once, then ``("ok", fleet_key, result, forecast, records)`` or ``("error",
    fleet_key, exception, traceback, records)`` per plan, where ``fleet_key``
    is the fingerprint of the fleet the worker holds. Ctrl-C is the parent's
    business (SIGINT ignored); the worker ends on ``stop`` or when the parent's
    end of the pipe closes. Its stdout goes to ``/dev/null`` (HiGHS writes its
    banner there; the parent's console stays clean); its log records go to
    the parent with each reply; stderr is inherited (fatal errors).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice and hasattr(os, "nice"):
        os.nice(nice)  # a plan is batch work: the service's own threads come first
    devnull = os.open(os.devnull, os.O_WRONLY)  # HiGHS prints its banner on stdout
    os.dup2(devnull, 1)
    os.close(devnull)
    records = _RecordBuffer()
    root = logging.getLogger()
    root.handlers[:] = [records]
    root.setLevel(log_level)
    try:
        planner = OptimizerPlanner(**planner_kwargs)
    except BaseException as exc:
        conn.send(("error", None, _portable(exc), traceback.format_exc(), records.take()))
        return
    conn.send(("ready", os.getpid()))
    fleet: Fleet | None = None
    fleet_key: str | None = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        except Exception as exc:  # a message that does not unpickle here
            reply: tuple = ("error", fleet_key, _portable(exc), traceback.format_exc(),
                            records.take())
        else:
            if msg[0] == "stop":
                return
            _, key, new_fleet, state, start_s, step_s, n_steps = msg
            if new_fleet is not None:
                fleet, fleet_key = new_fleet, key
            try:
                if fleet is None or key != fleet_key:
                    raise RuntimeError("the optimizer worker holds no fleet for this plan")
                result = planner.plan(fleet, state, start_s, step_s, n_steps)
                reply = ("ok", fleet_key, result, planner.last_forecast, records.take())
            except Exception as exc:
                reply = ("error", fleet_key, _portable(exc), traceback.format_exc(),
                         records.take())
        try:
            conn.send(reply)
        except (OSError, EOFError):
            return
        except Exception as exc:  # a result that does not pickle
            conn.send(("error", fleet_key, RuntimeError(f"the plan could not be sent back: "
                       f"{type(exc).__name__}: {exc}"), traceback.format_exc(), []))


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection


class _Slot:
    """The planner's worker and the lock of its pipe (shared with the finalizer)."""

    def __init__(self) -> None:
        self.worker: _Worker | None = None
        self.lock = threading.Lock()


def _ended(code: int | None) -> str:
    if code is None:
        return "closed its connection"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _discard(w: _Worker) -> int | None:
    """Stop ``w``'s process if it still runs, reap it, close the pipe; its exit code."""
    proc = w.process
    if proc.is_alive():
        proc.kill()
    proc.join(5.0)
    w.conn.close()
    return proc.exitcode


def _shutdown(slot: _Slot, grace_s: float = 5.0) -> None:
    """Stop the slot's worker: politely when idle, else (a plan in flight) at once."""
    w, slot.worker = slot.worker, None
    if w is None:
        return
    idle = slot.lock.acquire(blocking=False)
    try:
        proc = w.process
        if idle and proc.is_alive():
            try:
                w.conn.send(("stop",))
            except OSError:
                pass
            proc.join(grace_s)
        for stop in (proc.terminate, proc.kill):
            if proc.is_alive():
                stop()
                proc.join(2.0)
        if idle:
            w.conn.close()  # else the caller in flight closes it when it sees the EOF
    finally:
        if idle:
            slot.lock.release()


class PlannerUnavailable(RuntimeError):
    """The optimizer worker could not answer this call: it died, hung (and was stopped),
    or the planner is closed. The next call starts a new worker; HTTP 503."""


class ProcessPlanner:
    """:class:`OptimizerPlanner` in a worker process: the same plans, off the service's GIL.

    The Pyomo/compiled model build and the HiGHS solve take seconds for a
    fleet of 10,000 devices and hold the GIL much of that time. Run in the
    service's process (even in a thread) they stall the event loop, and REST
    and WebSocket latencies rise from milliseconds to hundreds of
    milliseconds while a plan is computed. Here the optimizer runs in one
    long-lived worker process (``spawn``: the service has threads); the
    calling thread only waits on a pipe.

    The worker keeps its :class:`OptimizerPlanner` and the fleet between
    calls: the fleet is sent with the first plan and again only when its
    :func:`fleet_fingerprint` changes (``fleet_sends`` counts the sends); the
    ``state`` arrays go with every call. Results have the same format as
    :meth:`OptimizerPlanner.plan`; the forecast used is kept in
    ``last_forecast``; the worker's log records are re-logged here.

    Failures:

    * an exception raised by the optimizer (e.g. ValueError for a ``state``
      of the wrong shape) is raised here with its own type and message, the
      worker's traceback as its ``__cause__``;
    * a worker found dead before a call (killed between plans) is replaced,
      with a warning, and the call goes ahead;
    * a worker that dies during a call, or does not answer within
      ``timeout_s`` (it is then killed), makes that call raise
      :class:`PlannerUnavailable` saying so; it is not retried (the same
      input may kill the next worker too), and the next call starts a new
      worker.

    :meth:`close` stops the worker; it is also stopped when the planner is
    garbage collected or the interpreter exits, so no process is left behind.
    The worker ignores SIGINT (Ctrl-C reaches the whole process group; the
    parent shuts the worker down).

    Parameters
    ----------
    time_limit_s : float
        Solver wall-clock limit [s].
    default_soc : float
        State of charge assumed for batteries without telemetry (0..1).
    min_history_s : float
        History needed before the telemetry corrects the forecast [s].
    timeout_s : float, optional
        Longest wait for one plan [s]; default ``2 * time_limit_s + 60``
        (the time limit covers the solve only, not the model build).
    start_timeout_s : float
        Longest wait for a new worker to import the optimizer [s].
    nice : int
        Added to the worker's scheduling niceness (0..19, POSIX): on a busy
        machine the service, its ingest and the devices get the CPU before a
        plan does (a plan takes longer; the API does not wait for it).
    """

    def __init__(self, time_limit_s: float = 30.0, default_soc: float = 0.5,
                 min_history_s: float = 86400.0, timeout_s: float | None = None,
                 start_timeout_s: float = 120.0, nice: int = 10):
        if not 0 <= nice <= 19:
            raise ValueError(f"nice must be 0..19 (added to the worker's niceness), got {nice}")
        self.nice = int(nice)
        self.time_limit_s = time_limit_s
        self.default_soc = default_soc
        self.min_history_s = min_history_s
        self.timeout_s = 2.0 * time_limit_s + 60.0 if timeout_s is None else float(timeout_s)
        self.start_timeout_s = float(start_timeout_s)
        self.last_forecast: Any = None
        self.fleet_sends = 0  # fleets sent to a worker
        self.worker_starts = 0  # worker processes started
        self._ctx = multiprocessing.get_context("spawn")
        self._slot = _Slot()
        self._fleet_key: str | None = None  # fingerprint of the fleet the worker holds
        self._closed = False
        self._finalizer = weakref.finalize(self, _shutdown, self._slot)

    @property
    def worker_pid(self) -> int | None:
        """Process id of the current worker (None before the first plan and after close)."""
        w = self._slot.worker
        return None if w is None else w.process.pid

    def worker_alive(self) -> bool:
        """True while the current worker process runs."""
        w = self._slot.worker
        return w is not None and w.process.is_alive()

    def start(self) -> None:
        """Start the worker now (the first :meth:`plan` does it otherwise)."""
        with self._slot.lock:
            self._ensure_worker()

    def close(self) -> None:
        """Stop the worker process; later plans raise PlannerUnavailable. Idempotent.

        A plan in flight in another thread ends with PlannerUnavailable.
        """
        self._closed = True
        self._finalizer()

    def plan(self, fleet: Fleet, state: dict[str, np.ndarray], start_s: float, step_s: float,
             n_steps: int) -> dict[str, Any]:
        """The plan of :meth:`OptimizerPlanner.plan`, computed in the worker process.

        Raises
        ------
        PlannerUnavailable
            When the planner is closed, or the worker died or timed out
            during this call (the next call starts a new worker).
        Exception
            Whatever the optimizer raised in the worker (same type and message).
        """
        key = fleet_fingerprint(fleet)
        with self._slot.lock:
            w = self._ensure_worker()
            send = key != self._fleet_key
            msg = ("plan", key, fleet if send else None, dict(state), float(start_s),
                   float(step_s), int(n_steps))
            try:
                w.conn.send(msg)
            except OSError as exc:
                self._lost(w, "planning", exc)
            if send:
                self.fleet_sends += 1
            reply = self._receive(w, self.timeout_s, "planning")
        status, self._fleet_key = reply[0], reply[1]
        _relog(reply[-1])
        if status == "ok":
            self.last_forecast = reply[3]
            return reply[2]
        raise reply[2] from WorkerTraceback(reply[3])

    # -- the worker ---------------------------------------------------------------
    def _ensure_worker(self) -> _Worker:
        """The running worker; a new one when there is none or it died (lock held)."""
        if self._closed:
            raise PlannerUnavailable("this ProcessPlanner is closed")
        w = self._slot.worker
        if w is not None and w.process.is_alive():
            return w
        if w is not None:
            self._slot.worker = None
            pid, code = w.process.pid, _discard(w)
            log.warning("the optimizer worker process (pid %s) %s since the last plan; "
                        "starting a new one", pid, _ended(code))
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        kwargs = {"time_limit_s": self.time_limit_s, "default_soc": self.default_soc,
                  "min_history_s": self.min_history_s}
        proc = self._ctx.Process(target=_serve, name="ecogrid-optimizer", daemon=True,
                                 args=(child_conn, kwargs, logging.getLogger().getEffectiveLevel(),
                                       self.nice))
        proc.start()
        child_conn.close()  # the parent keeps one end: EOF when the worker dies
        w = _Worker(proc, parent_conn)
        self._slot.worker = w
        self._fleet_key = None
        self.worker_starts += 1
        reply = self._receive(w, self.start_timeout_s, "starting")
        if reply[0] != "ready":
            self._slot.worker = None
            _discard(w)
            _relog(reply[-1])
            raise reply[2] from WorkerTraceback(reply[3])
        log.info("optimizer worker process started (pid %s)", proc.pid)
        return w

    def _receive(self, w: _Worker, timeout_s: float, doing: str) -> tuple:
        """The worker's next reply, or PlannerUnavailable when it dies or times out."""
        try:
            ready = w.conn.poll(timeout_s)
        except (OSError, EOFError) as exc:
            self._lost(w, doing, exc)
        if not ready:
            pid = w.process.pid
            self._forget(w)
            raise PlannerUnavailable(f"the optimizer worker process (pid {pid}) did not answer "
                                     f"within {timeout_s:g} s while {doing}; it was stopped "
                                     "and the next call starts a new one")
        try:
            return w.conn.recv()
        except (OSError, EOFError) as exc:
            self._lost(w, doing, exc)

    def _forget(self, w: _Worker) -> int | None:
        if self._slot.worker is w:
            self._slot.worker = None
        self._fleet_key = None
        return _discard(w)

    def _lost(self, w: _Worker, doing: str, exc: BaseException) -> NoReturn:
        pid = w.process.pid
        code = self._forget(w)
        if self._closed:
            raise PlannerUnavailable(f"the ProcessPlanner was closed while {doing}") from None
        raise PlannerUnavailable(f"the optimizer worker process (pid {pid}) {_ended(code)} "
                                 f"while {doing}; the next call starts a new one") from exc


def _relog(records: list[logging.LogRecord]) -> None:
    """Hand the worker's log records to this process's loggers."""
    for rec in records:
        logging.getLogger(rec.name).handle(rec)


class HistoryWindow:
    """Recent device powers as ``every_s`` means, kept up to date from the zarr history.

    Parameters
    ----------
    window_s : float
        How far back the window reaches [s].
    every_s : float
        Length of the mean buckets [s].
    max_rows : int
        Most history snapshots read at once (bounds memory).

    The first :meth:`update` reads the whole window; later ones only the
    snapshots appended since.
    """

    def __init__(self, window_s: float = 14 * 86400.0, every_s: float = 900.0,
                 max_rows: int = 360):
        if not window_s > 0 or not every_s > 0:
            raise ValueError(f"window_s ({window_s}) and every_s ({every_s}) must be positive")
        self.window_s = float(window_s)
        self.every_s = float(every_s)
        self.max_rows = int(max_rows)
        self._read = 0  # history snapshots consumed
        # per block read: bucket keys, sums and counts per device (time order)
        self._blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, history: Any, now_s: float) -> None:
        """Read the snapshots added to ``history`` since the last call (up to ``now_s``)."""
        with history._lock:  # the snapshot times held in memory, consistent with n
            t_all = np.asarray(history._t, dtype=np.float64)
        n = len(t_all)
        start = max(self._read, int(np.searchsorted(t_all[:n], now_s - self.window_s)))
        while start < n:
            stop = min(n, start + self.max_rows)
            t = t_all[start:stop]
            p = np.asarray(history.group["p_kw"][start:stop], dtype=np.float64)
            self._add(t, p)
            start = stop
        self._read = n
        self._trim(now_s)
        if len(self._blocks) > 1:
            self._blocks = [self._merged()]

    def _add(self, t: np.ndarray, p: np.ndarray) -> None:
        b = np.floor(t / self.every_s).astype(np.int64)  # increasing with t
        first = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        ok = np.isfinite(p)
        self._blocks.append((
            b[first], np.add.reduceat(np.where(ok, p, 0.0), first, axis=0).astype(np.float32),
            np.add.reduceat(ok.astype(np.float32), first, axis=0)))

    def _trim(self, now_s: float) -> None:
        oldest = np.floor((now_s - self.window_s) / self.every_s)
        self._blocks = [blk for blk in self._blocks if blk[0][-1] >= oldest]

    def _merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keys = np.concatenate([blk[0] for blk in self._blocks])
        sums = np.concatenate([blk[1] for blk in self._blocks])
        counts = np.concatenate([blk[2] for blk in self._blocks])
        first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])  # blocks share edges
        return (keys[first], np.add.reduceat(sums, first, axis=0),
                np.add.reduceat(counts, first, axis=0))

    def series(self) -> dict[str, np.ndarray]:
        """``history_t_s`` (bucket mid-times [Unix s]) and ``history_p_kw`` (means [kW],
        NaN where a device had no value), the planner's history inputs."""
        if not self._blocks:
            return {}
        keys, sums, counts = self._merged()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return {"history_t_s": (keys + 0.5) * self.every_s, "history_p_kw": mean}
