"""The live system under load: emulator -> broker -> service -> REST and WebSocket clients.

    python benchmarks/run.py live --devices 10000 --ws-clients 1000 --seconds 30

Starts a private Mosquitto, ``ecogrid serve`` (its own process, a fresh data
folder), the device emulator (``ecogrid devices simulate``, its own process,
1 Hz) and a process of ``--ws-clients`` WebSocket clients, each subscribed to
the telemetry of one site (round robin) plus the ``commands`` channel for
the first client. This process drives the REST load (``--rest-concurrency``
loops alternating ``GET /kpis`` and ``GET /devices?site_id=``) for
``--seconds``, and half-way through asks for a plan and approves it while
``mosquitto_sub`` (its own process) on ``sites/+/devices/+/commands/setpoint``
stands in for the devices' receipt.

Figures: ``rest_p99_ms`` (both routes together, and each), ``telemetry_to_ws_p99_ms``
(emulator's time stamp to a client's receipt, over the measured ``--seconds``), ``approve_to_device_p99_ms``
(approval request sent to each setpoint's arrival at the subscriber; with
``approve_setpoints``, how many went out), ``ws_clients`` (connected at the
end), ``lost`` (clients disconnected plus telemetry messages the server
dropped for slow clients). ``..._outside_plan`` figures leave out the plan
request and approval (from asking for the plan to the last setpoint's arrival,
plus 2 s). ``broker_cpu_ms_approval``: Mosquitto's CPU time while the plan
step went out. ``machine_*``: how fast the machine was (see
``benchmarks/machine.py``). All processes share this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from adapters.mqtt.topics import SETPOINT_FILTER

ROOT = Path(__file__).resolve().parents[1]
DEVICES_PER_SITE = 9967 / 342
ADMIN = ("bench", "bench-pass-1")


def _n_sites(devices: int) -> int:
    return max(1, round(devices / DEVICES_PER_SITE))


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


# -- the WebSocket client process --------------------------------------------------------
async def _ws_clients(url: str, token: str, sites: list[str], n: int, seconds: float,
                      out: str, compression: str = "deflate") -> None:
    from websockets.asyncio.client import connect

    lat_ms: list[float] = []
    at_s: list[float] = []  # receipt times of lat_ms
    counts = [0] * n
    closed = [0]
    connected = [0]
    stop_at = time.time() + seconds

    async def one(i: int) -> None:
        try:
            async with connect(f"{url}?token={token}", max_size=None, open_timeout=60,
                               ping_interval=None,
                               compression=None if compression == "none" else "deflate") as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "subscribe", "channels": ["telemetry"],
                                          "sites": [sites[i % len(sites)]]}))
                connected[0] += 1
                loop = asyncio.get_running_loop()
                try:  # one deadline for the whole loop (no task per message, as wait_for makes)
                    async with asyncio.timeout_at(loop.time() + max(0.1, stop_at - time.time())):
                        async for raw in ws:
                            now = time.time()
                            msg = orjson.loads(raw)
                            if msg.get("type") != "telemetry":
                                continue
                            counts[i] += 1
                            if i % 10 == 0:  # sample the latency on a tenth of the clients
                                for smp in msg["samples"][:5]:
                                    lat_ms.append((now - smp["t_s"]) * 1000.0)
                                    at_s.append(now)
                except TimeoutError:
                    pass
        except Exception:
            closed[0] += 1

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(i)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # do not open a thousand sockets in one burst
    await asyncio.gather(*tasks)
    Path(out).write_text(json.dumps({"latency_ms": lat_ms, "at_s": at_s, "messages": counts,
                                     "closed": closed[0], "connected": connected[0]}))


def ws_worker(argv: list[str]) -> None:
    url, token, sites, n, seconds, out, compression = argv
    asyncio.run(_ws_clients(url, token, sites.split(","), int(n), float(seconds), out,
                            compression))


# -- REST load -----------------------------------------------------------------------
async def _rest_load(base: str, headers: dict[str, str], sites: list[str], seconds: float,
                     concurrency: int) -> dict[str, list[Any]]:
    """``concurrency`` loops of requests, each waiting 50 ms after its answer.

    aiohttp, not httpx: httpx's client costs about 3 ms of CPU per request on this
    machine, aiohttp's 0.3 ms, and every millisecond the load generator spends is
    taken from the service, broker and emulator on the same two cores.
    """
    import aiohttp

    lat: dict[str, list[Any]] = {"kpis": [], "devices": [], "timed": []}
    stop_at = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url=base, headers=headers, timeout=timeout) as c:
        async def get(route: str, params: dict[str, Any] | None = None) -> None:
            t0 = time.perf_counter()
            async with c.get(f"/api/v1/{route}", params=params) as r:
                await r.read()
                r.raise_for_status()
            ms = (time.perf_counter() - t0) * 1000.0
            lat[route].append(ms)
            lat["timed"].append((time.time(), ms))

        async def loop(k: int) -> None:
            i = k
            while time.monotonic() < stop_at:
                if i % 2 == 0:
                    await get("kpis")
                else:
                    await get("devices", {"site_id": sites[i % len(sites)], "limit": 100})
                i += 1
                await asyncio.sleep(0.05)
        await asyncio.gather(*(loop(k) for k in range(concurrency)))
    return lat


# -- approval to device ----------------------------------------------------------------
def _approve_to_device(base: str, headers: dict[str, str], mqtt_url: str,
                       wait_s: float, work: Path, broker_pid: int | None = None
                       ) -> dict[str, Any]:
    """Ask for a plan, approve it, and time each setpoint's arrival at a stand-in device.

    With ``broker_pid``, also the broker's CPU time from the approval request until
    every setpoint was seen (``broker_cpu_ms_approval``; polled every 50 ms).

    The stand-in is ``mosquitto_sub`` (its own process, C, time-stamping each message
    as it reads it: ``-F %U``) on every setpoint topic, so the figure is not inflated
    by this process's own REST load and Python MQTT client.
    """
    import httpx
    import psutil

    from adapters.mqtt.client import parse_broker_url

    target = parse_broker_url(mqtt_url)
    out = work / "setpoints.txt"
    with out.open("w") as sink:
        mosquitto_sub = shutil.which("mosquitto_sub")
        if mosquitto_sub is None:
            raise RuntimeError("mosquitto_sub is missing (Debian: mosquitto-clients; "
                               "./bootstrap setup installs it)")
        sub = subprocess.Popen(
            [mosquitto_sub, "-h", target.host, "-p", str(target.port),
             # QoS 0: one subscriber for all 2,000+ devices must not be held to the
             # 20 unacknowledged messages a real device's client allows (libmosquitto's
             # default Receive Maximum); -R: not the retained setpoints of before.
             "-V", "mqttv5", "-q", "0", "-R",
             "-F", "%U", "-t", SETPOINT_FILTER], stdout=sink)
    try:
        time.sleep(1.0)

        def arrivals() -> list[float]:
            return [float(x) for x in out.read_text().split()]

        with httpx.Client(base_url=base, headers=headers, timeout=300) as c:
            window_start = time.time()
            t0 = time.perf_counter()
            plan = c.post("/api/v1/plans").json()
            plan_s = time.perf_counter() - t0
            # orjson: this process also times the REST requests; the full plan is ~10 MB.
            full = orjson.loads(c.get(f"/api/v1/plans/{plan['id']}").content)
            now = time.time()
            k = int((now - full["start_s"]) // full["step_s"])
            expected = sum(1 for series in full["setpoints"].values() for v in series.values()
                           if 0 <= k < len(v) and v[k] is not None)
            before = len(arrivals())
            broker = psutil.Process(broker_pid) if broker_pid else None
            broker_cpu_s = sum(broker.cpu_times()[:2]) if broker else 0.0  # user + system
            started = time.time()
            r = c.post(f"/api/v1/plans/{plan['id']}/approve")
            approve_http_ms = (time.time() - started) * 1000.0
            r.raise_for_status()
            deadline = time.time() + wait_s
            while len(arrivals()) - before < expected and time.time() < deadline:
                time.sleep(0.05)
            if broker:
                broker_cpu_s = sum(broker.cpu_times()[:2]) - broker_cpu_s
    finally:
        sub.terminate()
        sub.wait(10)
    lat = [(t - started) * 1000.0 for t in arrivals()[before:]]
    return {"approve_to_device_p50_ms": _pct(lat, 50), "approve_to_device_p99_ms": _pct(lat, 99),
            "approve_setpoints": len(lat), "approve_expected": expected,
            "approve_http_ms": round(approve_http_ms, 1), "plan_request_s": round(plan_s, 2),
            "plan_solver_status": plan.get("solver_status"),
            "broker_cpu_ms_approval": round(broker_cpu_s * 1000.0) if broker_pid else None,
            "_window": (window_start, started + max(lat, default=0.0) / 1000.0)}


# -- orchestration ----------------------------------------------------------------------
def _wait_http(base: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    import httpx

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ecogrid serve exited: {log.read_text()[-2000:]}")
        try:
            h = httpx.get(f"{base}/healthz", timeout=5)
            if h.status_code == 200 and h.json()["last_ingest_s"]:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the service did not ingest telemetry in time")


def run(devices: int, ws_clients: int, seconds: float, rest_concurrency: int = 8,
        ws_compression: str = "deflate", py_spy_out: str | None = None) -> dict[str, Any]:
    """Run the live benchmark once; returns the figures (see the module docstring).

    ``ws_compression`` is what the WebSocket clients offer (``deflate`` like a
    browser, or ``none``); ``py_spy_out`` records a py-spy profile (raw
    flamegraph lines) of ``ecogrid serve`` over the measured period there.
    """
    import httpx

    from adapters.broker import Broker, free_port
    from benchmarks.machine import calibrate

    n_sites = _n_sites(devices)
    machine = calibrate()  # before this process starts threads and the others start
    work = Path(tempfile.mkdtemp(prefix="ecogrid-bench-live-"))
    broker = Broker(work / "mosquitto").start()
    procs: list[subprocess.Popen] = []
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ECOGRID_DATA_DIR": str(work / "data"), "ECOGRID_MQTT_URL": broker.url,
           "ECOGRID_FLEET_SITES": str(n_sites), "ECOGRID_ADMIN_USER": ADMIN[0],
           "ECOGRID_ADMIN_PASSWORD": ADMIN[1], "ECOGRID_OPTIMIZER_ENABLED": "false",
           "ECOGRID_LOG_LEVEL": "WARNING", "ECOGRID_WS_QUEUE_SIZE": "256"}
    env.pop("ECOGRID_DATABASE_URL", None)
    log = work / "serve.log"
    try:
        with log.open("ab") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "api.cli.main", "serve", "--port", str(port)], env=env,
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "api.cli.main", "devices", "simulate", "--broker", broker.url,
                 "--sites", str(n_sites), "--interval", "1"], env=env, stdout=out,
                stderr=subprocess.STDOUT, cwd=ROOT))
        _wait_http(base, procs[0], log, 300)
        token = httpx.post(f"{base}/api/v1/auth/token", data={
            "username": ADMIN[0], "password": ADMIN[1]}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        sites = [s["id"] for s in httpx.get(f"{base}/api/v1/sites", headers=headers,
                                            timeout=60).json()]
        ws_out = work / "ws.json"
        ws_seconds = seconds + 15.0
        procs.append(subprocess.Popen(
            [sys.executable, str(Path(__file__)), "--ws-worker",
             f"ws://127.0.0.1:{port}/api/v1/ws", token, ",".join(sites), str(ws_clients),
             str(ws_seconds), str(ws_out), ws_compression], cwd=ROOT, env=env))
        time.sleep(min(10.0, 2.0 + ws_clients / 200))  # let the clients connect
        result: dict[str, Any] = {}
        done = threading.Event()

        def approve_later() -> None:
            time.sleep(seconds / 2)
            try:
                result.update(_approve_to_device(base, headers, broker.url, 30.0, work,
                                                 broker.pid))
            except Exception as exc:
                result["approve_error"] = f"{type(exc).__name__}: {exc}"
            done.set()

        threading.Thread(target=approve_later, daemon=True).start()
        if py_spy_out:
            procs.append(subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "-p",
                 str(procs[0].pid), "-d", str(int(seconds)), "-r", "50", "-f", "raw",
                 "--nonblocking", "-o", py_spy_out], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        measured = (time.time(), time.time() + seconds)  # the WebSocket clients run longer
        lat = asyncio.run(_rest_load(base, headers, sites, seconds, rest_concurrency))
        if not done.wait(180):
            result["approve_error"] = "no result within 180 s"
        procs[2].wait(ws_seconds + 120)
        if py_spy_out:
            procs[-1].wait(60)
        ws = json.loads(ws_out.read_text()) if ws_out.exists() else {
            "latency_ms": [], "messages": [], "closed": ws_clients, "connected": 0}
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        dropped = _metric(metrics, "ecogrid_ws_dropped_messages_total")
        kicked = _metric(metrics, "ecogrid_ws_slow_clients_dropped_total")
        both = lat["kpis"] + lat["devices"]
        # The same figures outside the plan request and approval (from asking for the plan
        # to the last setpoint's arrival, plus 2 s): what the optimizer's run costs the rest.
        w0, w1 = result.pop("_window", (0.0, 0.0))
        ws_at = np.asarray(ws.get("at_s", []), dtype=float)
        ws_lat = np.asarray(ws["latency_ms"], dtype=float)
        # WebSocket figures over the measured period only (not while the clients connect).
        inside = (ws_at >= measured[0]) & (ws_at <= measured[1])
        ws_measured = ws_lat[inside]
        steady = ws_lat[inside & ((ws_at < w0) | (ws_at > w1 + 2.0))]
        rest_steady = [ms for at, ms in lat["timed"] if at < w0 or at > w1 + 2.0]
        return {
            "devices": devices, "sites": n_sites, "seconds": seconds,
            "rest_requests": len(both), "rest_p99_ms": _pct(both, 99),
            "rest_p50_ms": _pct(both, 50), "rest_p99_ms_outside_plan": _pct(rest_steady, 99),
            "rest_kpis_p99_ms": _pct(lat["kpis"], 99),
            "rest_devices_p99_ms": _pct(lat["devices"], 99),
            "telemetry_to_ws_p50_ms": _pct(list(ws_measured), 50),
            "telemetry_to_ws_p99_ms": _pct(list(ws_measured), 99),
            "telemetry_to_ws_p99_ms_outside_plan": _pct(list(steady), 99),
            "ws_messages": int(sum(ws["messages"])),
            "ws_clients": ws_clients - ws["closed"], "ws_clients_connected": ws["connected"],
            "lost": int(ws["closed"] + dropped), "ws_dropped_messages": int(dropped),
            "ws_slow_clients_dropped": int(kicked), "ws_compression": ws_compression,
            **result, **machine,
            "note": "emulator, broker, service and clients share this machine"}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def main(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="run.py live", description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=10_000, help="fleet size (devices)")
    p.add_argument("--ws-clients", type=int, default=1000, help="WebSocket clients")
    p.add_argument("--seconds", type=float, default=30.0, help="measured duration [s]")
    p.add_argument("--rest-concurrency", type=int, default=8, help="parallel REST loops")
    p.add_argument("--ws-compression", choices=("deflate", "none"), default="deflate",
                   help="permessage-deflate offered by the WebSocket clients (browsers do)")
    p.add_argument("--py-spy", metavar="PATH", default=None,
                   help="record a py-spy profile of the service (raw flamegraph) to PATH")
    args = p.parse_args(argv)
    for attempt in range(3):
        try:
            return run(args.devices, args.ws_clients, args.seconds, args.rest_concurrency,
                       args.ws_compression, args.py_spy)
        except RuntimeError as exc:
            # free_port() can hand out a port that another socket takes before the
            # service binds it: start again on another one.
            if "address already in use" not in str(exc) or attempt == 2:
                raise
            print(f"the service's port was taken ({exc!s:.80}); starting again",
                  file=sys.stderr)
    raise AssertionError("unreachable")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--ws-worker":
        sys.path.insert(0, str(ROOT))
        ws_worker(sys.argv[2:])
    else:
        print(json.dumps(main(sys.argv[1:])))
