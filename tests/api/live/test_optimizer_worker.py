"""The optimizer in a worker process (:class:`api.live.optimizer_worker.ProcessPlanner`): the same plans
as in-process, the fleet sent only when it changes, errors brought back as their own type,
a dead or hung worker replaced, and no process left behind."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from api.live.optimizer_worker import ProcessPlanner, _RecordBuffer, _relog, fleet_fingerprint
from api.live.planning import OptimizerPlanner
from api.live.runtime import default_planner
from api.settings import Settings
from tests.api.server import login, running_app
from twin.fleet import PV, Fleet
from twin.generator import generate_fleet

pytestmark = pytest.mark.timeout(120)

STEP_S = 900.0
T0 = datetime(2026, 6, 4, 9, tzinfo=UTC).timestamp()
N_STEPS = 16


class _ExitOnUnpickle:
    """Ends the process that unpickles it (the worker dies in the middle of a call)."""

    def __reduce__(self):
        return (os._exit, (3,))


class _SleepOnUnpickle:
    """Blocks the process that unpickles it for a minute (a hung worker)."""

    def __reduce__(self):
        return (time.sleep, (60.0,))


def _state(fleet: Fleet, seed: int = 1) -> dict[str, np.ndarray]:
    """Live state with NaN SoC for some batteries and two days of 15-minute history."""
    rng = np.random.default_rng(seed)
    n = fleet.n_devices
    soc = rng.uniform(0.2, 0.9, n)
    soc[::5] = np.nan
    t = T0 - 2 * 86400.0 + STEP_S * np.arange(2 * 96) + STEP_S / 2
    p = rng.uniform(-5.0, 0.0, (len(t), n))
    hour = (t % 86400.0) / 3600.0
    day = np.clip(np.sin(np.pi * (hour - 6.0) / 12.0), 0.0, None)
    p[:, fleet.device_type == PV] = 5.0 * day[:, None]
    return {"soc": soc, "p_kw": rng.uniform(-5.0, 5.0, n), "history_t_s": t,
            "history_p_kw": p}


def _gone(pid: int, wait_s: float = 10.0) -> bool:
    """True once no process ``pid`` exists (it has been reaped)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _assert_same_plan(got: dict, want: dict) -> None:
    assert got["solver_status"] == want["solver_status"]
    assert got["setpoints"].keys() == want["setpoints"].keys()
    for kind, devices in want["setpoints"].items():
        assert got["setpoints"][kind].keys() == devices.keys()
        for dev, values in devices.items():
            a = np.array(got["setpoints"][kind][dev], dtype=float)
            b = np.array(values, dtype=float)
            np.testing.assert_allclose(a, b, atol=1e-6, rtol=0, equal_nan=True)
    assert got["kpis"].keys() == want["kpis"].keys()
    for k, v in want["kpis"].items():
        if isinstance(v, float):
            assert got["kpis"][k] == pytest.approx(v, abs=1e-6, rel=1e-9), k
        else:
            assert got["kpis"][k] == v, k


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return generate_fleet(n_sites=3)


@pytest.fixture(scope="module")
def planner():
    p = ProcessPlanner(OptimizerPlanner, {"time_limit_s": 30.0})
    yield p
    p.close()


def test_same_plan_and_forecast_as_in_process(fleet, planner):
    state = _state(fleet)
    local = OptimizerPlanner(time_limit_s=30.0)
    want = local.plan(fleet, state, T0, STEP_S, N_STEPS)
    got = planner.plan(fleet, state, T0, STEP_S, N_STEPS)
    assert want["solver_status"] == "optimal"
    _assert_same_plan(got, want)
    assert set(got) == set(want)
    for name in ("pv_kw", "load_kw", "import_price_eur_per_mwh"):
        np.testing.assert_array_equal(getattr(planner.last_forecast, name),
                                      getattr(local.last_forecast, name))


