"""The live runtime: the parts of a running service, built for its role, started in
dependency order and closed in reverse.

:class:`Runtime` is a dataclass of parts; :meth:`Runtime.open` (the FastAPI
lifespan) opens the registry, loads the fleet, builds the parts the role needs,
starts them and closes them again. Constructors do no I/O and start no thread;
each part's loop belongs to the part (``approvals.run``, ``recorder.run``, ...).
This is the only module of :mod:`api.live` that knows the other parts: it wires
them with callables (``notify``, fleet listeners, command changes).

Roles (``ECOGRID_MODE``):

* **leader** (``live``): every part; with ``ECOGRID_INGEST=embedded`` it
  subscribes to the telemetry and writes the telemetry store itself, with
  ``workers`` it reads what ``ecogrid ingest`` workers write (:class:`StoreFeed`);
* **offline**: the leader without the broker: no ingest, command publisher or
  events relay (plans can be made and approved; commands wait as ``pending``);
* **replica**: registry, fleet, telemetry with its own ingest, hub, the
  leader's relayed events, the leader client, accounts, metrics, the telemetry
  store (read), relayed KPIs; no publisher, approvals, planner or writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from adapters.credentials import reload_broker, sync_credentials
from adapters.history import History, HistoryWriter, check_layout
from adapters.mqtt.events import EventsFeed, EventsRelay
from adapters.registry import Registry, open_registry
from adapters.registry import audit as audit_repo
from adapters.registry import fleet as fleet_repo
from adapters.registry import plans as plan_repo
from api.accounts import Accounts
from api.alerts.loop import AlertLoop
from api.analytics.market import Market, service_market
from api.analytics.reports import ReportScheduler, report_scheduler
from api.live.approvals import Approvals
from api.live.commands import MqttCommandLink
from api.live.fleet import LiveFleet, load_or_import_fleet, registry_fleet
from api.live.heap import HeapPolicy
from api.live.hub import Hub
from api.live.ingest import LiveIngest, Recorder, StoreFeed
from api.live.ledger import KpiLedger, LiveKpis
from api.live.metrics import Metrics
from api.live.optimizer_worker import ProcessPlanner
from api.live.planning import OptimizerPlanner, PlanRequests
from api.live.replica import Leader, LeaderRequests, RelayedKpis, replica_client_id
from api.live.scenario_jobs import ScenarioJobs
from api.live.types import Clock, Planner, ServiceUnavailable
from api.settings import Settings
from twin.fleet import Fleet
from twin.telemetry import Telemetry

log = logging.getLogger(__name__)

Role = Literal["leader", "offline", "replica"]
ROLE_OF_MODE: dict[str, Role] = {"live": "leader", "offline": "offline", "replica": "replica"}
GIL_SWITCH_S = 0.001  # see Runtime.warm_up
LEADER_WRITER_ID = "leader"  # the leader's shard of the telemetry store


def default_planner(settings: Settings) -> Planner:
    """The optimizer's live planner: in a worker process with ``optimizer_process`` (the
    default; a solve then does not hold the service's GIL), else in this process."""
    if settings.optimizer_process:
        return ProcessPlanner(OptimizerPlanner, nice=settings.optimizer_nice)
    return OptimizerPlanner()


