"""The live runtime: the parts of the running service (fleet, ingest, approvals, commands,
planning, ledger, hub, ...) and :mod:`api.live.runtime`, which builds, starts and closes them."""
