"""MQTT adapter: telemetry in, setpoints out (protocol: docs/protocol.md).

* :mod:`.decode` — pure parsing of telemetry and status messages (no broker);
* :mod:`.ingest` — :class:`~.ingest.TelemetryIngest`, batches into
  :class:`twin.telemetry.Telemetry`;
* :mod:`.commands` — :class:`~.commands.CommandPublisher`, versioned setpoints
  and their acknowledgements;
* :mod:`.store` — command stores (memory, SQLite); :mod:`.types` — the
  boundary types and the :class:`~.types.CommandStore` protocol;
* :mod:`.client` — the thin paho layer (URLs, client set-up).
"""
