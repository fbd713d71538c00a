"""Prometheus metrics of the live service, on a registry owned by the app (no globals)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The service's counters, gauges and histograms."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.ingest_messages = Counter("ecogrid_ingest_messages", "Telemetry samples ingested",
                                       registry=r)
        self.rejected_messages = Counter("ecogrid_rejected_messages",
                                         "Telemetry messages rejected, by reason", ["reason"],
                                         registry=r)
        self.optimizer_seconds = Histogram("ecogrid_optimizer_seconds",
                                           "Wall time of a plan computation [s]", registry=r,
                                           buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
        self.plans = Counter("ecogrid_plans", "Plans by outcome", ["status"], registry=r)
        self.commands = Gauge("ecogrid_commands", "Commands by state", ["status"], registry=r)
        self.commands_sent = Counter("ecogrid_commands_sent", "Setpoints published", registry=r)
        self.ws_clients = Gauge("ecogrid_ws_clients", "Connected WebSocket clients", registry=r)
        self.ws_dropped = Counter("ecogrid_ws_dropped_messages",
                                  "Messages dropped for slow WebSocket clients", registry=r)
        self.ws_disconnected = Counter("ecogrid_ws_slow_clients_dropped",
                                       "WebSocket clients disconnected for being slow",
                                       registry=r)
        self.http_latency = Histogram("ecogrid_http_request_seconds",
                                      "HTTP request latency [s]", ["method", "route", "status"],
                                      registry=r,
                                      buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                               1, 2.5))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "Metrics"]
