"""Run one scenario: the orchestrator of generators, SimPy events, strategy, twin and results.

``prepare_run`` does everything that can refuse the scenario (fleet edits,
event targets, CSV coverage) before any output exists. ``run_scenario`` then
marks the output folder incomplete, steps the SimPy clock over the period
(one process for the steps, one per event), streams results to
``results.zarr`` and, only when every step is done, writes ``kpis.json``,
``events.csv`` and ``run.json`` and removes the incomplete mark. A run that
fails or is interrupted leaves ``INCOMPLETE`` (with the reason) in place.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numba
import numpy as np
import simpy
import yaml

from scenarios.ev import plug_in_batch
from scenarios.events import (
    EVENT_LOG_COLUMNS,
    Conditions,
    check_event_targets,
    start_event_processes,
)
from scenarios.fleets import build_fleet
from scenarios.inputs import InputChunk, InputGenerator
from scenarios.optimized import make_optimizer_strategy
from scenarios.results import ResultsWriter
from scenarios.schema import Scenario, SiteOutage
from scenarios.strategies import (
    FleetIndex,
    NoControl,
    Observation,
    SelfConsumptionRule,
    Strategy,
    island,
)
from twin.fleet import Fleet
from twin.kpis import StepTracker, compute_kpis
from twin.model import Twin

log = logging.getLogger(__name__)

INCOMPLETE = "INCOMPLETE"
RUN_FILE = "run.json"
ProgressFn = Callable[[int, int, float, float], None]


class RunError(RuntimeError):
    """A run that cannot start or did not finish (the message says why)."""


@dataclass
class PreparedRun:
    """A scenario with its fleet, twin, inputs and strategy, ready to step."""

    scenario: Scenario
    fleet: Fleet
    twin: Twin
    index: FleetIndex
    inputs: InputGenerator
    strategy: Strategy


@dataclass
class RunResult:
    out_dir: Path
    steps: int
    wall_s: float
    kpis: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)


def make_strategy(scenario: Scenario, index: FleetIndex, fleet: Fleet, twin: Twin) -> Strategy:
    """The scenario's control strategy."""
    spec = scenario.strategy
    if spec.kind == "none":
        return NoControl(index)
    if spec.kind == "rule":
        return SelfConsumptionRule(index, spec.curtail_to_export_limit)
    return make_optimizer_strategy(scenario, index, fleet, twin)


def prepare_run(scenario: Scenario, source: str = "scenario") -> PreparedRun:
    """Build everything the run needs; raises ``ValueError`` (or ScenarioError) on bad input."""
    fleet = build_fleet(scenario.fleet)
    check_event_targets(scenario.events, fleet, source)
    twin = Twin(fleet, backend="numba", soc=scenario.initial_soc, t_s=scenario.period.start_s)
    index = FleetIndex(fleet, twin.params)
    strategy = make_strategy(scenario, index, fleet, twin)
    islanding = any(isinstance(e, SiteOutage) and e.mode == "islanded" for e in scenario.events)
    lookahead = round(scenario.strategy.horizon / scenario.period.step) \
        if strategy.name == "optimizer" else 0
    inputs = InputGenerator(scenario, fleet, twin.params,
                            pv_availability=strategy.name != "none" or islanding,
                            extra_steps=lookahead)
    return PreparedRun(scenario, fleet, twin, index, inputs, strategy)


