"""How fast this machine is today, in two figures a benchmark prints beside its own.

The same code gave three times slower live figures on one day than on another
on machines of the same kind (shared hosts). These two figures say which kind
of day it was:

- ``python_loop_ns``: one iteration of a plain Python ``for`` loop adding
  integers (the interpreter's speed: the service, emulator and clients);
- ``socket_roundtrip_us``: one byte to another process and back over a
  socket pair (system calls and waking a process: the broker's work).

Both are medians of several short repetitions, taken before the benchmark
starts its processes.
"""

from __future__ import annotations

import os
import socket
import statistics
import time


def python_loop_ns(n: int = 200_000, repeat: int = 5) -> float:
    """Median time of one ``for`` loop iteration with an integer add [ns]."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        total = 0
        for i in range(n):
            total += i
        runs.append((time.perf_counter() - t0) / n * 1e9)
    return round(statistics.median(runs), 1)


def socket_roundtrip_us(n: int = 2_000) -> float:
    """Median round trip of one byte to a child process and back [µs]."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the child: echo until the parent closes its end
        a.close()
        while data := b.recv(1):
            b.send(data)
        os._exit(0)
    b.close()
    try:
        runs = []
        for _ in range(n):
            t0 = time.perf_counter()
            a.send(b"x")
            a.recv(1)
            runs.append((time.perf_counter() - t0) * 1e6)
    finally:
        a.close()
        os.waitpid(pid, 0)
    return round(statistics.median(runs), 1)


def calibrate() -> dict[str, float]:
    """Both figures, for a benchmark's JSON line."""
    return {"machine_python_loop_ns": python_loop_ns(),
            "machine_socket_roundtrip_us": socket_roundtrip_us()}
