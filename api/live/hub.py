"""The WebSocket hub: per-client bounded queues, channel subscriptions, slow-client policy.

Each connected client has a bounded :class:`asyncio.Queue` of serialized
messages and its own sender task, so a slow client never delays the others.
A message is serialized once (orjson) and the same text is queued for every
subscriber; subscribers are indexed per channel, so a message nobody
follows costs nothing. Other threads hand messages over with
:meth:`Hub.publish_threadsafe`, which batches them into one wake-up of the
loop.
When a client's queue is full, a ``telemetry`` or ``kpis`` message for it is
dropped (the client is throttled: the next one carries fresh values); a
client that drops ``max_drops`` messages in a row, or would miss a
``plans``/``commands``/``alerts`` event, is disconnected. All methods run
on the event loop; other threads use :meth:`Hub.call_soon` or
:meth:`Hub.publish_threadsafe`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger(__name__)

CHANNELS: tuple[str, ...] = ("telemetry", "kpis", "plans", "commands", "alerts", "fleet")
LOSSY: frozenset[str] = frozenset({"telemetry", "kpis"})


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@dataclass(eq=False)
class WsClient:
    """One connected WebSocket client.

    ``closing`` turns True (once, for good) when the hub gives up on the client or
    it disconnects; :meth:`wait_closing` waits for that without polling.
    """

    id: int
    user: str
    role: str
    queue: asyncio.Queue[str]
    channels: set[str] = field(default_factory=set)
    sites: set[str] | None = None  # telemetry filter; None = all
    devices: set[str] | None = None
    dropped: int = 0  # messages lost, total
    dropped_in_row: int = 0
    sent: int = 0
    _closing: bool = field(default=False, init=False, repr=False)
    _closed: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default_factory=_running_loop, init=False,
                                                    repr=False)

    @property
    def closing(self) -> bool:
        """True once the connection is to be closed (the hub stops queueing for it)."""
        return self._closing

    @closing.setter
    def closing(self, value: bool) -> None:
        if not value or self._closing:
            return  # a closing client does not reopen
        self._closing = True
        loop = self._loop
        if loop is None or _running_loop() is loop:
            self._closed.set()
        elif not loop.is_closed():  # set from another thread: wake the client's loop
            loop.call_soon_threadsafe(self._closed.set)

    async def wait_closing(self) -> None:
        """Return once :attr:`closing` is True."""
        await self._closed.wait()


class Hub:
    """Fan-out of live messages to WebSocket clients.

    Parameters
    ----------
    queue_size : int
        Messages queued per client.
    max_drops : int
        Consecutive dropped messages after which a client is disconnected.
    on_drop_client : callable, optional
        Called with the client when the hub gives up on it (to count it).
    """

    def __init__(self, queue_size: int = 256, max_drops: int = 1024,
                 on_drop_client: Callable[[WsClient], None] | None = None):
        self.queue_size = queue_size
        self.max_drops = max_drops
        self.clients: dict[int, WsClient] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_drop_client = on_drop_client
        self.dropped_messages = 0
        self.dropped_clients = 0
        # Telemetry subscribers, indexed so that a batch touches only the clients it concerns.
        self._tel_all: set[WsClient] = set()
        self._tel_site: dict[str, set[WsClient]] = {}
        self._tel_device: dict[str, set[WsClient]] = {}
        self._subs: dict[str, set[WsClient]] = {ch: set() for ch in CHANNELS}
        self._outbox: list[tuple[str, dict[str, Any]]] = []
        self._outbox_lock = threading.Lock()
        # Sees every publish() (not telemetry), on the loop: the events relay (api.live.replica).
        self.tap: Callable[[str, str], None] | None = None  # (channel, JSON text)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the event loop that owns the hub (for :meth:`call_soon`)."""
        self._loop = loop

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the hub's loop; safe from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def publish_threadsafe(self, channel: str, message: dict[str, Any]) -> None:
        """:meth:`publish` from any thread; messages that pile up before the loop
        runs go out together, in order, in one wake-up of the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._outbox_lock:
            first = not self._outbox
            self._outbox.append((channel, message))
        if first:
            try:
                loop.call_soon_threadsafe(self._drain_outbox)
            except RuntimeError:  # the loop closed meanwhile
                with self._outbox_lock:
                    self._outbox.clear()

    def _drain_outbox(self) -> None:
        with self._outbox_lock:
            out, self._outbox = self._outbox, []
        for channel, message in out:
            self.publish(channel, message)

    # -- clients -----------------------------------------------------------------
    def connect(self, user: str, role: str) -> WsClient:
        c = WsClient(id=next(self._ids), user=user, role=role,
                     queue=asyncio.Queue(maxsize=self.queue_size))
        self.clients[c.id] = c
        return c

    def disconnect(self, client: WsClient) -> None:
        self.clients.pop(client.id, None)
        self._unindex(client)
        client.closing = True

    def _unindex(self, client: WsClient) -> None:
        for subs in self._subs.values():
            subs.discard(client)
        self._tel_all.discard(client)
        for key, index in ((client.sites, self._tel_site), (client.devices, self._tel_device)):
            for k in key or ():
                subs = index.get(k)
                if subs is not None:
                    subs.discard(client)
                    if not subs:
                        del index[k]

    def _index(self, client: WsClient) -> None:
        self._unindex(client)
        if client.closing:
            return
        for ch in client.channels:
            self._subs[ch].add(client)
        if "telemetry" not in client.channels:
            return
        if client.sites is None and client.devices is None:
            self._tel_all.add(client)
            return
        for k in client.sites or ():
            self._tel_site.setdefault(k, set()).add(client)
        for k in client.devices or ():
            self._tel_device.setdefault(k, set()).add(client)

    def subscribe(self, client: WsClient, channels: list[str], sites: list[str] | None = None,
                  devices: list[str] | None = None) -> None:
        """Add channels; ``sites``/``devices`` restrict telemetry (both None = every device)."""
        bad = [c for c in channels if c not in CHANNELS]
        if bad:
            raise ValueError(f"unknown channel(s) {bad}; channels are {list(CHANNELS)}")
        self._unindex(client)
        client.channels.update(channels)
        if sites is not None:
            client.sites = (client.sites or set()) | set(sites)
        if devices is not None:
            client.devices = (client.devices or set()) | set(devices)
        self._index(client)

    def unsubscribe(self, client: WsClient, channels: list[str]) -> None:
        self._unindex(client)
        client.channels.difference_update(channels)
        self._index(client)

    # -- sending -----------------------------------------------------------------
    def send(self, client: WsClient, text: str, lossy: bool) -> bool:
        """Queue one serialized message for one client; False when it was dropped."""
        if client.closing:
            return False
        try:
            client.queue.put_nowait(text)
        except asyncio.QueueFull:
            client.dropped += 1
            client.dropped_in_row += 1
            self.dropped_messages += 1
            if not lossy or client.dropped_in_row >= self.max_drops:
                self._give_up(client)
            return False
        client.dropped_in_row = 0
        return True

    def _give_up(self, client: WsClient) -> None:
        log.info("WebSocket client %s (%s) is too slow; disconnecting", client.id, client.user)
        self.dropped_clients += 1
        self.disconnect(client)
        if self._on_drop_client is not None:
            self._on_drop_client(client)

    def publish(self, channel: str, message: dict[str, Any]) -> int:
        """Send ``message`` (a dict, ``type`` set to ``channel``) to every subscriber."""
        subs = self._subs.get(channel)
        if not subs and self.tap is None:
            return 0
        text = dumps({"type": channel, **message})
        if self.tap is not None:
            self.tap(channel, text)
        if not subs:
            return 0
        lossy = channel in LOSSY
        n = 0
        for c in list(subs):  # a client given up on leaves the set meanwhile
            n += self.send(c, text, lossy)
        return n

    def publish_telemetry(self, t_s: float, samples: list[dict[str, Any]]) -> int:
        """Send telemetry samples (each with ``id``, ``site_id``, ...) to subscribers,
        each client receiving only its sites and devices.

        A message is serialized once per audience: once for the clients that take
        everything, once per site for the clients that follow just that site.
        """
        if not samples or not (self._tel_all or self._tel_site or self._tel_device):
            return 0
        n = 0
        if self._tel_all:
            text = dumps({"type": "telemetry", "t_s": t_s, "samples": samples})
            for c in list(self._tel_all):
                n += self.send(c, text, True)
        if not (self._tel_site or self._tel_device):
            return n
        by_site: dict[str, list[dict[str, Any]]] = {}
        for smp in samples:
            by_site.setdefault(smp["site_id"], []).append(smp)
        custom: dict[WsClient, list[dict[str, Any]]] = {}
        for site, group in by_site.items():
            subs = self._tel_site.get(site)
            if not subs:
                continue
            shared: str | None = None
            for c in list(subs):  # a client given up on leaves the index meanwhile
                if c.devices is None and len(c.sites or ()) == 1:
                    if shared is None:
                        shared = dumps({"type": "telemetry", "t_s": t_s, "samples": group})
                    n += self.send(c, shared, True)
                else:
                    custom.setdefault(c, []).extend(group)
        if self._tel_device:
            for smp in samples:
                for c in list(self._tel_device.get(smp["id"], ())):
                    if c.sites is None or smp["site_id"] not in c.sites:
                        custom.setdefault(c, []).append(smp)
        for c, chosen in custom.items():
            n += self.send(c, dumps({"type": "telemetry", "t_s": t_s,
                                          "samples": chosen}), True)
        return n


def dumps(message: dict[str, Any]) -> str:
    """One message as JSON text (numpy arrays and scalars as lists and numbers)."""
    return orjson.dumps(message, default=_json_default,
                        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialize {type(value).__name__}")
