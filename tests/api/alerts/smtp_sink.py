"""A real local SMTP server (aiosmtpd) that keeps what it receives, for the e-mail tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

from adapters.broker import free_port


class _Keep:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@contextmanager
def smtp_sink() -> Iterator[tuple[int, list[Message]]]:
    """Yield ``(port, messages)`` of an SMTP server on 127.0.0.1."""
    from aiosmtpd.controller import Controller

    keep = _Keep()
    port = free_port()
    ctl = Controller(keep, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port, keep.messages
    finally:
        ctl.stop()