def test_the_fleet_is_sent_once_and_again_when_it_changed(fleet, planner):
    sends, starts = planner.fleet_sends, planner.worker_starts
    planner.plan(fleet, _state(fleet), T0, STEP_S, N_STEPS)
    pid = planner.worker_pid
    planner.plan(fleet, _state(fleet, seed=2), T0 + STEP_S, STEP_S, N_STEPS)
    equal_copy = pickle.loads(pickle.dumps(fleet))
    planner.plan(equal_copy, _state(fleet), T0, STEP_S, N_STEPS)
    assert planner.fleet_sends == max(sends, 1)  # at most the first call of the module
    other = generate_fleet(n_sites=2)
    planner.plan(other, _state(other), T0, STEP_S, N_STEPS)
    assert planner.fleet_sends == max(sends, 1) + 1
    planner.plan(fleet, _state(fleet), T0, STEP_S, N_STEPS)
    assert planner.fleet_sends == max(sends, 1) + 2
    assert planner.worker_pid == pid and planner.worker_starts == max(starts, 1)


def test_the_fingerprint_sees_every_column(fleet):
    same = pickle.loads(pickle.dumps(fleet))
    assert fleet_fingerprint(same) == fleet_fingerprint(fleet)
    edited = pickle.loads(pickle.dumps(fleet))
    edited.device_float["battery_kwh"][np.flatnonzero(np.isfinite(edited.battery_kwh))[0]] += 1
    assert fleet_fingerprint(edited) != fleet_fingerprint(fleet)
    renamed = pickle.loads(pickle.dumps(fleet))
    renamed.device_id[0] = renamed.device_id[0] + "x"
    assert fleet_fingerprint(renamed) != fleet_fingerprint(fleet)


def test_a_bad_state_raises_the_in_process_error(fleet, planner):
    state = dict(_state(fleet), history_p_kw=np.zeros((2 * 96, fleet.n_devices - 1)))
    with pytest.raises(ValueError) as local:
        OptimizerPlanner().plan(fleet, state, T0, STEP_S, N_STEPS)
    with pytest.raises(ValueError) as remote:
        planner.plan(fleet, state, T0, STEP_S, N_STEPS)
    assert str(remote.value) == str(local.value)
    assert "history_p_kw has shape" in str(remote.value)
    assert "in the optimizer worker process" in str(remote.value.__cause__)
    pid = planner.worker_pid
    assert planner.plan(fleet, _state(fleet), T0, STEP_S, N_STEPS)["solver_status"] == "optimal"
    assert planner.worker_pid == pid  # the worker survived


def test_the_worker_runs_at_a_lower_priority(planner):
    planner.start()
    assert planner.nice == 10
    assert os.getpriority(os.PRIO_PROCESS, planner.worker_pid) == min(
        19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    with pytest.raises(ValueError, match=r"nice must be 0\.\.19"):
        ProcessPlanner(OptimizerPlanner, nice=25)


def test_the_worker_ignores_sigint(fleet, planner):
    planner.start()
    pid = planner.worker_pid
    os.kill(pid, signal.SIGINT)
    time.sleep(0.3)
    assert planner.plan(fleet, _state(fleet), T0, STEP_S, N_STEPS)["solver_status"] == "optimal"
    assert planner.worker_pid == pid


def test_a_worker_killed_between_plans_is_replaced(fleet):
    planner = ProcessPlanner(OptimizerPlanner, {"time_limit_s": 30.0})
    try:
        planner.plan(fleet, _state(fleet), T0, STEP_S, N_STEPS)
        pid = planner.worker_pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while planner.worker_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        result = planner.plan(fleet, _state(fleet), T0, STEP_S, N_STEPS)
        assert result["solver_status"] == "optimal"
        assert planner.worker_pid != pid and planner.worker_starts == 2
        assert planner.fleet_sends == 2  # the new worker got the fleet
    finally:
        planner.close()


def test_a_worker_dying_or_hanging_in_a_call_fails_that_call_only(fleet):
    planner = ProcessPlanner(OptimizerPlanner, {"time_limit_s": 30.0})
    try:
        planner.plan(fleet, _state(fleet), T0, STEP_S, N_STEPS)
        pid = planner.worker_pid
        with pytest.raises(RuntimeError, match=rf"worker process \(pid {pid}\) exited with "
                           "code 3 while planning; the next call starts a new one"):
            planner.plan(fleet, dict(_state(fleet), x=_ExitOnUnpickle()), T0, STEP_S, N_STEPS)
        assert planner.plan(fleet, _state(fleet), T0, STEP_S, N_STEPS)["solver_status"] == \
            "optimal"
        pid = planner.worker_pid
        assert planner.worker_starts == 2 and planner.fleet_sends == 2
        planner.timeout_s = 2.0
        with pytest.raises(RuntimeError, match=rf"worker process \(pid {pid}\) did not answer "
                           "within 2 s while planning; it was stopped"):
            planner.plan(fleet, dict(_state(fleet), x=_SleepOnUnpickle()), T0, STEP_S, N_STEPS)
        assert _gone(pid)
        planner.timeout_s = 60.0
        assert planner.plan(fleet, _state(fleet), T0, STEP_S, N_STEPS)["solver_status"] == \
            "optimal"
        assert planner.worker_starts == 3
    finally:
        planner.close()


def test_close_stops_the_worker_even_during_a_plan(fleet):
    planner = ProcessPlanner(OptimizerPlanner, {"time_limit_s": 30.0})
    planner.start()
    pid = planner.worker_pid
    errors: list[BaseException] = []

    def plan() -> None:
        try:
            planner.plan(fleet, dict(_state(fleet), x=_SleepOnUnpickle()), T0, STEP_S, N_STEPS)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=plan)
    thread.start()
    deadline = time.monotonic() + 10
    while not planner._slot.lock.locked() and time.monotonic() < deadline:
        time.sleep(0.01)  # until the plan is in flight
    time.sleep(0.2)
    planner.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "closed while planning" in str(errors[0])
    assert _gone(pid)
    assert not [p for p in multiprocessing.active_children() if p.pid == pid]
    assert planner.worker_pid is None
    planner.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        planner.plan(fleet, _state(fleet), T0, STEP_S, N_STEPS)


