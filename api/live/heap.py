"""The service process's garbage-collector policy: short pauses instead of long ones.

CPython frees most objects by reference counting; its cyclic garbage collector
walks every tracked object of a generation, holding the GIL, so every thread
waits. A full (generation 2) collection walks all long-lived objects. In the
service they are many: the start-up heap (modules, the fleet, registry caches:
~400,000 objects) and, under load, 1,000 WebSocket connections (~120,000
objects). Measured with the live benchmark: a full collection took 87 ms and
came every ~8 s, and each one showed in the REST, WebSocket and approval
latencies. The policy:

* at warm-up the start-up heap is frozen (``gc.freeze()``: out of the
  collector's sight);
* after every full collection its survivors are frozen too: they are alive
  now, and the next full collection walks only what came since (measured:
  10-20 ms instead of 87 ms);
* a frozen object is never collected as cyclic garbage (the objects of a
  closed WebSocket, say), so every ``sweep_every_s`` the heap is unfrozen,
  collected in full and frozen again: one longer pause (~0.3 s at the
  reference fleet) in that period instead of one every few seconds.

The young generations keep CPython's thresholds: raising the first one to
10,000 made generation 1 collections 50-77 ms long.

While a plan step goes out (:meth:`HeapPolicy.deferred`), the collector is
off: building ~2,400 commands allocates tens of thousands of objects that all
stay alive, and every collection it triggers on the way walks them for
nothing. Measured in-process: the approval's CPU time fell by about a third.
The collections it skipped run after it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


class HeapPolicy:
    """Freeze the long-lived heap, sweep it now and then.

    Parameters
    ----------
    sweep_every_s : float
        How often the frozen heap is unfrozen and collected in full [s].
    """

    def __init__(self, sweep_every_s: float = 600.0):
        if sweep_every_s <= 0:
            raise ValueError(f"sweep_every_s must be > 0, got {sweep_every_s}")
        self.sweep_every_s = float(sweep_every_s)
        self.last_sweep_s: float | None = None
        self.last_sweep_pause_s: float | None = None
        self._lock = threading.Lock()
        self._installed = False
        self._deferring = 0  # callers inside deferred()
        self._reenable = False  # whether the last of them turns the collector back on

    def settle(self) -> None:
        """Collect and freeze what is alive now, and from now on freeze the survivors of
        every full collection (call once the start-up heap is built)."""
        with self._lock:
            gc.collect()
            gc.freeze()
            if not self._installed:
                gc.callbacks.append(self._after_collection)
                self._installed = True
            self.last_sweep_s = time.monotonic()

    def sweep(self) -> float:
        """Unfreeze, collect everything, freeze again; returns the pause [s]."""
        with self._lock:
            t0 = time.perf_counter()
            gc.unfreeze()
            found = gc.collect()
            gc.freeze()
            pause = time.perf_counter() - t0
            self.last_sweep_s = time.monotonic()
            self.last_sweep_pause_s = pause
        log.info("heap sweep: %d unreachable objects freed, %d frozen, %.0f ms", found,
                 gc.get_freeze_count(), pause * 1000.0)
        return pause

    def sweep_due(self) -> bool:
        """True when the last sweep (or :meth:`settle`) is ``sweep_every_s`` ago."""
        return self.last_sweep_s is not None and (
            time.monotonic() - self.last_sweep_s >= self.sweep_every_s)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """No automatic collection inside the block (for every thread: keep it short).

        Nested and concurrent blocks are fine: the collector comes back on when
        the last one ends, and only if it was on when the first one began.
        """
        with self._lock:
            if self._deferring == 0:
                self._reenable = gc.isenabled()
                gc.disable()
            self._deferring += 1
        try:
            yield
        finally:
            with self._lock:
                self._deferring -= 1
                if self._deferring == 0 and self._reenable:
                    gc.enable()

    def close(self) -> None:
        """Stop freezing after full collections (the frozen heap stays frozen)."""
        with self._lock:
            if self._installed:
                gc.callbacks.remove(self._after_collection)
                self._installed = False

    @staticmethod
    def _after_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()  # the survivors are alive: the next full collection skips them
