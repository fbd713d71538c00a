"""Scenario events as SimPy processes on the scenario's clock.

Each event in the file becomes one process: it waits until its start, changes
the shared :class:`Conditions`, waits its duration (if any) and changes them
back, logging both moments with their time. The runner reads the conditions
before every step:

* ``site_outage`` (``off``): every device of the site is switched off;
  (``islanded``): the site may neither import nor export, so EV charging
  stops, PV is curtailed to what the site can use or store, and the load is
  shed in steps where the battery cannot carry it;
* ``device_failure``: the devices are off until repaired (the end of the event);
* ``comm_loss``: the controller sees the sites' last data from before the loss
  and its new setpoints do not reach them (devices keep their last setpoint);
* ``price_spike``: import price times ``factor`` plus ``add_eur_per_mwh``;
* ``feeder_limit``: new import and/or export limits for feeders.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import simpy

from scenarios.schema import (
    CommLoss,
    DeviceFailure,
    FeederLimit,
    PriceSpike,
    ScenarioError,
    SiteOutage,
)
from twin.fleet import Fleet

EVENT_LOG_COLUMNS = ("time_s", "time", "event", "phase", "targets", "detail")


@dataclass
class Conditions:
    """The state events have put the scenario in; counters let events overlap."""

    device_down: np.ndarray
    site_off: np.ndarray
    site_islanded: np.ndarray
    site_comm_lost: np.ndarray
    feeder_import_limit_kw: np.ndarray
    feeder_export_limit_kw: np.ndarray
    price_factor: float = 1.0
    price_add_eur_per_mwh: float = 0.0
    version: int = 0  # bumped at every change
    log: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def initial(cls, fleet: Fleet) -> Conditions:
        return cls(
            device_down=np.zeros(fleet.n_devices, dtype=np.int32),
            site_off=np.zeros(fleet.n_sites, dtype=np.int32),
            site_islanded=np.zeros(fleet.n_sites, dtype=np.int32),
            site_comm_lost=np.zeros(fleet.n_sites, dtype=np.int32),
            feeder_import_limit_kw=fleet.feeder_import_limit_kw.copy(),
            feeder_export_limit_kw=fleet.feeder_export_limit_kw.copy(),
        )

    def device_ok(self, device_site: np.ndarray) -> np.ndarray:
        """1 for devices that work (not failed, site not off), else 0 (uint8)."""
        return ((self.device_down == 0) & (self.site_off[device_site] == 0)).astype(np.uint8)

    def record(self, t_s: float, event: str, phase: str, targets: list[str], detail: str) -> None:
        self.version += 1
        self.log.append({
            "time_s": float(t_s),
            "time": pd.Timestamp(t_s, unit="s", tz="UTC").isoformat(),
            "event": event, "phase": phase, "targets": " ".join(targets), "detail": detail,
        })


def check_event_targets(events: list[Any], fleet: Fleet, source: str = "scenario") -> None:
    """Refuse events that name sites, devices or feeders not in the fleet."""
    problems: list[tuple[str, int | None, str]] = []
    for i, ev in enumerate(events):
        for attr, known, kind in (("sites", fleet.site_row, "site"),
                                  ("devices", fleet.device_row, "device"),
                                  ("feeders", fleet.feeder_row, "feeder")):
            for name in getattr(ev, attr, None) or []:
                if name not in known:
                    problems.append((f"events.{i}.{attr}", None, f"unknown {kind} {name!r}"))
    if problems:
        raise ScenarioError(source, problems)


def start_event_processes(env: simpy.Environment, events: list[Any], fleet: Fleet,
                          cond: Conditions) -> None:
    """Register one SimPy process per event (call before the stepping process)."""
    for ev in events:
        env.process(_event_process(env, ev, fleet, cond))


def _event_process(env: simpy.Environment, ev: Any, fleet: Fleet,
                   cond: Conditions) -> Generator[simpy.Event, Any, None]:
    start_s = ev.start.timestamp()
    end_s = None if ev.duration is None else start_s + ev.duration
    if end_s is not None and end_s <= env.now:
        return  # over before the period starts
    yield env.timeout(max(start_s - env.now, 0.0))
    undo, targets, detail = _apply(ev, fleet, cond)
    cond.record(env.now, ev.type, "start", targets, detail)
    if end_s is None:
        return
    yield env.timeout(end_s - env.now)
    undo()
    cond.record(env.now, ev.type, "end", targets, "")


def _apply(ev: Any, fleet: Fleet, cond: Conditions) -> tuple[Any, list[str], str]:
    if isinstance(ev, SiteOutage):
        rows = np.array([fleet.site_row[s] for s in ev.sites])
        counter = cond.site_off if ev.mode == "off" else cond.site_islanded
        np.add.at(counter, rows, 1)
        return (lambda: np.subtract.at(counter, rows, 1)), list(ev.sites), f"mode={ev.mode}"
    if isinstance(ev, DeviceFailure):
        rows = np.array([fleet.device_row[d] for d in ev.devices])
        np.add.at(cond.device_down, rows, 1)
        return (lambda: np.subtract.at(cond.device_down, rows, 1)), list(ev.devices), ""
    if isinstance(ev, CommLoss):
        rows = np.array([fleet.site_row[s] for s in ev.sites])
        np.add.at(cond.site_comm_lost, rows, 1)
        return (lambda: np.subtract.at(cond.site_comm_lost, rows, 1)), list(ev.sites), ""
    if isinstance(ev, PriceSpike):
        cond.price_factor *= ev.factor
        cond.price_add_eur_per_mwh += ev.add_eur_per_mwh

        def undo_price() -> None:
            cond.price_factor = cond.price_factor / ev.factor if ev.factor else 1.0
            cond.price_add_eur_per_mwh -= ev.add_eur_per_mwh

        return undo_price, [], f"factor={ev.factor} add_eur_per_mwh={ev.add_eur_per_mwh}"
    if isinstance(ev, FeederLimit):
        rows = np.array([fleet.feeder_row[f] for f in ev.feeders])
        old_imp = cond.feeder_import_limit_kw[rows].copy()
        old_exp = cond.feeder_export_limit_kw[rows].copy()
        if ev.import_limit_kw is not None:
            cond.feeder_import_limit_kw[rows] = ev.import_limit_kw
        if ev.export_limit_kw is not None:
            cond.feeder_export_limit_kw[rows] = ev.export_limit_kw

        def undo_feeder() -> None:
            cond.feeder_import_limit_kw[rows] = old_imp
            cond.feeder_export_limit_kw[rows] = old_exp

        detail = f"import_limit_kw={ev.import_limit_kw} export_limit_kw={ev.export_limit_kw}"
        return undo_feeder, list(ev.feeders), detail
    raise TypeError(f"unknown event {ev!r}")
