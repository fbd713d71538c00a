"""Every MQTT topic and topic filter of the protocol (docs/protocol.md), built and parsed.

Topics under one site (``siteId``, ``deviceId`` are the fleet's ids, which
hold no ``/``, ``+`` or ``#``; :class:`twin.fleet.Fleet` refuses others):

=============================================================  =====================
``sites/{site}/telemetry``                                     :func:`site_telemetry_topic`
``sites/{site}/devices/{device}/telemetry``                    :func:`device_telemetry_topic`
``sites/{site}/devices/{device}/telemetry/{metric}``           :func:`metric_topic`
``sites/{site}/status``                                        :func:`site_status_topic`
``sites/{site}/devices/{device}/status``                       :func:`device_status_topic`
``sites/{site}/devices/{device}/commands/setpoint``            :func:`setpoint_topic`
``sites/{site}/devices/{device}/commands/ack``                 :func:`ack_topic`
=============================================================  =====================

Filters: :func:`site_filters` (what the ingest reads under one site or all),
:func:`telemetry_filters` (the ingest's whole list: all sites, a list of
sites, or the ``$share/{group}/`` form), :func:`setpoint_filter` (a gateway's
own setpoints, or all), :func:`ack_filter`. Parsing: :func:`parse_topic`
(telemetry and status) and :func:`parse_command_topic` (setpoints and acks).
Broker ACL lines: :func:`gateway_acl_lines`, :func:`service_acl_lines`.

The leader's relayed WebSocket events (not part of the gateway protocol) go to
``ecogrid/events/{channel}`` (:func:`events_topic`, :data:`EVENTS_FILTER`,
:func:`events_channel`).

Builders do not check the ids (they run on hot paths; the fleet checked them);
functions taking names from users (:func:`validate_group`,
:func:`events_topic`) refuse bad ones with ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

MAX_METRIC_NAME = 64  # longest metric name (a topic level or a payload key)

# Topic kinds of parse_topic.
METRIC, DEVICE, SITE, SITE_STATUS, DEVICE_STATUS = (
    "metric", "device", "site", "site_status", "device_status")
# Commands of parse_command_topic.
SETPOINT, ACK = "setpoint", "ack"
_COMMANDS = frozenset((SETPOINT, ACK))
_tuple_new = tuple.__new__

# Filters under one site, relative to ``sites/{site}/``: telemetry of three shapes,
# gateway and device status (what the ingest reads, and what a gateway may write).
SITE_FILTERS: tuple[str, ...] = (
    "telemetry", "status", "devices/+/telemetry", "devices/+/telemetry/+", "devices/+/status")
_WILDCARDS = frozenset("/+#\0")


class Topic(NamedTuple):
    """A telemetry or status topic: ``kind`` is one of ``METRIC``, ``DEVICE``,
    ``SITE``, ``SITE_STATUS``, ``DEVICE_STATUS``; ``device_id`` and ``metric``
    are None where the kind has none."""

    kind: str
    site_id: str
    device_id: str | None
    metric: str | None


class CommandTopic(NamedTuple):
    """A command topic: ``command`` is ``SETPOINT`` or ``ACK``."""

    site_id: str
    device_id: str
    command: str


# -- topics ----------------------------------------------------------------------
def site_telemetry_topic(site_id: str) -> str:
    """A whole site's telemetry: ``sites/{site}/telemetry``."""
    return f"sites/{site_id}/telemetry"


def device_telemetry_topic(site_id: str, device_id: str) -> str:
    """Several metrics of one device: ``sites/{site}/devices/{device}/telemetry``."""
    return f"sites/{site_id}/devices/{device_id}/telemetry"


def metric_topic(site_id: str, device_id: str, metric: str) -> str:
    """One metric of one device: ``sites/{site}/devices/{device}/telemetry/{metric}``."""
    return f"sites/{site_id}/devices/{device_id}/telemetry/{metric}"


def site_status_topic(site_id: str) -> str:
    """The gateway's status and Last Will: ``sites/{site}/status``."""
    return f"sites/{site_id}/status"


def device_status_topic(site_id: str, device_id: str) -> str:
    """A device's status: ``sites/{site}/devices/{device}/status``."""
    return f"sites/{site_id}/devices/{device_id}/status"


def setpoint_topic(site_id: str, device_id: str) -> str:
    """A device's setpoint (retained): ``sites/{site}/devices/{device}/commands/setpoint``."""
    return f"sites/{site_id}/devices/{device_id}/commands/{SETPOINT}"


def ack_topic(site_id: str, device_id: str) -> str:
    """A device's acknowledgements: ``sites/{site}/devices/{device}/commands/ack``."""
    return f"sites/{site_id}/devices/{device_id}/commands/{ACK}"


# -- filters ---------------------------------------------------------------------
def site_filters(site_id: str = "+") -> list[str]:
    """The telemetry and status filters of one site (``"+"``: of every site)."""
    return [f"sites/{site_id}/{f}" for f in SITE_FILTERS]


def setpoint_filter(site_id: str = "+") -> str:
    """The setpoints of one site's devices: what its gateway subscribes to (``"+"``: all)."""
    return f"sites/{site_id}/devices/+/commands/{SETPOINT}"


