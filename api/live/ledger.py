"""Live fleet KPIs: capacity, live generation and consumption, and the ledger of generation,
CO2 avoided and revenue, today and to date.

:class:`LiveKpis` computes the figures of ``GET /kpis`` and the WebSocket ``kpis``
channel every second. :class:`KpiLedger` is fed the site flows of each history snapshot
(:func:`twin.kpis.device_flows`) and values them with a :class:`twin.kpis.Tariff`
through :func:`twin.kpis.energy_value`, as the analytics do: each snapshot's
flows hold until the next snapshot, for at most ``max_gap_s``; generation is
PV output, revenue is export x export price, CO2 avoided is generation x grid
intensity. The figures are kept for today (UTC day) and to date in a small
JSON file, so they survive a restart.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adapters.mqtt.types import COMMAND_STATES
from adapters.registry import Registry
from adapters.registry import commands as cmd_repo
from api.live.hub import Hub
from api.live.metrics import Metrics
from api.live.types import Clock
from twin.fleet import Fleet
from twin.kpis import Tariff, device_flows, energy_value
from twin.telemetry import Telemetry

log = logging.getLogger(__name__)

DAY_S = 86400.0


class KpiLedger:
    """Generation, CO2 avoided and revenue, today and to date.

    Parameters
    ----------
    path : Path
        JSON file where the totals are kept.
    tariff : Tariff
        Export price and grid carbon intensity (and import price).
    max_gap_s : float
        Longest time a snapshot's flows are held [s] (a longer gap, the service
        being down, counts this long only).
    """

    FIELDS = ("generation_mwh", "co2_avoided_t", "revenue_eur")

    def __init__(self, path: Path, tariff: Tariff, max_gap_s: float = 60.0):
        self.path = Path(path)
        self.tariff = tariff
        self.max_gap_s = max_gap_s
        self.total = dict.fromkeys(self.FIELDS, 0.0)
        self.today = dict.fromkeys(self.FIELDS, 0.0)
        self.day_start_s = 0.0
        self.last_t_s: float | None = None
        self.per_hour: dict[str, float] | None = None  # the last snapshot's figures per hour
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                self.total.update({k: float(data["total"][k]) for k in self.FIELDS})
                self.today.update({k: float(data["today"][k]) for k in self.FIELDS})
                self.day_start_s = float(data["day_start_s"])
                self.last_t_s = data.get("last_t_s")
                per_hour = data.get("per_hour")
                self.per_hour = None if per_hour is None else {
                    k: float(per_hour[k]) for k in self.FIELDS}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("KPI counters in %s are unreadable (%s); they restart at zero",
                            self.path, exc)

    def add(self, t_s: float, flows: Mapping[str, np.ndarray]) -> None:
        """Take the site flows of the snapshot at ``t_s`` [Unix s].

        ``flows`` are :func:`twin.kpis.device_flows` of the snapshot, per site
        [kW] (``generation_kw``, ``import_kw``, ``export_kw`` are used). The
        previous snapshot's flows count from its time to ``t_s`` (at most
        ``max_gap_s``), in the day of the previous snapshot; a snapshot not
        after the previous one is ignored.
        """
        if self.last_t_s is not None and t_s <= self.last_t_s:
            return
        if self.last_t_s is not None and self.per_hour is not None:
            dt_h = min(t_s - self.last_t_s, self.max_gap_s) / 3600.0
            for k, v in self.per_hour.items():
                self.total[k] += v * dt_h
                self.today[k] += v * dt_h
        day = math.floor(t_s / DAY_S) * DAY_S
        if day != self.day_start_s:
            self.today = dict.fromkeys(self.FIELDS, 0.0)
            self.day_start_s = day
        # Energies of one hour at this snapshot's powers [kWh], valued at its time.
        gen_kwh = np.asarray(flows["generation_kw"], dtype=np.float64)
        value = energy_value(t_s, gen_kwh, flows["import_kw"], flows["export_kw"], self.tariff)
        self.per_hour = {"generation_mwh": float(gen_kwh.sum()) / 1000.0,
                         "co2_avoided_t": float(value["co2_avoided_kg"].sum()) / 1000.0,
                         "revenue_eur": float(value["revenue_eur"].sum())}
        self.last_t_s = t_s

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"total": self.total, "today": self.today,
                                   "day_start_s": self.day_start_s, "last_t_s": self.last_t_s,
                                   "per_hour": self.per_hour}))
        tmp.replace(self.path)

    def figures(self) -> dict[str, Any]:
        return {"today": {k: round(v, 6) for k, v in self.today.items()},
                "to_date": {k: round(v, 6) for k, v in self.total.items()}}


class LiveKpis:
    """The fleet KPIs of ``GET /kpis`` and the WebSocket ``kpis`` channel.

    Every second it computes the figures (capacity, devices online, live generation
    and consumption [MW] from :func:`twin.kpis.device_flows`, and the ledger's
    today/to-date energy, CO2 avoided and revenue); every fifth time it pushes them
    and updates the gauges. Every ``ledger_s`` it hands the twin's powers to the
    ledger, valued at the service's tariff.

    Parameters
    ----------
    fleet : callable
        ``() -> Fleet``, the fleet in force.
    telemetry : Telemetry
        The twin's live arrays.
    ledger : KpiLedger
    hub : Hub
    metrics : Metrics
    registry : Registry
        For the commands-by-state gauge.
    clock : callable
        ``() -> Unix s``.
    first_values : callable
        ``() -> monotonic s or None``: when the first telemetry arrived (figures from
        before it are not served from the cache).
    """

    def __init__(self, fleet: Callable[[], Fleet], telemetry: Telemetry, ledger: KpiLedger,
                 *, hub: Hub, metrics: Metrics, registry: Registry, clock: Clock,
                 first_values: Callable[[], float | None]):
        self.fleet = fleet
        self.telemetry = telemetry
        self.ledger = ledger
        self.hub = hub
        self.metrics = metrics
        self.registry = registry
        self.clock = clock
        self.first_values = first_values
        self._kpis: dict[str, Any] | None = None
        self._kpis_mono_s = 0.0
        self._kpis_fleet: Fleet | None = None  # the fleet the cached figures are of

    def _flows(self, fleet: Fleet) -> dict[str, np.ndarray] | None:
        p, _ = self.telemetry.column("p_kw")
        if len(p) != fleet.n_devices:
            return None  # a fleet change is under way
        return device_flows(p, fleet.device_type, fleet.device_site, fleet.n_sites)

    def kpis(self) -> dict[str, Any]:
        """Fleet KPIs: sites, installed capacity [MW], live generation (PV) and consumption
        (loads and EV charging) [MW], CO2 avoided [t] and revenue [EUR] today and to date."""
        fleet = self.fleet()
        flows = self._flows(fleet)
        gen = 0.0 if flows is None else float(flows["generation_kw"].sum()) / 1000.0
        use = 0.0 if flows is None else float(flows["consumption_kw"].sum()) / 1000.0
        return {"t_s": self.clock(), "total_sites": fleet.n_sites,
                "total_devices": fleet.n_devices,
                "devices_online": int(self.telemetry.online.sum()),
                "installed_capacity_mw": round(fleet.installed_capacity_kw() / 1000.0, 3),
                "live_generation_mw": round(gen, 4), "live_consumption_mw": round(use, 4),
                **self.ledger.figures()}

    def refresh(self) -> dict[str, Any]:
        """Compute the KPIs now and keep them for :meth:`cached`."""
        t = time.monotonic()
        fleet = self.fleet()
        kpis = self.kpis()
        self._kpis, self._kpis_mono_s, self._kpis_fleet = kpis, t, fleet
        return kpis

    def cached(self, max_age_s: float = 1.5) -> dict[str, Any] | None:
        """The KPIs of the last refresh, or None when they are older than ``max_age_s`` [s],
        from before the first telemetry arrived or of a fleet no longer in force."""
        kpis, t = self._kpis, self._kpis_mono_s
        if kpis is None or time.monotonic() - t > max_age_s:
            return None
        if self._kpis_fleet is not self.fleet():
            return None
        first = self.first_values()
        if first is not None and t < first:
            return None
        return kpis

    def integrate(self) -> None:
        """Hand the twin's current powers to the ledger (one snapshot) and keep it."""
        flows = self._flows(self.fleet())
        if flows is None:
            return
        self.ledger.add(self.clock(), flows)
        self.ledger.save()

    def _gauges(self) -> None:
        self.metrics.ws_clients.set(len(self.hub.clients))
        with self.registry.session() as s:
            counts = cmd_repo.count_by_status(s)
        for status in COMMAND_STATES:
            self.metrics.commands.labels(status).set(counts.get(status, 0))

    async def run(self, ledger_s: float, refresh_s: float = 1.0, push_every: int = 5) -> None:
        """Refresh every ``refresh_s`` (off the event loop), push and update the gauges
        every ``push_every`` rounds, feed the ledger every ``ledger_s`` [s]."""
        next_ledger = time.monotonic() + ledger_s
        for i in itertools.count(1):
            await asyncio.sleep(refresh_s)
            try:
                kpis = await asyncio.to_thread(self.refresh)
                if i % push_every == 0:
                    self.hub.publish("kpis", {"kpis": kpis})
                    await asyncio.to_thread(self._gauges)
                if time.monotonic() >= next_ledger:
                    next_ledger += ledger_s
                    await asyncio.to_thread(self.integrate)
            except Exception:
                log.exception("KPI refresh failed; continuing")

    def close(self) -> None:
        self.ledger.save()
