"""The live service: one object that wires the broker, the twin's telemetry, the
optimizer, the registry, the approval loop and the WebSocket hub.

:class:`LiveService` is made in the FastAPI lifespan (or by ``ecogrid
serve``), started with :meth:`LiveService.start` and closed with
:meth:`LiveService.close`; the route handlers call its methods. Background
loops (dispatch ticks, history snapshots, the optimizer cadence, KPI pushes)
run as asyncio tasks of the app's event loop and hand blocking work to
threads. Wall-clock time enters here only, through ``clock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from adapters.registry import Registry, RegistryError
from adapters.registry import alerts as alert_repo
from adapters.registry import audit as audit_repo
from adapters.registry import commands as cmd_repo
from adapters.registry import plans as plan_repo
from adapters.registry.command_store import SqlCommandStore
from api.accounts import Accounts
from api.device_view import DeviceView
from api.dispatch import Dispatcher
from api.heap import HeapPolicy
from api.history import TelemetryHistory
from api.hub import Hub, WsClient
from api.kpis import KpiLedger
from api.metrics import Metrics
from api.scenario_jobs import ScenarioJobs
from api.settings import Settings
from api.types import CommandLink, Planner
from twin.fleet import BATTERY, PV, Fleet
from twin.limits import takes_setpoint
from twin.telemetry import Telemetry

log = logging.getLogger(__name__)


GIL_SWITCH_S = 0.001  # see LiveService.warm_up
BURST = 64  # commands sent at once after which the command store holds its writes


class ServiceUnavailable(RuntimeError):
    """A part of the live service is not running (broker, optimizer); HTTP 503."""


class LiveService:
    """The running system behind the API.

    Parameters
    ----------
    settings : Settings
        Configuration.
    registry : Registry
        The open, migrated registry.
    fleet : Fleet
        The fleet loaded from the registry.
    planner : Planner, optional
        Computes plans; without one, plans cannot be requested.
    clock : callable
        ``() -> Unix s``.
    """

    def __init__(self, settings: Settings, registry: Registry, fleet: Fleet, *,
                 planner: Planner | None = None, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.registry = registry
        self.fleet = fleet
        self.planner = planner
        self.clock = clock
        self.started_s = clock()
        self.metrics = Metrics()
        self.hub = Hub(settings.ws_queue_size, settings.ws_max_drops,
                       on_drop_client=lambda c: self.metrics.ws_disconnected.inc())
        self.accounts = Accounts(registry, settings.secret(), settings.access_token_ttl_s,
                                 settings.refresh_token_ttl_s, settings.login_attempts_per_minute)
        self.telemetry = Telemetry(fleet, expected_interval_s=settings.telemetry_interval_s)
        self.history = TelemetryHistory(settings.history_dir(), fleet.device_id.tolist())
        from api.planning import HistoryWindow

        self.history_window = HistoryWindow()
        self.ledger = KpiLedger(settings.data_dir / "kpis.json", settings.co2_kg_per_mwh,
                                settings.price_eur_per_mwh)
        self.store = SqlCommandStore(registry, on_change=self._on_command_change)
        self.dispatcher = Dispatcher(registry, fleet, None, self.notify,
                                     ack_timeout_s=settings.command_ack_timeout_s,
                                     valid_for_s=settings.setpoint_valid_s)
        self.dispatcher.on_sent = self.metrics.commands_sent.inc
        self.scenarios = ScenarioJobs(registry, settings.data_dir / "scenarios", clock)
        # The service's own admin routes invalidate the view; the reload only picks up
        # changes made around it (a replica's view reloads more often: api.replica).
        self.devices = DeviceView(registry, max_age_s=300.0)
        self.heap = HeapPolicy(settings.gc_sweep_s)
        self.dispatcher.sending = self._sending_plan_step
        self._kpis: dict[str, Any] | None = None  # the newest figures, for GET /kpis
        self._kpis_mono_s = 0.0
        self._first_ingest_mono_s: float | None = None
        self.ingest: Any = None
        self.publisher: Any = None
        self.last_plan_s: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._preloaded = threading.Event()
        self._plan_lock = asyncio.Lock()
        self._site_of_row = fleet.site_id[fleet.device_site]
        self._id_list: list[str] = fleet.device_id.tolist()
        self._site_list: list[str] = self._site_of_row.tolist()
        self._p_col = self.telemetry.metric_column("p_kw")
        self._soc_col = self.telemetry.metric_column("soc")
        from api.alerting.live import LiveAlerts  # issue 7: alerts

        self.alerts = LiveAlerts(self)

    # -- messaging -------------------------------------------------------------------
    def notify(self, channel: str, message: dict[str, Any]) -> None:
        """Announce an event on a WebSocket channel (safe from any thread)."""
        self.hub.publish_threadsafe(channel, message)

    def _on_command_change(self, rec: dict[str, Any]) -> None:
        self.notify("commands", {"event": rec["status"], "command": rec})
        self.alerts.on_command(rec)

    def _on_batch(self, batch: Any) -> None:
        """Ingest listener (worker thread): count, and push telemetry to the hub."""
        self.metrics.ingest_messages.inc(batch.messages)
        if self._first_ingest_mono_s is None and batch.n_values:
            self._first_ingest_mono_s = time.monotonic()
        for reason, n in batch.rejects.items():
            self.metrics.rejected_messages.labels(reason).inc(n)
        if batch.n_values == 0 or not self.hub.clients:
            return
        keep = (batch.cols == self._p_col) | (batch.cols == self._soc_col)
        rows, cols = batch.rows[keep], batch.cols[keep]
        vals, ts = batch.values[keep], batch.ts_s[keep]
        samples: dict[int, dict[str, Any]] = {}
        ids, sites = self._id_list, self._site_list  # Python lists: no numpy scalar per value
        p_col = self._p_col
        for r, c, v, t in zip(rows.tolist(), cols.tolist(), vals.tolist(), ts.tolist(),
                              strict=True):
            s = samples.get(r)
            if s is None:
                s = samples[r] = {"id": ids[r], "site_id": sites[r], "t_s": t}
            elif t > s["t_s"]:
                s["t_s"] = t
            s["p_kw" if c == p_col else "soc"] = v
        self.hub.call_soon(self.hub.publish_telemetry, self.clock(), list(samples.values()))

    def _on_status(self, event: Any) -> None:
        """Ingest listener: a gateway's Will (offline) opens its site's alert, its retained
        online clears it (through the alert manager)."""
        if event.kind == "gateway":
            self.alerts.on_gateway(event.rows, event.values)

    # -- life cycle ------------------------------------------------------------------
    def connect_broker(self, url: str | None = None, wait_s: float = 10.0) -> None:
        """Start the telemetry ingest and the command publisher on the broker."""
        from adapters.mqtt.commands import CommandPublisher
        from adapters.mqtt.ingest import TelemetryIngest

        url = url or self.settings.mqtt_url
        ingest = TelemetryIngest(self.fleet, self.telemetry, client_id="ecogrid-service-ingest",
                                 clock=self.clock)
        ingest.add_listener("batch", self._on_batch)
        ingest.add_listener("status", self._on_status)
        ingest.start(url, wait_s=wait_s)
        self.ingest = ingest
        pub = CommandPublisher(self.fleet, self.store, client_id="ecogrid-service-commands",
                               clock=self.clock)
        pub.start(url, wait_s=wait_s)
        self.publisher = pub
        self.dispatcher.link = PublisherLink(pub, self.store)
        # Reserve every device's next versions now, so the first approval writes none.
        threading.Thread(target=self._reserve_versions, name="ecogrid-versions",
                         daemon=True).start()

    def _reserve_versions(self) -> None:
        takes = takes_setpoint(self.fleet.device_type)
        try:
            self.store.reserve(self.fleet.device_id[takes].tolist())
        except Exception:
            log.exception("reserving command versions failed; they are reserved when sent")

    async def start(self) -> None:
        """Start the background loops on the running event loop."""
        self.hub.bind(asyncio.get_running_loop())
        asyncio.get_running_loop().run_in_executor(None, self._preload_devices)
        loops = [(self._dispatch_loop, "dispatch"), (self._history_loop, "history"),
                 (self._kpi_loop, "kpis"), (self._heap_loop, "heap")]
        loops.append((self.alerts.run, "alerts"))
        from api.reports import scheduler_for  # issue 7: scheduled reports

        reports = scheduler_for(self)
        if reports is not None:
            loops.append((lambda: reports.run(self.clock), "reports"))
        if self.settings.optimizer_enabled and self.planner is not None:
            loops.append((self._plan_loop, "optimizer"))
        for fn, name in loops:
            self._tasks.append(asyncio.create_task(fn(), name=f"ecogrid-{name}"))

    def warm_up(self) -> None:
        """For a service process (``ecogrid serve``, the demo): hand the GIL over every
        1 ms instead of 5 (the event loop and the MQTT threads wait less behind a busy
        thread), and in the background start the planner's worker process now (the
        first plan then does not wait for the optimizer's imports) and, once the
        device view is loaded, take the start-up heap out of the garbage collector's
        sight and keep full collections short (:class:`api.heap.HeapPolicy`)."""
        sys.setswitchinterval(GIL_SWITCH_S)

        def run() -> None:
            start = getattr(self.planner, "start", None)  # ProcessPlanner
            try:
                if start is not None:
                    start()
            except Exception:
                log.exception("starting the optimizer worker failed; the first plan retries")
            self._preloaded.wait(120)
            self.heap.settle()

        threading.Thread(target=run, name="ecogrid-warm-up", daemon=True).start()

    def _preload_devices(self) -> None:
        try:
            self.devices.load()
        except Exception:
            log.exception("loading the device view failed; GET /devices loads it")
        self._preloaded.set()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        for part in self._connections():
            if part is not None:
                await asyncio.to_thread(part.stop)
        self.store.close()
        self.scenarios.close()
        self.heap.close()
        self._save_state()

    def _connections(self) -> tuple[Any, ...]:
        """The broker connections :meth:`close` stops."""
        return self.publisher, self.ingest

    def _save_state(self) -> None:
        """What :meth:`close` keeps for the next start (the KPI ledger)."""
        self.ledger.save()

    async def _every(self, period_s: float, fn: Callable[[], Any], name: str) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await asyncio.to_thread(fn)
            except Exception:
                log.exception("%s failed; continuing", name)

    async def _dispatch_loop(self) -> None:
        def tick() -> None:
            now = self.clock()
            self.dispatcher.expire(now, self.settings.plan_ttl_s)
            self.dispatcher.tick(now)
        await self._every(self.settings.dispatch_tick_s, tick, "dispatch tick")

    async def _history_loop(self) -> None:
        await self._every(self.settings.history_flush_s, self.snapshot, "history snapshot")

    async def _heap_loop(self, check_s: float = 10.0) -> None:
        """Sweep the frozen heap when due (only after :meth:`warm_up` froze it)."""
        def sweep() -> None:
            if self.heap.sweep_due():
                self.heap.sweep()
        await self._every(check_s, sweep, "heap sweep")

    async def _kpi_loop(self, refresh_s: float = 1.0, push_every: int = 5) -> None:
        """Recompute the KPIs every ``refresh_s`` (off the event loop) for ``GET /kpis``;
        push them over the WebSocket and update the gauges every ``push_every`` rounds."""
        for i in itertools.count(1):
            await asyncio.sleep(refresh_s)
            try:
                kpis = await asyncio.to_thread(self.refresh_kpis)
                if i % push_every == 0:
                    self.hub.publish("kpis", {"kpis": kpis})
                    await asyncio.to_thread(self._update_gauges)
            except Exception:
                log.exception("KPI refresh failed; continuing")

    async def _plan_loop(self) -> None:
        # The first plan soon after the start (once telemetry has arrived), then on the cadence.
        await asyncio.sleep(min(self.settings.optimizer_interval_s, 20.0))
        while True:
            try:
                await self.request_plan_async("optimizer")
            except Exception:
                log.exception("scheduled plan failed; continuing")
            await asyncio.sleep(self.settings.optimizer_interval_s)

    def snapshot(self) -> None:
        """Write the current telemetry to the history and the KPI ledger (one step)."""
        now = self.clock()
        p, _ = self.telemetry.column("p_kw")
        soc, _ = self.telemetry.column("soc")
        self.history.append(now, {"p_kw": p, "soc": soc})
        self.ledger.add(now, self._generation_mw(p))
        self.ledger.save()

    def _update_gauges(self) -> None:
        self.metrics.ws_clients.set(len(self.hub.clients))
        with self.registry.session() as s:
            counts = cmd_repo.count_by_status(s)
        for status in cmd_repo.COMMAND_STATUSES:
            self.metrics.commands.labels(status).set(counts.get(status, 0))

    # -- reads -------------------------------------------------------------------------
    def query(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one registry repository function ``fn(session, ...)`` in a transaction."""
        with self.registry.session() as s:
            return fn(s, *args, **kwargs)

    def change(self, user: str, action: str, target: str, fn: Callable[..., Any], *args: Any,
               **kwargs: Any) -> Any:
        """Run one registry change ``fn(session, ...)`` and record it in the audit log."""
        now = self.clock()
        try:
            with self.registry.session() as s:
                out = fn(s, *args, **kwargs)
                audit_repo.record(s, now, user, action, target)
        finally:
            self.devices.invalidate()
        return out

    def _generation_mw(self, p_kw: np.ndarray) -> float:
        t = self.fleet.device_type
        p = np.nan_to_num(p_kw)
        return float(p[(t == PV) | (t == BATTERY)].clip(min=0).sum()) / 1000.0

    def kpis(self) -> dict[str, Any]:
        """Fleet KPIs: sites, installed capacity [MW], live generation and consumption [MW],
        CO2 avoided [t] and revenue [EUR] today and to date."""
        p, _ = self.telemetry.column("p_kw")
        use = float(-np.nan_to_num(p).clip(max=0).sum()) / 1000.0 + 0.0
        online = int(self.telemetry.online.sum())
        return {"t_s": self.clock(), "total_sites": self.fleet.n_sites,
                "total_devices": self.fleet.n_devices, "devices_online": online,
                "installed_capacity_mw": round(self.fleet.installed_capacity_kw() / 1000.0, 3),
                "live_generation_mw": round(self._generation_mw(p), 4),
                "live_consumption_mw": round(use, 4), **self.ledger.figures()}

    def refresh_kpis(self) -> dict[str, Any]:
        """Compute the KPIs now and keep them for :meth:`cached_kpis`."""
        t = time.monotonic()
        kpis = self.kpis()
        self._kpis, self._kpis_mono_s = kpis, t
        return kpis

    def cached_kpis(self, max_age_s: float = 1.5) -> dict[str, Any] | None:
        """The KPIs of the last refresh, or None when they are older than ``max_age_s`` [s]
        or from before the first telemetry arrived."""
        kpis, t = self._kpis, self._kpis_mono_s
        if kpis is None or time.monotonic() - t > max_age_s:
            return None
        first = self._first_ingest_mono_s
        if first is not None and t < first:
            return None
        return kpis

    def health(self) -> dict[str, Any]:
        broker = self.ingest is not None and self.ingest.connected.is_set()
        db = self.registry.ping()
        with self.registry.session() as s:
            last = plan_repo.list_plans(s, limit=1)
        last_ingest = self.telemetry.last_seen_s
        seen = float(np.nanmax(last_ingest)) if np.isfinite(last_ingest).any() else None
        ok = db and (broker or self.settings.mode == "offline")
        return {"status": "ok" if ok else "degraded", "broker_connected": broker,
                "database": "ok" if db else "unreachable", "last_ingest_s": seen,
                "last_plan": ({"id": last[0]["id"], "created_s": last[0]["created_s"],
                               "status": last[0]["status"]} if last else None),
                "ws_clients": len(self.hub.clients), "uptime_s": self.clock() - self.started_s}

    def device_state(self, device_id: str) -> dict[str, Any]:
        row = self.fleet.device_row.get(device_id)
        if row is None:
            return {}
        with self.telemetry.lock:
            vals = {m: self.telemetry.value[row, i] for i, m in enumerate(self.telemetry.metrics)}
            seen = self.telemetry.last_seen_s[row]
            online = bool(self.telemetry.online[row])
            stale = bool(self.telemetry.stale[row])
        return {"values": {k: float(v) for k, v in vals.items() if np.isfinite(v)},
                "last_seen_s": float(seen) if np.isfinite(seen) else None,
                "online": online, "stale": stale}

    # -- plans -------------------------------------------------------------------------
    def request_plan(self, user: str) -> dict[str, Any]:
        """Compute a plan now from the twin's current state and store it as proposed."""
        if self.planner is None:
            raise ServiceUnavailable("no optimizer is configured in this service")
        now = self.clock()
        step = self.settings.plan_step_s
        start = np.floor(now / step) * step
        n_steps = max(1, round(self.settings.plan_horizon_s / step))
        snap = {"p_kw": self.telemetry.column("p_kw")[0], "soc": self.telemetry.column("soc")[0]}
        self.history_window.update(self.history, now)  # issue 7: forecasts from telemetry
        snap.update(self.history_window.series())
        t0 = time.perf_counter()
        result = self.planner.plan(self.fleet, snap, float(start), step, n_steps)
        wall = time.perf_counter() - t0
        self.metrics.optimizer_seconds.observe(wall)
        soc = snap["soc"]
        plan = {"id": secrets.token_hex(8), "created_s": now, "start_s": float(start),
                "step_s": step, "n_steps": n_steps,
                "initial_state": {"t_s": now, "soc": {
                    d: round(float(soc[i]), 4) for i, d in enumerate(self.fleet.device_id.tolist())
                    if np.isfinite(soc[i])}},
                "setpoints": result["setpoints"], "kpis": result["kpis"],
                "solver_status": result["solver_status"],
                "solver_time_s": float(result.get("solver_time_s", wall))}
        rec = self.dispatcher.add_plan(plan, now)
        with self.registry.session() as s:
            audit_repo.record(s, now, user, "plan.request", f"plan:{plan['id']}")
        self.metrics.plans.labels("proposed").inc()
        self.last_plan_s = now
        self.alerts.on_plan(plan)
        return {k: v for k, v in rec.items() if k != "setpoints"}

    async def request_plan_async(self, user: str) -> dict[str, Any]:
        async with self._plan_lock:
            return await asyncio.to_thread(self.request_plan, user)

    @contextlib.contextmanager
    def _sending_plan_step(self) -> Iterator[None]:
        """What a plan step goes out inside (:attr:`Dispatcher.sending`): telemetry that
        arrives meanwhile is decoded after it, and no garbage collection runs."""
        paused = self.ingest.paused() if self.ingest is not None else contextlib.nullcontext()
        with paused, self.heap.deferred():
            yield

    def approve(self, plan_id: str, user: str) -> dict[str, Any]:
        rec = self.dispatcher.approve(plan_id, user, self.clock())
        self.metrics.plans.labels("approved").inc()
        return rec

    def reject(self, plan_id: str, user: str, reason: str | None) -> dict[str, Any]:
        rec = self.dispatcher.reject(plan_id, user, self.clock(), reason)
        self.metrics.plans.labels("rejected").inc()
        return rec

    # -- setpoints ---------------------------------------------------------------------
    def setpoint(self, device_id: str, value_kw: float, user: str,
                 at_s: list[float] | None = None, values_kw: list[float] | None = None
                 ) -> list[dict[str, Any]]:
        """One setpoint now, one at a time, or a series (``at_s`` with ``values_kw``)."""
        if values_kw is not None:
            if at_s is None or len(at_s) != len(values_kw):
                raise ValueError("a series needs as many times (at_s) as values (values_kw)")
            targets = [(device_id, v) for v in values_kw]
            return self.dispatcher.send_setpoints(targets, user, self.clock(), due_s=at_s)
        due = at_s if at_s is not None else None
        return self.dispatcher.send_setpoints([(device_id, value_kw)], user, self.clock(),
                                              due_s=due)

    def group_setpoint(self, selector: dict[str, Any], value_kw: float, user: str,
                       at_s: float | None = None) -> list[dict[str, Any]]:
        """The same setpoint to every device of a group (site, feeder, type, tag)."""
        tags = None
        if selector.get("tag"):
            from adapters.registry import fleet as fleet_repo

            with self.registry.session() as s:
                page, _ = fleet_repo.list_devices(s, tag=selector["tag"], limit=10**9)
            tags = {selector["tag"]: [d["id"] for d in page]}
        ids = self.dispatcher.select_devices(**selector, tags=tags)
        now = self.clock()
        due = [at_s if at_s is not None else now] * len(ids)
        return self.dispatcher.send_setpoints([(d, value_kw) for d in ids], user, now, due_s=due)

    def cancel_command(self, command_id: int, user: str) -> dict[str, Any]:
        return self.dispatcher.cancel(command_id, user, self.clock())

    # -- alerts ----------------------------------------------------------------------
    def ack_alert(self, alert_id: int, user: str) -> dict[str, Any]:
        now = self.clock()
        with self.registry.session() as s:
            rec = alert_repo.ack_alert(s, alert_id, user, now)
            audit_repo.record(s, now, user, "alert.ack", f"alert:{alert_id}")
        self.notify("alerts", {"event": "acknowledged", "alert": rec})
        return rec

    def raise_alert(self, severity: str, kind: str, message: str, **where: str | None
                    ) -> dict[str, Any]:
        with self.registry.session() as s:
            rec = alert_repo.raise_alert(s, self.clock(), severity, kind, message, **where)
        self.notify("alerts", {"event": "raised", "alert": rec})
        return rec

    # -- WebSocket requests ------------------------------------------------------------
    def ws_request(self, client: WsClient, msg: dict[str, Any]) -> dict[str, Any]:
        """Run one client request (``approve``, ``reject``, ``setpoint``); returns its result.

        Raises PermissionError when the client's role may not do it.
        """
        kind = msg.get("type")
        if client.role not in ("operator", "admin"):
            raise PermissionError(f"{kind} needs the operator or admin role")
        if kind == "approve":
            return self.approve(_str(msg, "plan_id"), client.user)
        if kind == "reject":
            return self.reject(_str(msg, "plan_id"), client.user, msg.get("reason"))
        if kind == "setpoint":
            value = msg.get("value_kw")
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError("setpoint needs a number 'value_kw' [kW]")
            return {"commands": self.setpoint(_str(msg, "device_id"), float(value), client.user)}
        raise ValueError(f"unknown request type {kind!r}")