def ack_filter(site_id: str = "+") -> str:
    """The acknowledgements of one site's devices (``"+"``: of all; the publisher's)."""
    return f"sites/{site_id}/devices/+/commands/{ACK}"


SETPOINT_FILTER = setpoint_filter()
ACK_FILTER = ack_filter()


def validate_group(group: str) -> str:
    """Check a shared-subscription group name and return it.

    MQTT 5 (and Mosquitto for 3.1.1 clients) takes ``$share/{group}/{filter}``;
    the group is one non-empty topic level without wildcards. Raises
    ``ValueError`` naming what is wrong.
    """
    if not isinstance(group, str) or not group:
        raise ValueError(f"shared subscription group must be a non-empty name, got {group!r}")
    bad = sorted(set(group) & _WILDCARDS)
    if bad:
        raise ValueError(f"shared subscription group {group!r} must not contain "
                         f"{', '.join(repr(c) for c in bad)} (no '/', '+', '#')")
    return group


def shared_filter(group: str, topic_filter: str) -> str:
    """``topic_filter`` as a member of shared-subscription ``group``: ``$share/{group}/...``."""
    return f"$share/{validate_group(group)}/{topic_filter}"


def telemetry_filters(site_ids: Iterable[str] | None = None, *,
                      shared_group: str | None = None) -> list[str]:
    """The telemetry and status filters an ingest subscribes to.

    Parameters
    ----------
    site_ids : iterable of str, optional
        Only these sites (a partition of the fleet); every site (``+``) when omitted.
    shared_group : str, optional
        Every site's filters as a member of this shared-subscription group
        (``$share/{group}/sites/+/...``); excludes ``site_ids``.
    """
    if shared_group is not None:
        if site_ids is not None:
            raise ValueError("give site_ids or shared_group, not both: a shared "
                             "subscription takes every site")
        return [shared_filter(shared_group, f) for f in site_filters()]
    if site_ids is None:
        return site_filters()
    return [f for s in site_ids for f in site_filters(s)]


# -- parsing ---------------------------------------------------------------------
def parse_topic(topic: str) -> Topic | None:
    """Classify a telemetry or status topic; None when it is neither."""
    p = topic.split("/")
    n = len(p)
    if n < 3 or p[0] != "sites" or not p[1]:
        return None
    if n == 3:
        if p[2] == "telemetry":
            return Topic(SITE, p[1], None, None)
        if p[2] == "status":
            return Topic(SITE_STATUS, p[1], None, None)
        return None
    if p[2] != "devices" or not p[3] or n < 5:
        return None
    if n == 5:
        if p[4] == "telemetry":
            return Topic(DEVICE, p[1], p[3], None)
        if p[4] == "status":
            return Topic(DEVICE_STATUS, p[1], p[3], None)
        return None
    if n == 6 and p[4] == "telemetry" and p[5] and len(p[5]) <= MAX_METRIC_NAME:
        return Topic(METRIC, p[1], p[3], p[5])
    return None


def parse_command_topic(topic: str) -> CommandTopic | None:
    """Split ``sites/{site}/devices/{device}/commands/{setpoint|ack}``; None otherwise."""
    p = topic.split("/")  # on the publisher's network thread for every ack: kept lean
    if (len(p) == 6 and p[4] == "commands" and p[2] == "devices" and p[0] == "sites"
            and p[1] and p[3] and p[5] in _COMMANDS):
        return _tuple_new(CommandTopic, (p[1], p[3], p[5]))  # as CommandTopic._make, faster
    return None


# -- the leader's relayed events -------------------------------------------------
EVENTS_ROOT = "ecogrid/events"
EVENTS_FILTER = f"{EVENTS_ROOT}/#"


def events_topic(channel: str) -> str:
    """The topic of one WebSocket channel's relayed events: ``ecogrid/events/{channel}``."""
    if not isinstance(channel, str) or not channel or set(channel) & _WILDCARDS:
        raise ValueError(f"event channel {channel!r} must be a non-empty name without "
                         "'/', '+' or '#'")
    return f"{EVENTS_ROOT}/{channel}"


def events_channel(topic: str) -> str | None:
    """The channel of an ``ecogrid/events/{channel}`` topic; None for any other topic."""
    root, sep, channel = topic.rpartition("/")
    if root != EVENTS_ROOT or not sep or not channel:
        return None
    return channel


# -- broker ACL ------------------------------------------------------------------
def gateway_acl_lines(site_id: str) -> list[str]:
    """Mosquitto ACL ``topic`` lines of one site's gateway: write its site's telemetry,
    status and acknowledgements, read its devices' setpoints."""
    return [*(f"topic write {f}" for f in site_filters(site_id)),
            f"topic write {ack_filter(site_id)}",
            f"topic read {setpoint_filter(site_id)}"]


def service_acl_lines() -> list[str]:
    """Mosquitto ACL ``topic`` lines of the EcoGrid service account: read every site's
    telemetry, status and acknowledgements, write (and read back) every setpoint, and
    relay the leader's events to the API replicas."""
    return [*(f"topic read {f}" for f in site_filters()),
            f"topic read {ACK_FILTER}",
            f"topic readwrite {SETPOINT_FILTER}",
            f"topic readwrite {EVENTS_FILTER}"]