def test_the_setting_selects_the_planner():
    assert Settings().optimizer_process is True
    p = default_planner(Settings())
    assert isinstance(p, ProcessPlanner) and p.worker_pid is None  # started by the first plan
    p.close()
    assert isinstance(default_planner(Settings(optimizer_process=False)), OptimizerPlanner)


def test_the_app_plans_in_the_worker_and_stops_it(tmp_path):
    admin = ("root", "root-pass-1")
    settings = Settings(data_dir=tmp_path, mode="offline", fleet_sites=2, admin_user=admin[0],
                        admin_password=admin[1], optimizer_enabled=False,
                        plan_horizon_s=4 * 3600.0)
    with running_app(settings, clock=lambda: T0) as (url, app):
        planner = app.state.runtime.planner
        assert isinstance(planner, ProcessPlanner)
        with httpx.Client(base_url=url, timeout=120) as c:
            auth = login(c, *admin)
            r = c.post("/api/v1/plans", headers=auth)
            assert r.status_code in (200, 201), r.text
            assert r.json()["solver_status"] == "optimal"
            pid = planner.worker_pid
            assert pid is not None and pid != os.getpid()
            # A worker that does not answer in time: that request gets 503 naming it, the
            # worker is stopped, and the next request plans in a new one.
            timeout_s, planner.timeout_s = planner.timeout_s, 0.001
            r = c.post("/api/v1/plans", headers=auth)
            assert r.status_code == 503, r.text
            assert f"worker process (pid {pid}) did not answer" in r.json()["error"]
            assert _gone(pid)
            planner.timeout_s = timeout_s
            r = c.post("/api/v1/plans", headers=auth)
            assert r.status_code in (200, 201), r.text
            pid = planner.worker_pid
    assert _gone(pid)


def test_worker_log_records_are_relogged_here(caplog):
    buf = _RecordBuffer(limit=2)
    log = logging.getLogger("optimizer.dispatch")
    log.addHandler(buf)
    try:
        try:
            raise ValueError("bad input")
        except ValueError:
            log.exception("dispatch solve failed for %d sites", 3)
        log.warning("second")
        log.warning("third")  # over the limit: dropped
    finally:
        log.removeHandler(buf)
    records = pickle.loads(pickle.dumps(buf.take()))  # as the worker sends them
    assert buf.take() == []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="optimizer.dispatch"):
        _relog(records)
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]
    assert caplog.records[1].getMessage() == "second"
    assert caplog.records[0].getMessage().startswith("dispatch solve failed for 3 sites\n")
    assert "ValueError: bad input" in caplog.records[0].getMessage()
