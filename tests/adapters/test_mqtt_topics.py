"""Topics of the protocol: build -> parse round trips, filters, broker ACL lines, and no
topic spelled outside adapters/mqtt/topics.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from adapters.mqtt import topics as t
from adapters.mqtt.topics import CommandTopic, Topic

ROOT = Path(__file__).resolve().parents[2]
TOPIC_TEXT = re.compile(r"(^|\s)(sites/|\$share/)")  # an MQTT topic, not a URL path "/sites/"
# A fleet id: no '/', '+', '#' (twin.fleet refuses them), not empty.
ids = st.text(st.characters(blacklist_characters="/+#\0", blacklist_categories=("Cs",)),
              min_size=1, max_size=20)
metrics = st.text(st.characters(blacklist_characters="/+#\0", blacklist_categories=("Cs",)),
                  min_size=1, max_size=t.MAX_METRIC_NAME)


@given(site=ids, device=ids, metric=metrics)
def test_every_topic_parses_back_to_what_built_it(site, device, metric):
    assert t.parse_topic(t.site_telemetry_topic(site)) == Topic(t.SITE, site, None, None)
    assert t.parse_topic(t.site_status_topic(site)) == Topic(t.SITE_STATUS, site, None, None)
    assert t.parse_topic(t.device_telemetry_topic(site, device)) == Topic(
        t.DEVICE, site, device, None)
    assert t.parse_topic(t.device_status_topic(site, device)) == Topic(
        t.DEVICE_STATUS, site, device, None)
    assert t.parse_topic(t.metric_topic(site, device, metric)) == Topic(
        t.METRIC, site, device, metric)
    setpoint, ack = t.setpoint_topic(site, device), t.ack_topic(site, device)
    assert t.parse_command_topic(setpoint) == CommandTopic(site, device, t.SETPOINT)
    assert t.parse_command_topic(ack) == CommandTopic(site, device, t.ACK)
    # Each kind parses with its own parser only.
    assert t.parse_topic(setpoint) is None and t.parse_topic(ack) is None
    assert t.parse_command_topic(t.device_telemetry_topic(site, device)) is None


def test_the_topic_strings_are_the_protocols():
    assert t.site_telemetry_topic("S1") == "sites/S1/telemetry"
    assert t.site_status_topic("S1") == "sites/S1/status"
    assert t.device_telemetry_topic("S1", "D") == "sites/S1/devices/D/telemetry"
    assert t.metric_topic("S1", "D", "p_kw") == "sites/S1/devices/D/telemetry/p_kw"
    assert t.device_status_topic("S1", "D") == "sites/S1/devices/D/status"
    assert t.setpoint_topic("S1", "D") == "sites/S1/devices/D/commands/setpoint"
    assert t.ack_topic("S1", "D") == "sites/S1/devices/D/commands/ack"
    assert t.events_topic("alerts") == "ecogrid/events/alerts"
    assert t.EVENTS_FILTER == "ecogrid/events/#"


def test_topics_that_are_not_the_protocols_parse_to_none():
    for bad in ("site/A/telemetry", "sites//telemetry", "sites/A/devices/D/telemetry/",
                "sites/A/devices/D/commands/setpoint", "sites/A/devices/D/telemetry/p/x",
                "sites/A/devices/D/telemetry/" + "m" * 65, "sites/A", "sites/A/devices//status",
                "sites/A/other"):
        assert t.parse_topic(bad) is None, bad
    for bad in ("sites/A/devices/D/commands/reboot", "sites/A/devices/D/commands",
                "sites//devices/D/commands/ack", "sites/A/devices//commands/ack",
                "sites/A/device/D/commands/ack", "site/A/devices/D/commands/ack",
                "sites/A/devices/D/commands/ack/x", "sites/A/devices/D/telemetry/ack"):
        assert t.parse_command_topic(bad) is None, bad
    for bad in ("ecogrid/events", "ecogrid/events/", "ecogrid/events/a/b", "sites/A/events/x"):
        assert t.events_channel(bad) is None, bad
    assert t.events_channel(t.events_topic("commands")) == "commands"


@given(site=ids, other=ids, device=ids, metric=metrics)
def test_filters_take_their_sites_topics_and_no_others(site, other, device, metric):
    inbound = [t.site_telemetry_topic(site), t.site_status_topic(site),
               t.device_telemetry_topic(site, device), t.device_status_topic(site, device),
               t.metric_topic(site, device, metric)]
    commands = [t.setpoint_topic(site, device), t.ack_topic(site, device)]

    def taken(filters, topic):
        return any(topic_matches_sub(f, topic) for f in filters)

    for topic in inbound:  # each inbound topic: by exactly one filter of its site
        assert sum(topic_matches_sub(f, topic) for f in t.site_filters(site)) == 1, topic
        assert taken(t.site_filters(), topic) and taken(t.telemetry_filters(), topic)
        assert taken(t.telemetry_filters([other, site]), topic)
        assert taken(t.telemetry_filters([other]), topic) is (other == site)
    for topic in commands:
        assert not taken(t.site_filters(site), topic), topic
    assert topic_matches_sub(t.setpoint_filter(site), commands[0])
    assert topic_matches_sub(t.SETPOINT_FILTER, commands[0])
    assert topic_matches_sub(t.setpoint_filter(other), commands[0]) is (other == site)
    assert not topic_matches_sub(t.setpoint_filter(site), commands[1])
    assert topic_matches_sub(t.ack_filter(site), commands[1])
    assert topic_matches_sub(t.ACK_FILTER, commands[1])
    assert not topic_matches_sub(t.ACK_FILTER, commands[0])


def test_the_subscription_lists():
    assert t.telemetry_filters() == [
        "sites/+/telemetry", "sites/+/status", "sites/+/devices/+/telemetry",
        "sites/+/devices/+/telemetry/+", "sites/+/devices/+/status"]
    assert t.telemetry_filters(["A", "B"]) == t.site_filters("A") + t.site_filters("B")
    assert t.telemetry_filters([]) == []
    assert t.telemetry_filters(shared_group="ingest") == [
        f"$share/ingest/{f}" for f in t.telemetry_filters()]
    with pytest.raises(ValueError, match="not both"):
        t.telemetry_filters(["A"], shared_group="ingest")
    for bad, why in (("", "non-empty"), ("a/b", "'/'"), ("a+", "'\\+'"), ("#", "'#'"),
                     (None, "non-empty")):
        with pytest.raises(ValueError, match=why):
            t.shared_filter(bad, "sites/+/telemetry")
    for bad in ("", "a/b", "+", "#"):
        with pytest.raises(ValueError, match="event channel"):
            t.events_topic(bad)


def test_acl_lines_allow_a_gateway_its_own_site_only():
    lines = t.gateway_acl_lines("S1")
    writes = [ln.split()[-1] for ln in lines if ln.startswith("topic write ")]
    reads = [ln.split()[-1] for ln in lines if ln.startswith("topic read ")]
    assert len(writes) + len(reads) == len(lines)
    assert reads == [t.setpoint_filter("S1")]
    for topic in (t.site_telemetry_topic("S1"), t.site_status_topic("S1"),
                  t.device_telemetry_topic("S1", "D"), t.metric_topic("S1", "D", "v"),
                  t.device_status_topic("S1", "D"), t.ack_topic("S1", "D")):
        assert any(topic_matches_sub(w, topic) for w in writes), topic
    for topic in (t.site_telemetry_topic("S2"), t.ack_topic("S2", "D"),
                  t.setpoint_topic("S1", "D")):  # another site's, or a setpoint: no write
        assert not any(topic_matches_sub(w, topic) for w in writes), topic


def test_acl_lines_of_the_service():
    lines = t.service_acl_lines()
    access = {ln.split()[-1]: ln.split()[1] for ln in lines}
    assert all(ln.startswith("topic ") and len(ln.split()) == 3 for ln in lines)
    assert access == {**{f: "read" for f in t.site_filters()}, t.ACK_FILTER: "read",
                      t.SETPOINT_FILTER: "readwrite", t.EVENTS_FILTER: "readwrite"}


def _string_constants(tree: ast.AST) -> list[ast.Constant]:
    """String constants that are not docstrings (f-strings: their literal parts)."""
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docs.add(id(body[0].value))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and id(n) not in docs]


def test_no_module_but_topics_spells_a_topic():
    """``sites/...`` topics and ``$share/`` filters are built in adapters/mqtt/topics.py
    only (api/replica.py's ``ecogrid/events`` strings are still its own)."""
    found = []
    for package in ("twin", "optimizer", "scenarios", "adapters", "api", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "adapters" / "mqtt" / "topics.py":
                continue
            tree = ast.parse(path.read_text(), str(path))
            for node in _string_constants(tree):
                if TOPIC_TEXT.search(node.value):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert found == []
