"""The alert manager on a real registry (SQLite, and PostgreSQL when marked): durations,
dedup, clearing, reopening and flapping, persistence across restarts, e-mail to a real
SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.registry import Registry, open_registry
from adapters.registry import alerts as alert_repo
from api.alerts.email import EmailNotifier
from api.alerts.manager import AlertManager, Condition
from tests.adapters.registry_fixtures import postgres_schema
from tests.api.alerts.smtp_sink import smtp_sink

T0 = 1_790_000_000.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry(request: pytest.FixtureRequest, tmp_path) -> Iterator[Registry]:
    if request.param == "sqlite":
        reg = open_registry(f"sqlite:///{tmp_path / 'reg.db'}")
        yield reg
        reg.close()
    else:
        for url, schema in postgres_schema():
            reg = open_registry(url, schema=schema)
            yield reg
            reg.close()


def _cond(delay_s: float = 0.0, key: str = "stale:device:D1") -> Condition:
    return Condition(key, "stale", "warning", "no telemetry from D1", site_id="S1",
                     device_id="D1", delay_s=delay_s)


def test_duration_dedup_and_clear(registry: Registry):
    pushed: list[tuple[str, dict[str, Any]]] = []
    m = AlertManager(registry, lambda ch, msg: pushed.append((ch, msg)), clear_after_s=30.0)
    c = _cond(delay_s=60.0)
    assert m.evaluate(T0, [c])["opened"] == []          # pending
    assert m.evaluate(T0 + 59, [c])["opened"] == []     # still pending
    opened = m.evaluate(T0 + 60, [c])["opened"]
    assert len(opened) == 1 and opened[0]["first_seen_s"] == T0 + 60
    for k in range(1, 20):                              # persists: one alert, updated
        out = m.evaluate(T0 + 60 + 5 * k, [c])
        assert out["opened"] == [] and out["reopened"] == []
    assert m.evaluate(T0 + 200, [])["cleared"] == []    # false, but not for 30 s yet
    cleared = m.evaluate(T0 + 230, [])["cleared"]
    assert len(cleared) == 1 and cleared[0]["cleared_s"] == T0 + 230
    assert cleared[0]["last_seen_s"] == T0 + 155
    with registry.session() as s:
        rows = alert_repo.list_alert_states(s)
    assert len(rows) == 1 and rows[0]["kind"] == "stale" and rows[0]["occurrences"] == 1
    assert [msg["event"] for ch, msg in pushed if ch == "alerts"] == ["opened", "cleared"]


def test_pending_condition_that_goes_away_never_opens(registry: Registry):
    m = AlertManager(registry)
    c = _cond(delay_s=60.0)
    m.evaluate(T0, [c])
    m.evaluate(T0 + 30, [])
    assert m.evaluate(T0 + 70, [c])["opened"] == []     # the clock restarted at T0 + 70
    assert len(m.evaluate(T0 + 130, [c])["opened"]) == 1


def test_flapping_is_damped(registry: Registry):
    m = AlertManager(registry, clear_after_s=10.0, reopen_within_s=600.0, flap_count=3,
                     flap_window_s=3600.0, flap_hold_s=300.0)
    c = _cond()
    t = T0
    m.evaluate(t, [c])
    events = []
    for _ in range(6):  # off 35 s (clears after 10 s), then back on
        t += 20
        events.append(m.evaluate(t, []))
        t += 15
        events.append(m.evaluate(t, []))
        t += 5
        events.append(m.evaluate(t, [c]))
    assert sum(len(e["cleared"]) for e in events) == 3  # then held open as flapping
    with registry.session() as s:
        rows = alert_repo.list_alert_states(s)
    assert len(rows) == 1                     # one alert, never many
    assert rows[0]["flapping"] is True
    assert rows[0]["occurrences"] == 4        # 1 + 3 reopenings, then held open
    assert rows[0]["cleared_s"] is None
    m.evaluate(t + 200, [])
    assert m.evaluate(t + 299, [])["cleared"] == []
    assert len(m.evaluate(t + 500, [])["cleared"]) == 1  # cleared after the 300 s hold


def test_events_and_resolve(registry: Registry):
    m = AlertManager(registry)
    key = "command:device:D7"
    cond = Condition(key, "command_rejected", "warning", "setpoint rejected", device_id="D7")
    m.event(T0, cond)
    m.event(T0 + 5, cond)                    # again: the same alert
    m.evaluate(T0 + 10, [])                  # an event stays open without a condition
    assert m.open_keys() == [key]
    m.resolve(T0 + 20, key)
    with registry.session() as s:
        rows = alert_repo.list_alert_states(s, kind="command_rejected")
    assert len(rows) == 1 and rows[0]["cleared_s"] == T0 + 20
    assert rows[0]["last_seen_s"] == T0 + 10  # still true at the last pass


def test_open_alerts_survive_a_restart(registry: Registry):
    m1 = AlertManager(registry)
    m1.evaluate(T0, [_cond()])
    m2 = AlertManager(registry)
    assert m2.load_open() == 1
    out = m2.evaluate(T0 + 5, [_cond()])
    assert out["opened"] == []              # the stored alert is continued, not duplicated
    with registry.session() as s:
        assert len(alert_repo.list_alert_states(s, open_only=True)) == 1


def test_email_reaches_a_real_smtp_server(tmp_path):
    reg = open_registry(f"sqlite:///{tmp_path / 'reg.db'}")
    try:
        with smtp_sink() as (port, inbox):
            mail = EmailNotifier("127.0.0.1", port, "twin@example.org", ["ops@example.org"])
            m = AlertManager(reg, email=mail)
            m.evaluate(T0, [_cond(), Condition("x:info", "threshold", "info", "minor")])
            assert mail.sent == 1           # the info alert is below the minimum severity
            assert len(inbox) == 1
            msg = inbox[0]
            assert msg["Subject"] == "[EcoGrid warning] stale at D1"
            assert msg["To"] == "ops@example.org"
            assert "no telemetry from D1" in msg.get_payload()
    finally:
        reg.close()


def test_email_failure_is_logged_not_raised(tmp_path):
    from adapters.broker import free_port

    mail = EmailNotifier("127.0.0.1", free_port(), "a@b", ["c@d"], timeout_s=2.0)
    assert mail.send_alert({"id": 1, "severity": "critical", "kind": "k", "message": "m"}) is False
    assert mail.failed == 1