# -- output folder ---------------------------------------------------------------------
def start_run_dir(out_dir: Path, overwrite: bool = False) -> None:
    """Create ``out_dir`` marked incomplete; refuses a non-empty folder unless ``overwrite``."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise RunError(f"{out_dir} exists and is not empty (use --overwrite to replace "
                           "a previous run)")
        if not ((out_dir / RUN_FILE).exists() or (out_dir / INCOMPLETE).exists()):
            raise RunError(f"{out_dir} does not look like a scenario run; not replacing it")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INCOMPLETE).write_text("run started, not finished\n")


def is_complete(run_dir: str | Path) -> bool:
    """True for a folder holding a finished run."""
    run_dir = Path(run_dir)
    if (run_dir / INCOMPLETE).exists() or not (run_dir / RUN_FILE).exists():
        return False
    try:
        return json.loads((run_dir / RUN_FILE).read_text()).get("status") == "complete"
    except json.JSONDecodeError:
        return False


# -- the run ------------------------------------------------------------------------
def run_scenario(scenario: Scenario, out_dir: str | Path, *, source: str = "scenario",
                 progress: ProgressFn | None = None, overwrite: bool = False,
                 prepared: PreparedRun | None = None, threads: int = 1) -> RunResult:
    """Run a scenario and write its results to ``out_dir``.

    Parameters
    ----------
    scenario : Scenario
        Validated scenario.
    out_dir : str or Path
        Output folder (created; must be empty unless ``overwrite``).
    progress : callable, optional
        Called as ``progress(steps_done, n_steps, sim_time_s, wall_s)`` now and then.
    prepared : PreparedRun, optional
        The result of :func:`prepare_run`, when the caller already made it.
    threads : int
        Threads of the twin's numba kernel. One is the default: a scenario
        step is short, and parallel threads on a busy machine cost more in
        waiting than they gain (sweeps get their parallelism from processes).
    """
    run = prepared or prepare_run(scenario, source)
    out = Path(out_dir)
    start_run_dir(out, overwrite)
    (out / "scenario.yaml").write_text(yaml.safe_dump(scenario.resolved(), sort_keys=False))
    t_wall = time.perf_counter()
    try:
        stepper = _Stepper(run, out, progress)
        with _numba_threads(threads):
            stepper.run()
        wall_s = time.perf_counter() - t_wall
        kpis = compute_kpis(run.fleet, run.twin.state, stepper.tracker, run.strategy.stats())
        kpis["scenario"] = scenario.name
        (out / "kpis.json").write_text(json.dumps(kpis, indent=1))
        write_events_csv(out / "events.csv", stepper.cond.log)
        stepper.writer.store.set_attrs({"events": json.dumps(stepper.cond.log)})
        (out / RUN_FILE).write_text(json.dumps({
            "status": "complete", "scenario": scenario.name, "steps": stepper.steps,
            "wall_s": round(wall_s, 3), "strategy": scenario.strategy.kind,
            "sites": run.fleet.n_sites, "devices": run.fleet.n_devices}, indent=1))
        (out / INCOMPLETE).unlink()
    except BaseException as exc:
        (out / INCOMPLETE).write_text(f"run did not finish: {type(exc).__name__}: {exc}\n")
        raise
    return RunResult(out, stepper.steps, wall_s, kpis, list(stepper.cond.log))


@contextmanager
def _numba_threads(n: int) -> Iterator[None]:
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def write_events_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=EVENT_LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


class ChunkFeed:
    """Input chunks in order, the next one made by a helper thread while the run steps.

    Chunks are generated one after the other, in order, so the numbers do not
    depend on the thread. ``window`` gives the inputs of the coming steps,
    across chunk boundaries, for controllers that look ahead.
    """

    def __init__(self, inputs: InputGenerator, pool: ThreadPoolExecutor, chunk_len: int):
        self.inputs = inputs
        self.pool = pool
        self.chunk_len = chunk_len
        self.total = inputs.n_total
        self.chunks: list[InputChunk] = []
        self.upcoming: Future[InputChunk] | None = pool.submit(inputs.chunk, 0, chunk_len)

    def _pull(self) -> None:
        if self.upcoming is None:
            raise RunError("asked for inputs after the end of the period")
        chunk = self.upcoming.result()
        self.chunks.append(chunk)
        end = chunk.first + chunk.n
        self.upcoming = (self.pool.submit(self.inputs.chunk, end, self.chunk_len)
                         if end < self.total else None)

    def _end(self) -> int:
        return self.chunks[-1].first + self.chunks[-1].n if self.chunks else 0

    def at(self, k: int) -> InputChunk:
        """The chunk holding step ``k`` (older chunks are dropped)."""
        while self._end() <= k:
            self._pull()
        while self.chunks[0].first + self.chunks[0].n <= k:
            self.chunks.pop(0)
        return self.chunks[0]

    def window(self, k: int, n: int) -> dict[str, np.ndarray]:
        """Inputs of steps ``k .. k+n-1`` (fewer at the end of what is generated)."""
        while self._end() < min(k + n, self.total):
            self._pull()
        parts: dict[str, list[np.ndarray]] = {name: [] for name in WINDOW_FIELDS}
        for c in self.chunks:
            lo, hi = max(k - c.first, 0), min(k + n - c.first, c.n)
            if hi <= lo:
                continue
            for name in WINDOW_FIELDS:
                parts[name].append(getattr(c, name)[lo:hi])
        return {name: np.concatenate(v) for name, v in parts.items()}


WINDOW_FIELDS = ("t_s", "pv_avail_kw", "pv_site_kw", "load_site_kw", "price_eur_per_mwh",
                 "feed_in_eur_per_mwh", "co2_kg_per_mwh")


class _Stepper:
    """The step process and its per-step bookkeeping."""

    def __init__(self, run: PreparedRun, out: Path, progress: ProgressFn | None):
        sc = run.scenario
        self.run_ = run
        self.progress = progress
        self.dt_s = sc.period.step
        self.n_steps = sc.period.n_steps
        self.chunk_len = max(1, round(86400.0 / self.dt_s))
        self.cond = Conditions.initial(run.fleet)
        self.tracker = StepTracker(run.fleet.site_feeder, run.fleet.n_feeders)
        self.writer = ResultsWriter(
            out / "results.zarr", run.fleet, run.twin.params, sc.outputs.device_variables,
            sc.outputs.device_types, sc.outputs.time_chunk_steps,
            attrs={"scenario": sc.name, "seed": sc.seed, "step_s": self.dt_s,
                   "strategy": sc.strategy.kind, "start": sc.period.start.isoformat(),
                   "end": sc.period.end.isoformat()})
        self.steps = 0

    def run(self) -> None:
        sc = self.run_.scenario
        env = simpy.Environment(initial_time=sc.period.start_s)
        start_event_processes(env, sc.events, self.run_.fleet, self.cond)
        pool = ThreadPoolExecutor(1, thread_name_prefix="scenario-inputs")
        try:
            env.process(self._steps(env, pool))
            env.run(until=sc.period.start_s + self.n_steps * self.dt_s)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            try:
                self.writer.close()
            except Exception:
                if self.steps == self.n_steps:
                    raise
                log.exception("results writer failed while stopping an unfinished run")
        if self.steps != self.n_steps:
            raise RunError(f"stopped after {self.steps} of {self.n_steps} steps")

    def _steps(self, env: simpy.Environment,
               pool: ThreadPoolExecutor) -> Generator[simpy.Event, Any, None]:
        run, ix, twin = self.run_, self.run_.index, self.run_.twin
        state, params = twin.state, twin.params
        strategy, cond, dt_s = run.strategy, self.cond, self.dt_s
        dt_h = dt_s / 3600.0
        observe = strategy.name != "none"
        seen_version = -1
        pv_ok = load_ok = np.zeros(0)
        pv_all_ok = load_all_ok = True
        ok = state.device_ok.copy()
        islanded = comm_rows = np.zeros(0, dtype=np.int64)
        last_sp = np.full(params.n_devices, np.nan)
        seen_e = state.e_kwh.copy()  # the battery energy the controller sees
        fresh = np.ones(params.n_devices, dtype=bool)
        feed = ChunkFeed(run.inputs, pool, self.chunk_len)
        chunk: InputChunk | None = None
        ev_bounds = np.zeros(1, dtype=np.int64)
        t_wall = time.perf_counter()
        report_every = max(1, self.n_steps // 200)
        yield env.timeout(0)  # let events due at the start apply first
        for k in range(self.n_steps):
            if chunk is None or k >= chunk.first + chunk.n:
                chunk = feed.at(k)
                ev_bounds = np.searchsorted(chunk.ev_step, np.arange(chunk.n + 1))
            i = k - chunk.first
            t_s = float(chunk.t_s[i])
            if cond.version != seen_version:
                seen_version = cond.version
                ok = cond.device_ok(ix.device_site)
                islanded = np.flatnonzero(cond.site_islanded)
                comm_rows = np.flatnonzero(cond.site_comm_lost[ix.device_site])
                fresh = cond.site_comm_lost[ix.device_site] == 0
                state.device_ok[:] = ok
                pv_ok, load_ok = ok[ix.pv], ok[ix.load]
                pv_all_ok, load_all_ok = bool(pv_ok.all()), bool(load_ok.all())
            lo, hi = ev_bounds[i], ev_bounds[i + 1]
            if hi > lo:
                plug_in_batch(params.conn_start, params.conn_stop, state.conn_need_kwh,
                              state.conn_departure_s, chunk.ev_charger[lo:hi],
                              chunk.ev_need_kwh[lo:hi], chunk.ev_departure_s[lo:hi])
            x = chunk.step_inputs(i, cond.price_factor, cond.price_add_eur_per_mwh)
            step_ok = ok
            if observe or len(islanded):
                if len(comm_rows):  # stale where the gateway is down
                    np.copyto(seen_e, state.e_kwh, where=fresh)
                else:
                    np.copyto(seen_e, state.e_kwh)
                assert chunk.pv_avail_kw is not None and chunk.pv_site_kw is not None
                pv_avail = chunk.pv_avail_kw[i]
                pv_site = (chunk.pv_site_kw[i] if pv_all_ok
                           else ix.site_sum(ix.pv_site, pv_avail * pv_ok))
                load_site = (chunk.load_site_kw[i] if load_all_ok else run.inputs.load_site_kw(
                    chunk.load_frac[i:i + 1], load_ok)[0])
                obs = Observation(t_s, dt_s, pv_avail, pv_site, load_site,
                                  self._ev_site(t_s, dt_h, ok), seen_e, ok,
                                  window=partial(feed.window, k), price_factor=cond.price_factor,
                                  price_add_eur_per_mwh=cond.price_add_eur_per_mwh)
                sp = strategy.setpoints(obs) if observe else np.full(params.n_devices, np.nan)
                if len(islanded):
                    step_ok = ok.copy()
                    island(ix, sp, obs, islanded, step_ok)
                    state.device_ok[:] = step_ok
                if len(comm_rows):
                    sp[comm_rows] = last_sp[comm_rows]
                last_sp = sp
            else:
                sp = None
            twin.step(t_s, dt_s, x, sp)
            if step_ok is not ok:
                state.device_ok[:] = ok
            self.tracker.update(t_s, dt_s, state.site_flows, cond.feeder_import_limit_kw,
                                cond.feeder_export_limit_kw)
            self.writer.record(t_s, state, float(x.price_eur_per_mwh[0]),
                               float(x.feed_in_eur_per_mwh[0]), float(x.co2_kg_per_mwh[0]))
            self.steps = k + 1
            if self.progress is not None and (k % report_every == 0 or k + 1 == self.n_steps):
                self.progress(k + 1, self.n_steps, t_s + dt_s, time.perf_counter() - t_wall)
            yield env.timeout(dt_s)

    def _ev_site(self, t_s: float, dt_h: float, ok: np.ndarray) -> np.ndarray:
        ix, st = self.run_.index, self.run_.twin.state
        if len(ix.ev) == 0:
            return np.zeros(ix.n_sites)
        staying = st.conn_need_kwh * (st.conn_departure_s > t_s)
        need_kw = np.bincount(ix.conn_charger, staying, minlength=len(ix.ev)) / dt_h
        ev_kw = np.minimum(need_kw, ix.ev_max_kw * (ok[ix.ev] != 0))
        return -ix.site_sum(ix.ev_site, ev_kw)
