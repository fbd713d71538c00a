"""The optimizer in a worker process: :class:`ProcessPlanner`.

The model build and the solve take seconds at fleet scale and hold the GIL
much of that time; in the service's own process they would stall the event
loop and push REST and WebSocket latencies far past their target. A
:class:`ProcessPlanner` runs a planner (the runtime hands in
:class:`api.live.planning.OptimizerPlanner`) in one long-lived worker process
and keeps the fleet there between calls.
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
from collections.abc import Callable
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, NoReturn

import numpy as np

from api.live.types import Planner, PlannerUnavailable
from twin.fleet import Fleet

log = logging.getLogger(__name__)


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


def _serve(conn: Connection, planner_factory: Callable[..., Planner],
           planner_kwargs: dict[str, Any], log_level: int, nice: int = 0) -> None:
    """The worker process: one planner (``planner_factory(**planner_kwargs)``) and the last
    fleet sent.

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
        planner = planner_factory(**planner_kwargs)
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
                reply = ("ok", fleet_key, result, getattr(planner, "last_forecast", None),
                         records.take())
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


class ProcessPlanner:
    """A planner in a worker process: the same plans, off the service's GIL.

    The Pyomo/compiled model build and the HiGHS solve take seconds for a
    fleet of 10,000 devices and hold the GIL much of that time. Run in the
    service's process (even in a thread) they stall the event loop, and REST
    and WebSocket latencies rise from milliseconds to hundreds of
    milliseconds while a plan is computed. Here the optimizer runs in one
    long-lived worker process (``spawn``: the service has threads); the
    calling thread only waits on a pipe.

    The worker keeps its planner and the fleet between
    calls: the fleet is sent with the first plan and again only when its
    :func:`fleet_fingerprint` changes (``fleet_sends`` counts the sends); the
    ``state`` arrays go with every call. Results are those of the planner's
    ``plan``; the forecast used (its ``last_forecast``) is kept in
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
    planner_factory : callable
        ``planner_factory(**planner_kwargs)`` makes the planner in the worker (a class
        or module-level function: it is pickled by reference).
    planner_kwargs : dict, optional
        Its arguments (picklable); ``time_limit_s`` among them also sets the default
        ``timeout_s``.
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

    def __init__(self, planner_factory: Callable[..., Planner],
                 planner_kwargs: dict[str, Any] | None = None, *,
                 timeout_s: float | None = None, start_timeout_s: float = 120.0,
                 nice: int = 10):
        if not 0 <= nice <= 19:
            raise ValueError(f"nice must be 0..19 (added to the worker's niceness), got {nice}")
        self.nice = int(nice)
        self.planner_factory = planner_factory
        self.planner_kwargs = dict(planner_kwargs or {})
        time_limit_s = float(self.planner_kwargs.get("time_limit_s", 30.0))
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
        """The planner's plan, computed in the worker process.

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
        proc = self._ctx.Process(target=_serve, name="ecogrid-optimizer", daemon=True,
                                 args=(child_conn, self.planner_factory, self.planner_kwargs,
                                       logging.getLogger().getEffectiveLevel(), self.nice))
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
