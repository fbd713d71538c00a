"""Command states are defined once: the publisher's and the registry's."""

from __future__ import annotations

from adapters.mqtt import types
from adapters.registry import commands as cmd_repo


def test_command_states_in_life_cycle_order():
    assert types.COMMAND_STATES == ("scheduled", "pending", "queued", "sent", "received",
                                    "applied", "rejected", "expired", "cancelled",
                                    "superseded")
    assert types.PUBLISHER_STATES == ("queued", "sent", "received", "applied", "rejected",
                                      "expired")
    assert set(types.PUBLISHER_STATES) | set(types.PRE_STATES) < set(types.COMMAND_STATES)
    assert types.TERMINAL_STATES < set(types.PUBLISHER_STATES)
    assert types.FINAL_STATES == {"applied", "rejected", "expired", "cancelled", "superseded"}
    assert types.ACK_STATUSES < set(types.PUBLISHER_STATES)
    # The registry reads them (and the setpoint keys) instead of spelling them again.
    assert cmd_repo.KINDS == ("p_kw", "p_limit_kw")
