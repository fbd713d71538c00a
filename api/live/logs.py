"""Structured logs: one JSON object per line, with the ids of what is being handled.

The live service logs through the standard :mod:`logging` module; this module
only decides how records look. :class:`JsonFormatter` writes each record as a
single JSON line with ``time`` (UTC, ISO 8601), ``level``, ``logger`` and
``message``, plus ``request_id``, ``plan_id`` and ``command_id`` when the code
that logs runs inside :func:`log_context` (the ids live in
:mod:`contextvars`, so they follow asyncio tasks and
``asyncio.to_thread``, and never leak between concurrent requests).

    configure_logging("INFO")                      # once, at start (ECOGRID_LOG_LEVEL)
    with log_context(request_id="3f2a", plan_id="9c1d"):
        log.info("plan approved")
    # {"time": "2026-06-21T12:00:00.123Z", "level": "INFO", "logger": "api.live.service",
    #  "message": "plan approved", "request_id": "3f2a", "plan_id": "9c1d"}

Nothing here reads settings or the environment: the caller passes the level.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

# The ids a record may carry, in the order they are written.
CONTEXT_FIELDS: tuple[str, ...] = ("request_id", "plan_id", "command_id")

_CONTEXT: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"ecogrid_log_{name}", default=None) for name in CONTEXT_FIELDS
}

# Attributes every LogRecord has; anything else passed with ``extra=`` is written too.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}

LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def current_context() -> dict[str, str]:
    """The ids set by the enclosing :func:`log_context` blocks (only those that are set)."""
    out = {}
    for name, var in _CONTEXT.items():
        value = var.get()
        if value is not None:
            out[name] = value
    return out


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Attach ids to every record logged inside the block.

    Parameters
    ----------
    **ids : str
        Any of ``request_id``, ``plan_id``, ``command_id``; ``None`` leaves
        the outer value in place.

    Raises
    ------
    ValueError
        For a name that is not one of :data:`CONTEXT_FIELDS`.
    """
    unknown = sorted(set(ids) - set(CONTEXT_FIELDS))
    if unknown:
        raise ValueError(f"log_context: unknown id(s) {', '.join(unknown)}; "
                         f"use {', '.join(CONTEXT_FIELDS)}")
    tokens = [(_CONTEXT[name], _CONTEXT[name].set(str(value)))
              for name, value in ids.items() if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _iso_utc(t_s: float) -> str:
    """``2026-06-21T12:00:00.123Z`` for Unix time ``t_s`` [s]."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_s))
    return f"{whole}.{int((t_s % 1.0) * 1000):03d}Z"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object on one line.

    Keys: ``time`` (UTC ISO 8601 with milliseconds), ``level``, ``logger``,
    ``message``; then ``request_id``, ``plan_id``, ``command_id`` when set
    (from :func:`log_context`, or passed with ``extra=``); then any other
    ``extra=`` fields; ``exc_info`` and ``stack_info`` as text when present.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(current_context())
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                out[key] = _jsonable(value)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, separators=(", ", ": "))


class TextFormatter(logging.Formatter):
    """Human-readable lines, with the ids in brackets when set (``json=False``)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = current_context()
        if ids:
            line += " [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]"
        return line


def parse_level(level: str | int) -> int:
    """The :mod:`logging` level for ``"INFO"``, ``"debug"``, ``20``...

    Raises
    ------
    ValueError
        Naming the level when it is not one of :data:`LEVELS`.
    """
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    name = str(level).strip().upper()
    if name not in LEVELS:
        raise ValueError(f"{level!r} is not a logging level (use one of {', '.join(LEVELS)})")
    return int(logging.getLevelName(name))


def configure_logging(level: str | int = "INFO", json: bool = True,
                      stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) as JSON lines or text.

    Replaces the handlers of the root logger (calling it again re-configures,
    it never duplicates lines) and sets the root level; uvicorn's loggers are
    routed through the same handler so that access and error lines are JSON
    too (start uvicorn with ``log_config=None``, or it installs its own
    handlers again).

    Parameters
    ----------
    level : str or int
        ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL`` (any case).
    json : bool
        One JSON object per line (:class:`JsonFormatter`); ``False`` for text.
    stream : file, optional
        Where the lines go; ``sys.stderr`` when omitted.

    Returns
    -------
    logging.Handler
        The installed handler.
    """
    lvl = parse_level(level)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        for old in list(lg.handlers):
            lg.removeHandler(old)
        lg.propagate = True
    return handler


__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "TextFormatter",
           "configure_logging", "current_context", "log_context", "parse_level"]
