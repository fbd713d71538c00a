"""MQTT adapter: telemetry in, setpoints out (protocol: docs/protocol.md).

* :mod:`.topics` — every topic and topic filter, their parsing, the broker ACL lines;
* :mod:`.decode` — pure parsing of telemetry and status messages (no broker);
* :mod:`.ingest` — :class:`~.ingest.TelemetryIngest`, batches into
  :class:`twin.telemetry.Telemetry`;
* :mod:`.commands` — :class:`~.commands.CommandPublisher`, versioned setpoints
  and their acknowledgements, and :class:`~.commands.MemoryCommandStore`;
* :mod:`.types` — the boundary types: reject reasons, command states and records,
  the :class:`~.types.CommandStore` protocol;
* :mod:`.client` — the thin paho layer (URLs, client set-up).
"""
