"""The WebSocket hub alone: channel filters, bounded queues, slow-client policy."""

from __future__ import annotations

import json

from api.live.hub import Hub


def _drain(client) -> list[dict]:
    out = []
    while not client.queue.empty():
        out.append(json.loads(client.queue.get_nowait()))
    return out


def test_channels_and_telemetry_filters():
    hub = Hub(queue_size=16)
    a, b, c = hub.connect("a", "viewer"), hub.connect("b", "viewer"), hub.connect("c", "viewer")
    hub.subscribe(a, ["telemetry"], sites=["S1"])
    hub.subscribe(b, ["telemetry", "plans"], devices=["S2-D1"])
    hub.subscribe(c, ["plans"])
    samples = [{"id": "S1-D1", "site_id": "S1", "p_kw": 1.0},
               {"id": "S2-D1", "site_id": "S2", "p_kw": 2.0},
               {"id": "S2-D2", "site_id": "S2", "p_kw": 3.0}]
    assert hub.publish_telemetry(10.0, samples) == 2
    assert hub.publish("plans", {"event": "proposed"}) == 2
    got_a, got_b, got_c = _drain(a), _drain(b), _drain(c)
    assert [s["id"] for s in got_a[0]["samples"]] == ["S1-D1"]
    assert [s["id"] for s in got_b[0]["samples"]] == ["S2-D1"]
    assert got_b[1] == {"type": "plans", "event": "proposed"}
    assert got_c == [{"type": "plans", "event": "proposed"}]


def test_slow_client_is_throttled_then_dropped_without_touching_others():
    dropped = []
    hub = Hub(queue_size=4, max_drops=10, on_drop_client=dropped.append)
    slow, fast = hub.connect("slow", "viewer"), hub.connect("fast", "viewer")
    for c in (slow, fast):
        hub.subscribe(c, ["telemetry", "kpis"])
    received = 0
    for i in range(13):
        hub.publish("kpis", {"i": i})
        received += len(_drain(fast))  # the fast client keeps up
        if i == 5:
            assert slow.dropped == 2 and slow.id in hub.clients  # throttled, still there
    assert received == 13 and fast.dropped == 0
    assert slow.dropped == 9 and slow.id in hub.clients
    hub.publish("kpis", {"i": 13})  # the tenth drop in a row: disconnected
    assert dropped == [slow] and slow.id not in hub.clients and slow.closing
    assert hub.dropped_clients == 1


def test_a_lost_event_drops_the_client_at_once():
    hub = Hub(queue_size=2, max_drops=100)
    c = hub.connect("c", "viewer")
    hub.subscribe(c, ["commands"])
    hub.publish("commands", {"n": 1})
    hub.publish("commands", {"n": 2})
    assert c.id in hub.clients
    hub.publish("commands", {"n": 3})  # would be lost: the client must resynchronise
    assert c.id not in hub.clients


def test_dropping_a_site_subscriber_mid_fan_out():
    hub = Hub(queue_size=1, max_drops=1)
    a, b = hub.connect("a", "viewer"), hub.connect("b", "viewer")
    for c in (a, b):
        hub.subscribe(c, ["telemetry"], sites=["S1"])
    sample = [{"id": "S1-D1", "site_id": "S1", "p_kw": 1.0}]
    assert hub.publish_telemetry(1.0, sample) == 2
    assert hub.publish_telemetry(2.0, sample) == 0  # both full: both dropped, no error
    assert hub.clients == {} and hub.dropped_clients == 2
    assert hub.publish_telemetry(3.0, sample) == 0


def test_a_message_is_serialized_once_and_only_for_its_subscribers():
    hub = Hub(queue_size=8)
    clients = [hub.connect(f"u{i}", "viewer") for i in range(5)]
    for c in clients[:3]:
        hub.subscribe(c, ["plans"])
    hub.subscribe(clients[3], ["alerts"])
    assert hub.publish("commands", {"n": 1}) == 0  # nobody follows commands
    assert hub.publish("plans", {"event": "proposed"}) == 3
    texts = [c.queue.get_nowait() for c in clients[:3]]
    assert all(t is texts[0] for t in texts)  # one serialized text, shared
    assert json.loads(texts[0]) == {"type": "plans", "event": "proposed"}
    assert clients[3].queue.empty() and clients[4].queue.empty()
    hub.unsubscribe(clients[0], ["plans"])
    hub.disconnect(clients[1])
    assert hub.publish("plans", {"event": "approved"}) == 1


def test_publish_threadsafe_batches_messages_in_order():
    import asyncio
    import threading

    async def run() -> list[dict]:
        hub = Hub(queue_size=1000)
        hub.bind(asyncio.get_running_loop())
        c = hub.connect("a", "viewer")
        hub.subscribe(c, ["commands"])

        def produce() -> None:
            for i in range(300):
                hub.publish_threadsafe("commands", {"i": i})

        t = threading.Thread(target=produce)
        t.start()
        t.join()
        for _ in range(100):
            if c.queue.qsize() == 300:
                break
            await asyncio.sleep(0.01)
        return _drain(c)

    got = asyncio.run(run())
    assert [m["i"] for m in got] == list(range(300))


def test_publish_threadsafe_without_a_loop_keeps_nothing():
    hub = Hub()
    hub.publish_threadsafe("plans", {"event": "proposed"})
    assert hub._outbox == []


def test_closing_wakes_the_waiter_from_the_loop_and_from_another_thread():
    import asyncio
    import threading

    async def run() -> None:
        hub = Hub()
        a, b = hub.connect("a", "viewer"), hub.connect("b", "viewer")
        waiters = [asyncio.create_task(c.wait_closing()) for c in (a, b)]
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)
        hub.disconnect(a)  # on the loop
        await asyncio.wait_for(waiters[0], 1)
        assert a.closing and not waiters[1].done()
        t = threading.Thread(target=setattr, args=(b, "closing", True))  # as tests do
        t.start()
        t.join()
        await asyncio.wait_for(waiters[1], 1)
        b.closing = False  # a closing client stays closing
        assert b.closing and not hub.send(b, "x", lossy=True)

    asyncio.run(run())