@dataclass
class Runtime:
    """The parts of one running service; those its role does not run are None."""

    settings: Settings
    role: Role
    clock: Clock
    registry: Registry
    metrics: Metrics
    hub: Hub
    heap: HeapPolicy
    accounts: Accounts
    fleet: LiveFleet
    telemetry: Telemetry
    history: History
    market: Market
    kpis: LiveKpis | RelayedKpis
    ingest: LiveIngest | None = None
    store_feed: StoreFeed | None = None
    recorder: Recorder | None = None
    commands: MqttCommandLink | None = None
    approvals: Approvals | None = None
    planner: Planner | None = None
    planning: PlanRequests | None = None
    alerts: AlertLoop | None = None
    reports: ReportScheduler | None = None
    scenarios: ScenarioJobs | None = None
    events_relay: EventsRelay | None = None
    events_feed: EventsFeed | None = None
    leader: Leader | None = None
    leader_requests: LeaderRequests | None = None
    first_admin: Any = None
    own_planner: bool = False
    started_s: float = 0.0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _preloaded: threading.Event = field(default_factory=threading.Event)

    # -- building ----------------------------------------------------------------------
    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, *, planner: Planner | None = None,
                   use_default_planner: bool = True, clock: Clock = time.time
                   ) -> AsyncIterator[Runtime]:
        """Open the registry, build the role's parts, start them; close all on exit.

        ``planner`` replaces the optimizer's (tests); without one and with
        ``use_default_planner`` the runtime makes (and closes) :func:`default_planner`.
        """
        registry = await asyncio.to_thread(open_registry, settings.registry_url())
        rt: Runtime | None = None
        try:
            rt = await asyncio.to_thread(build_runtime, settings, registry, planner=planner,
                                         use_default_planner=use_default_planner, clock=clock)
            await rt.start()
            yield rt
        finally:
            if rt is not None:
                await rt.close()
            else:
                registry.close()

    def part(self, name: str) -> Any:
        """The part called ``name``; ServiceUnavailable (503) when this role has none."""
        value = getattr(self, name, None)
        if value is None:
            raise ServiceUnavailable(f"this service ({self.role}) runs no {name}")
        return value

    def notify(self, channel: str, message: dict[str, Any]) -> None:
        """Announce an event on a WebSocket channel (safe from any thread)."""
        self.hub.publish_threadsafe(channel, message)

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Start the parts in dependency order, then their loops."""
        loop = asyncio.get_running_loop()
        self.started_s = self.clock()
        self.hub.bind(loop)
        s = self.settings
        if self.role != "replica":
            self.first_admin = await asyncio.to_thread(
                self.accounts.ensure_admin, s.admin_user, s.admin_password, self.clock())
        if self.alerts is not None:
            await asyncio.to_thread(self.alerts.start)
        if self.scenarios is not None:
            self.scenarios.start()
        if self.role == "leader" and s.mqtt_credentials_dir is not None:
            await asyncio.to_thread(gateway_accounts, s, self.fleet.fleet)
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.writer.open)
        if self.commands is not None:
            await asyncio.to_thread(self.commands.start)
        if self.ingest is not None:
            await asyncio.to_thread(self.ingest.start)
        if self.events_relay is not None:
            await asyncio.to_thread(self.events_relay.start, s.mqtt_url)
            self.hub.tap = self.events_relay.tap
        if self.events_feed is not None:
            await asyncio.to_thread(self.events_feed.start, s.mqtt_url)
        if self.leader_requests is not None:
            self.leader_requests.bind(loop)
        loop.run_in_executor(None, self._preload_devices)
        self._spawn(self.fleet.run(s.fleet_poll_s), "fleet")
        self._spawn(self._heap_loop(), "heap")
        if isinstance(self.kpis, LiveKpis):
            self._spawn(self.kpis.run(s.history_flush_s), "kpis")
        if self.approvals is not None:
            self._spawn(self.approvals.run(s.dispatch_tick_s, s.plan_ttl_s), "dispatch")
        if self.recorder is not None:
            self._spawn(self.recorder.run(), "history")
        if self.store_feed is not None:
            self._spawn(self.store_feed.run(), "store-feed")
        if self.alerts is not None:
            self._spawn(self.alerts.run(), "alerts")
        if self.reports is not None:
            self._spawn(self.reports.run(self.clock), "reports")
        if self.planning is not None and s.optimizer_enabled:
            self._spawn(self.planning.run(), "optimizer")
        if self.leader is not None:
            await self.leader.check(self.clock())
            self._spawn(self.leader.run(self.clock), "leader")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"ecogrid-{name}"))

    async def close(self) -> None:
        """Stop the loops, then the parts in reverse order of their start."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        self.hub.tap = None
        steps: list[tuple[str, Callable[[], Any] | None]] = [
            ("events feed", self.events_feed.stop if self.events_feed else None),
            ("events relay", self.events_relay.stop if self.events_relay else None),
            ("ingest", self.ingest.close if self.ingest else None),
            ("telemetry store", self.recorder.close if self.recorder else None),
            ("commands", self.commands.close if self.commands else None),
            ("scenario runs", self.scenarios.close if self.scenarios else None),
            ("KPI ledger", self.kpis.close if isinstance(self.kpis, LiveKpis) else None),
            ("optimizer worker", self.planner.close
             if self.own_planner and isinstance(self.planner, ProcessPlanner) else None),
            ("heap policy", self.heap.close),
        ]
        for name, stop in steps:
            if stop is None:
                continue
            try:
                await asyncio.to_thread(stop)
            except Exception:
                log.exception("closing the %s failed", name)
        if self.leader is not None:
            await self.leader.aclose()
        self.registry.close()

    def warm_up(self) -> None:
        """For a service process (``ecogrid serve``, the demo): hand the GIL over every
        1 ms instead of 5 (the event loop and the MQTT threads wait less behind a busy
        thread), and in the background start the planner's worker process now (the
        first plan then does not wait for the optimizer's imports) and, once the
        device view is loaded, take the start-up heap out of the garbage collector's
        sight and keep full collections short (:class:`api.live.heap.HeapPolicy`)."""
        sys.setswitchinterval(GIL_SWITCH_S)

        def run() -> None:
            if isinstance(self.planner, ProcessPlanner):
                try:
                    self.planner.start()
                except Exception:
                    log.exception("starting the optimizer worker failed; the first plan "
                                  "retries")
            self._preloaded.wait(120)
            self.heap.settle()

        threading.Thread(target=run, name="ecogrid-warm-up", daemon=True).start()

    def _preload_devices(self) -> None:
        try:
            self.fleet.devices.load()
        except Exception:
            log.exception("loading the device view failed; GET /devices loads it")
        self._preloaded.set()

    async def _heap_loop(self, check_s: float = 10.0) -> None:
        """Sweep the frozen heap when due (only after :meth:`warm_up` froze it)."""
        while True:
            await asyncio.sleep(check_s)
            if self.heap.sweep_due():
                await asyncio.to_thread(self.heap.sweep)

    @contextlib.contextmanager
    def sending_plan_step(self) -> Iterator[None]:
        """What a plan step goes out inside (:attr:`Approvals.sending`): telemetry that
        arrives meanwhile is decoded after it, and no garbage collection runs."""
        paused = self.ingest.paused() if self.ingest is not None else contextlib.nullcontext()
        with paused, self.heap.deferred():
            yield

    # -- reads -------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Broker connection, database, last ingest, last plan; ``status`` ok or degraded."""
        db = self.registry.ping()
        with self.registry.session() as s:
            last = plan_repo.list_plans(s, limit=1)
        seen_s = self.telemetry.last_seen_s
        seen = float(np.nanmax(seen_s)) if np.isfinite(seen_s).any() else None
        if self.ingest is not None:
            broker = self.ingest.connected()
        elif self.commands is not None:  # workers ingest; the publisher holds the broker
            broker = self.commands.connected()
        else:
            broker = False
        body: dict[str, Any] = {
            "role": self.role, "ingest": self.settings.ingest, "broker_connected": broker,
            "database": "ok" if db else "unreachable", "last_ingest_s": seen,
            "last_plan": ({"id": last[0]["id"], "created_s": last[0]["created_s"],
                           "status": last[0]["status"]} if last else None),
            "fleet_version": self.fleet.version, "ws_clients": len(self.hub.clients),
            "uptime_s": self.clock() - self.started_s}
        ok = db and (broker or self.role == "offline")
        if self.role == "replica":
            events = self.events_feed is not None and self.events_feed.subscribed.is_set()
            ok = ok and events
            assert self.leader is not None
            body.update(events_connected=events, leader=self.leader.health())
        body["status"] = "ok" if ok else "degraded"
        return body

    def query(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one registry repository function ``fn(session, ...)`` in a transaction."""
        with self.registry.session() as s:
            return fn(s, *args, **kwargs)

    def change(self, user: str, action: str, target: str, fn: Callable[..., Any], *args: Any
               ) -> Any:
        """Run one registry change ``fn(session, ...)`` and record it in the audit log (one
        transaction). Changes to sites and devices go through :meth:`LiveFleet.edit`."""
        with self.registry.session() as s:
            out = fn(s, *args)
            audit_repo.record(s, self.clock(), user, action, target)
        return out

    def audit(self, user: str, action: str, target: str) -> None:
        with self.registry.session() as s:
            audit_repo.record(s, self.clock(), user, action, target)


def build_runtime(settings: Settings, registry: Registry, *, planner: Planner | None = None,
                  use_default_planner: bool = True, clock: Clock = time.time) -> Runtime:
    """Build the parts of ``settings.mode``'s role on an open registry (loads the fleet;
    a leader imports the configured one into an empty registry)."""
    role = ROLE_OF_MODE[settings.mode]
    check_layout(settings.data_dir)  # an old telemetry layout names its conversion command
    if role != "replica":
        load_or_import_fleet(registry, settings)  # an empty registry gets the configured fleet
    with registry.session() as s:  # the version first: an edit meanwhile is reloaded later
        version = fleet_repo.fleet_version(s)
    fleet: Fleet = registry_fleet(registry, settings.leader_url)
    metrics = Metrics()
    hub = Hub(settings.ws_queue_size, settings.ws_max_drops,
              on_drop_client=lambda c: metrics.ws_disconnected.inc())
    notify = hub.publish_threadsafe
    telemetry = Telemetry(fleet, expected_interval_s=settings.telemetry_interval_s)
    live_fleet = LiveFleet(registry, fleet, version, clock=clock, notify=notify)
    history = History(settings.history_root(), raw_days=settings.history_raw_days)
    accounts = Accounts(registry, settings.secret(), settings.access_token_ttl_s,
                        settings.refresh_token_ttl_s, settings.login_attempts_per_minute)
    common: dict[str, Any] = dict(settings=settings, role=role, clock=clock, registry=registry,
                                  metrics=metrics, hub=hub,
                                  heap=HeapPolicy(settings.gc_sweep_s), accounts=accounts,
                                  fleet=live_fleet, telemetry=telemetry, history=history,
                                  market=service_market(settings))
    if role == "replica":
        return _replica(common, fleet)
    return _leader(common, fleet, planner, use_default_planner)


def _replica(common: dict[str, Any], fleet: Fleet) -> Runtime:
    settings: Settings = common["settings"]
    assert settings.leader_url  # checked by Settings
    leader = Leader(settings.leader_url, settings.leader_timeout_s)
    kpis = RelayedKpis(settings.leader_url)
    rt = Runtime(**common, kpis=kpis, leader=leader,
                 leader_requests=LeaderRequests(leader, common["accounts"].secret,
                                                common["clock"]))
    rt.ingest = LiveIngest(fleet, rt.telemetry, settings.mqtt_url,
                           client_id=replica_client_id("ingest"), persistent=False,
                           hub=rt.hub, metrics=rt.metrics, clock=rt.clock)

    def on_event(channel: str, message: dict[str, Any]) -> None:
        kpis.on_event(channel, message)
        if channel == "fleet":  # the leader changed the fleet: reload it now
            threading.Thread(target=rt.fleet.reload, name="fleet-reload", daemon=True).start()

    rt.events_feed = EventsFeed(rt.hub, replica_client_id("events"), on_message=on_event)
    rt.fleet.add_listener(rt.ingest.set_fleet)
    return rt


def _leader(common: dict[str, Any], fleet: Fleet, planner: Planner | None,
            use_default_planner: bool) -> Runtime:
    settings: Settings = common["settings"]
    role: Role = common["role"]
    clock: Clock = common["clock"]
    registry: Registry = common["registry"]
    metrics: Metrics = common["metrics"]
    hub: Hub = common["hub"]
    telemetry: Telemetry = common["telemetry"]
    live_fleet: LiveFleet = common["fleet"]
    notify = hub.publish_threadsafe
    market: Market = common["market"]
    ledger = KpiLedger(settings.data_dir / "kpis.json", market.tariff,
                       max_gap_s=3 * settings.history_flush_s)
    rt = Runtime(**common, kpis=LiveKpis(lambda: live_fleet.fleet, telemetry, ledger, hub=hub,
                                         metrics=metrics, registry=registry, clock=clock,
                                         first_values=lambda: None))
    rt.alerts = AlertLoop(fleet, telemetry, registry, notify, settings, clock)

    def on_command(rec: dict[str, Any]) -> None:
        notify("commands", {"event": rec["status"], "command": rec})
        assert rt.alerts is not None
        rt.alerts.on_command(rec)

    online = role == "leader"
    if online:
        rt.commands = MqttCommandLink(fleet, registry, settings.mqtt_url, clock=clock,
                                      on_change=on_command)
        if settings.events_relay:
            rt.events_relay = EventsRelay()
    rt.approvals = Approvals(registry, fleet, rt.commands, notify,
                             ack_timeout_s=settings.command_ack_timeout_s,
                             valid_for_s=settings.setpoint_valid_s, clock=clock, metrics=metrics)
    rt.approvals.sending = rt.sending_plan_step
    if online and settings.ingest == "embedded":
        rt.ingest = LiveIngest(fleet, telemetry, settings.mqtt_url,
                               client_id="ecogrid-service-ingest", persistent=True, hub=hub,
                               metrics=metrics, clock=clock, on_gateway=rt.alerts.on_gateway)
        writer = HistoryWriter(settings.history_root(), LEADER_WRITER_ID,
                               fleet.device_id.tolist(), live_fleet.version,
                               sites=fleet.site_id.tolist(), exclusive=True,
                               raw_days=settings.history_raw_days)
        rt.recorder = Recorder(writer, telemetry, settings.history_flush_s, clock)
    elif online:
        rt.store_feed = StoreFeed(rt.history, fleet, telemetry, hub=hub, metrics=metrics,
                                  clock=clock)
    source = rt.ingest if rt.ingest is not None else rt.store_feed
    if source is not None:
        assert isinstance(rt.kpis, LiveKpis)
        rt.kpis.first_values = lambda: source.first_values_mono_s
    if planner is None and use_default_planner:
        planner, rt.own_planner = default_planner(settings), True
    rt.planner = planner
    if planner is not None:
        rt.planning = PlanRequests(settings, planner, fleet=lambda: live_fleet.fleet,
                                   telemetry=telemetry, history=rt.history, market=market.at,
                                   propose=rt.approvals.add_plan, audit=rt.audit,
                                   on_plan=rt.alerts.on_plan, metrics=metrics, clock=clock)
    rt.scenarios = ScenarioJobs(registry, settings.data_dir / "scenarios", clock)
    rt.reports = report_scheduler(settings, lambda: live_fleet.fleet, rt.history, market, clock,
                                  announce=lambda msg: notify("alerts", msg))
    # Fleet changes, in order: the twin's arrays and the decoder first (with decoding
    # held back), then the parts that refer to device rows or ids.
    if rt.ingest is not None:
        live_fleet.add_listener(rt.ingest.set_fleet)
    elif rt.store_feed is not None:
        live_fleet.add_listener(rt.store_feed.set_fleet)
    else:
        live_fleet.add_listener(lambda f, v: telemetry.resize(f))
    if rt.commands is not None:
        live_fleet.add_listener(lambda f, v: rt.commands.set_fleet(f))  # type: ignore[union-attr]
    live_fleet.add_listener(lambda f, v: rt.approvals.set_fleet(f))  # type: ignore[union-attr]
    live_fleet.add_listener(rt.alerts.set_fleet)
    if rt.recorder is not None:
        live_fleet.add_listener(rt.recorder.set_fleet)
    if settings.mqtt_credentials_dir is not None:
        live_fleet.add_listener(lambda f, v: gateway_accounts(settings, f))
    return rt


def gateway_accounts(settings: Settings, fleet: Fleet) -> None:
    """Keep the broker's gateway accounts and ACL in line with the fleet's sites
    (``ECOGRID_MQTT_CREDENTIALS_DIR``) and have the broker re-read them
    (``ECOGRID_MQTT_BROKER_PID_FILE``)."""
    assert settings.mqtt_credentials_dir is not None
    added, removed = sync_credentials(fleet.site_id.tolist(), settings.mqtt_credentials_dir)
    if not added and not removed:
        return
    log.info("gateway accounts: %d added (%s), %d removed (%s) in %s", len(added),
             ", ".join(added[:5]), len(removed), ", ".join(removed[:5]),
             settings.mqtt_credentials_dir)
    if settings.mqtt_broker_pid_file is not None:
        try:
            pid = reload_broker(settings.mqtt_broker_pid_file)
            log.info("asked the broker (pid %d) to re-read its passwords and ACL", pid)
        except (OSError, ValueError) as exc:
            log.error("the broker could not be told to re-read its ACL (%s): %s",
                      settings.mqtt_broker_pid_file, exc)
