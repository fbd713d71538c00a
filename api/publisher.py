"""The command publisher as the live service runs it: PUBACKs handled off paho's thread.

paho calls ``on_publish`` while it holds its outgoing-message mutex, and
``adapters.mqtt.commands.CommandPublisher._on_publish`` takes the publisher's
lock there; ``CommandPublisher.send`` holds that lock while it calls
``client.publish``, which needs the mutex. Under load (thousands of
setpoints while PUBACKs come back) the two threads deadlock.
:class:`LivePublisher` hands each PUBACK to a worker thread instead, which
breaks the cycle without changing what the publisher records. (To be
removed once the adapter itself avoids the lock-order inversion.)
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from adapters.mqtt.commands import CommandPublisher


class LivePublisher(CommandPublisher):
    """:class:`~adapters.mqtt.commands.CommandPublisher` with deferred PUBACK handling."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._pubacks: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._puback_worker = threading.Thread(target=self._drain_pubacks,
                                               name="commands-puback", daemon=True)
        self._puback_worker.start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any = None,
                    properties: Any = None) -> None:
        self._pubacks.put((client, userdata, mid, reason, properties))

    def _drain_pubacks(self) -> None:
        while (item := self._pubacks.get()) is not None:
            super()._on_publish(*item)

    def stop(self) -> None:
        super().stop()
        self._pubacks.put(None)
        self._puback_worker.join(5)
