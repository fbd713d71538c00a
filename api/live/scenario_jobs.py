"""Scenario runs requested through the API: validate, run in a background thread, track.

:class:`ScenarioJobs` validates the posted scenario text with
``scenarios.schema.parse_scenario`` (a bad file is refused before anything
runs), records the run in the registry, and runs ``scenarios.runner`` in a
worker thread (one at a time), updating status (``queued -> running ->
done | failed``), progress (0..1) and KPIs. Results go to
``$ECOGRID_DATA_DIR/scenarios/<id>``.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.registry import Registry
from adapters.registry import audit as audit_repo
from adapters.registry import scenarios as scen_repo
from scenarios.runner import run_scenario
from scenarios.schema import parse_scenario

log = logging.getLogger(__name__)

MAX_SCENARIO_BYTES = 1_000_000


class ScenarioJobs:
    """Background scenario runs.

    Parameters
    ----------
    registry : Registry
        Where the runs are recorded.
    out_dir : Path
        Parent folder of the run folders.
    clock : callable
        ``() -> Unix s``.
    """

    def __init__(self, registry: Registry, out_dir: Path, clock: Callable[[], float]):
        self.registry = registry
        self.out_dir = Path(out_dir)
        self.clock = clock
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (a daemon: a long run never holds up the service's
        shutdown)."""
        self._worker = threading.Thread(target=self._loop, name="scenario-runs", daemon=True)
        self._worker.start()

    def _loop(self) -> None:
        while (job := self._queue.get()) is not None:
            self._run(*job)

    def submit(self, text: str, user: str) -> dict[str, Any]:
        """Validate ``text`` (scenario YAML or JSON) and queue the run.

        Raises
        ------
        ValueError
            For an empty, oversized or invalid scenario (the message lists the problems).
        """
        if not text.strip():
            raise ValueError("the request body must be a scenario file (YAML or JSON)")
        if len(text) > MAX_SCENARIO_BYTES:
            raise ValueError(f"scenario file over {MAX_SCENARIO_BYTES} bytes")
        scenario = parse_scenario(text, source="request body")
        run_id = secrets.token_hex(6)
        now = self.clock()
        with self.registry.session() as s:
            rec = scen_repo.add_scenario(s, run_id, now, user, text)
            audit_repo.record(s, now, user, "scenario.submit", f"scenario:{run_id}")
        self._queue.put((run_id, scenario))
        return rec

    def _update(self, run_id: str, **fields: Any) -> None:
        with self.registry.session() as s:
            scen_repo.update_scenario(s, run_id, **fields)

    def _run(self, run_id: str, scenario: Any) -> None:
        self._update(run_id, status="running")
        last = [0.0]

        def progress(done: int, total: int, _sim_s: float, _wall_s: float) -> None:
            frac = done / total if total else 1.0
            if frac - last[0] >= 0.01 or done == total:
                last[0] = frac
                self._update(run_id, progress=round(frac, 4))

        try:
            result = run_scenario(scenario, self.out_dir / run_id, source=f"scenario {run_id}",
                                  progress=progress)
        except Exception as exc:
            log.warning("scenario %s failed: %s", run_id, exc)
            self._update(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
            return
        self._update(run_id, status="done", progress=1.0, kpis=_jsonable(result.kpis))

    def close(self) -> None:
        """Stop taking runs (a run in progress is abandoned with the process)."""
        self._queue.put(None)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "tolist", str)()))