def _str(msg: dict[str, Any], key: str) -> str:
    v = msg.get(key)
    if not isinstance(v, str) or not v:
        raise ValueError(f"the request needs a string {key!r}")
    return v


class PublisherLink(CommandLink):
    """:class:`api.types.CommandLink` over the MQTT adapter's ``CommandPublisher``."""

    def __init__(self, publisher: Any, store: SqlCommandStore):
        self.publisher = publisher
        self.store = store

    def prepare(self, commands: list[dict[str, Any]]) -> None:
        """Reserve the devices' next versions in one transaction before a burst of sends."""
        self.store.reserve([c["device_id"] for c in commands])

    def send_many(self, commands: list[dict[str, Any]], now_s: float) -> None:
        """Publish many registry commands in one go (nothing goes out when one is refused)."""
        self._send([(c, c["id"]) for c in commands], now_s)

    def send_new(self, items: list[dict[str, Any]], now_s: float) -> None:
        """Publish new commands (dispatcher items, no registry row yet) at once; their rows
        are written behind by the command store. All or nothing: raises ``ValueError`` or
        ``ConnectionError`` when one is refused, and then nothing went out."""
        self.store.reserve([it["device_id"] for it in items])
        self._send([(it, {"source": it["source"], "plan_id": it.get("plan_id"),
                          "created_by": it.get("created_by"), "due_s": it["due_s"],
                          "created_s": now_s}) for it in items], now_s)

    def _send(self, commands: list[tuple[dict[str, Any], Any]], now_s: float) -> None:
        """Tie each command to its registry row (an id, or the fields of a row the store
        writes later) and publish them all; a refused batch leaves no tie behind."""
        for c, row in commands:
            self.store.adopt(c["device_id"], row)
        if len(commands) >= BURST:  # a plan step: its rows are written after it is out
            self.store.hold()
        try:
            self.publisher.send_many([(c["device_id"], c["value"],
                                       max(c["valid_until_s"], now_s + 1.0))
                                      for c, _ in commands], now_s=now_s)
        except (ValueError, ConnectionError):
            self.store.forget([c["device_id"] for c, _ in commands])
            raise

    def send(self, command: dict[str, Any], now_s: float) -> None:
        self.store.adopt(command["device_id"], command["id"])
        valid_until = max(command["valid_until_s"], now_s + 1.0)
        self.publisher.send(command["device_id"], command["value"], valid_until_s=valid_until,
                            now_s=now_s)

    def connected(self) -> bool:
        return self.publisher.subscribed.is_set()


__all__ = ["LiveService", "PublisherLink", "RegistryError", "ServiceUnavailable"]
