"""The one telemetry store: raw snapshots for days, 5-minute and hourly rollups for years.

Written by the live service (embedded ingest) and by ``ecogrid ingest`` workers
(:class:`HistoryWriter`), read by history, analytics, reports, forecasts and the
planner (:class:`History`). :mod:`adapters.history.store` owns the layout and
the reads, :mod:`adapters.history.writer` the appends,
:mod:`adapters.history.claims` keeps two writers of one site apart,
:mod:`adapters.history.rollup` is the arithmetic, :mod:`adapters.history.legacy`
converts the old layouts (``ecogrid history convert``).
"""

from adapters.history.claims import ClaimError
from adapters.history.legacy import LegacyHistoryError, check_layout, convert_legacy
from adapters.history.store import History, read_latest, root_path, store_name
from adapters.history.types import HistoryRead, Latest, UnknownDeviceError
from adapters.history.writer import HistoryWriter
from adapters.storage import HistoryError

__all__ = ["ClaimError", "History", "HistoryError", "HistoryRead", "HistoryWriter", "Latest",
           "LegacyHistoryError", "UnknownDeviceError", "check_layout", "convert_legacy", "read_latest",
           "root_path", "store_name"]
