"""api.live.logs: one JSON object per line, ids from contextvars, level by setting;
api.http.middleware.RequestIdMiddleware tags a request's lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re

import httpx
import pytest
from fastapi import FastAPI

from api.http.middleware import RequestIdMiddleware
from api.live.logs import (
    CONTEXT_FIELDS,
    JsonFormatter,
    configure_logging,
    current_context,
    log_context,
    parse_level,
)
from api.settings import Settings


@pytest.fixture
def capture():
    """configure_logging into a buffer; the root logger's handlers are restored after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buf = io.StringIO()
    yield buf
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved_handlers:
        root.addHandler(h)
    root.setLevel(saved_level)


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_base_fields(capture):
    configure_logging("INFO", stream=capture)
    logging.getLogger("api.live.service").info("plan %s approved\nby %s", "p1", "ops")
    logging.getLogger("api.live.service").debug("not shown at INFO")
    out = capture.getvalue().splitlines()
    assert len(out) == 1  # the newline in the message is escaped, not a second line
    rec = json.loads(out[0])
    assert rec["level"] == "INFO"
    assert rec["logger"] == "api.live.service"
    assert rec["message"] == "plan p1 approved\nby ops"
    assert rec["time"].endswith("Z") and rec["time"][10] == "T"
    assert not set(CONTEXT_FIELDS) & set(rec)  # no ids outside a context


def test_ids_come_from_the_context_and_nest(capture):
    configure_logging("DEBUG", stream=capture)
    log = logging.getLogger("api.live.approvals")
    with log_context(request_id="r-1", plan_id="p-9"):
        log.info("outer")
        with log_context(command_id="c-3", plan_id="p-10"):
            log.info("inner")
        log.info("outer again")
    log.info("outside")
    recs = lines(capture)
    assert [r.get("request_id") for r in recs] == ["r-1", "r-1", "r-1", None]
    assert [r.get("plan_id") for r in recs] == ["p-9", "p-10", "p-9", None]
    assert [r.get("command_id") for r in recs] == [None, "c-3", None, None]
    assert current_context() == {}


def test_ids_do_not_leak_between_concurrent_tasks_and_follow_to_thread(capture):
    configure_logging("INFO", stream=capture)
    log = logging.getLogger("api.http.routes")

    async def handle(request_id: str) -> None:
        with log_context(request_id=request_id):
            await asyncio.sleep(0)
            log.info("start")
            await asyncio.to_thread(log.info, "in a thread")
            await asyncio.sleep(0)
            log.info("end")

    async def main() -> None:
        await asyncio.gather(*(handle(f"req-{i}") for i in range(5)))

    asyncio.run(main())
    recs = lines(capture)
    assert len(recs) == 15
    for i in range(5):
        mine = [r for r in recs if r["request_id"] == f"req-{i}"]
        assert sorted(r["message"] for r in mine) == ["end", "in a thread", "start"]


def test_extra_fields_and_exceptions(capture):
    configure_logging("INFO", stream=capture)
    log = logging.getLogger("adapters.mqtt")
    log.warning("rejected", extra={"reason": "malformed", "count": 3, "command_id": "c-7"})
    try:
        raise ValueError("bad payload")
    except ValueError:
        log.exception("decode failed")
    warn, err = lines(capture)
    assert warn["reason"] == "malformed" and warn["count"] == 3 and warn["command_id"] == "c-7"
    assert err["level"] == "ERROR"
    assert "ValueError: bad payload" in err["exc_info"]


def test_non_json_values_are_stringified():
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    rec.path = __import__("pathlib").Path("/tmp/a")
    rec.value = __import__("numpy").float64(1.5)
    out = json.loads(JsonFormatter().format(rec))
    assert out["path"] == "/tmp/a" and out["value"] == 1.5


def test_reconfiguring_replaces_the_handler_and_text_mode(capture):
    configure_logging("INFO", stream=io.StringIO())
    configure_logging("WARNING", json=False, stream=capture)
    assert len(logging.getLogger().handlers) == 1
    log = logging.getLogger("api")
    log.info("hidden")
    with log_context(plan_id="p-1"):
        log.warning("shown")
    text = capture.getvalue()
    assert "hidden" not in text
    assert "WARNING api: shown [plan_id=p-1]" in text


def test_level_by_setting(capture, monkeypatch):
    monkeypatch.setenv("ECOGRID_LOG_LEVEL", "debug")
    level = Settings().log_level
    configure_logging(level, stream=capture)
    assert logging.getLogger().level == logging.DEBUG
    assert parse_level("warning") == logging.WARNING
    assert parse_level(10) == 10


def test_bad_level_and_unknown_id_name_what_was_wrong():
    with pytest.raises(ValueError, match="'LOUD' is not a logging level"):
        parse_level("LOUD")
    with pytest.raises(ValueError, match=r"unknown id.*user_id"):
        with log_context(user_id="x"):
            pass


def test_request_id_middleware_tags_the_request_s_log_lines(capture):
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware)

    @app.get("/plans/{plan_id}/approve")
    def approve(plan_id: str) -> dict:
        with log_context(plan_id=plan_id):
            logging.getLogger("api.http.routes").info("approving")
        return {"ok": True}

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return [await http.get("/plans/p-5/approve", headers={"X-Request-ID": "abc-123"}),
                    await http.get("/plans/p-6/approve"),
                    await http.get("/plans/p-7/approve",
                                   headers={"X-Request-ID": "x\"} {\"a\": 1"})]

    configure_logging("INFO", stream=capture)
    given, fresh, hostile = asyncio.run(calls())
    assert given.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{16}", fresh.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{16}", hostile.headers["x-request-id"])
    mine = [r for r in lines(capture) if r["message"] == "approving"]
    assert [(r["request_id"], r["plan_id"]) for r in mine] == [
        ("abc-123", "p-5"), (fresh.headers["x-request-id"], "p-6"),
        (hostile.headers["x-request-id"], "p-7")]
