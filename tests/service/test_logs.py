"""Log lines are JSON with the request id of the request being served."""

from __future__ import annotations

import json
import logging
import sys

from service.logs import JsonFormatter, request_id_var


def record(message: str, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("service.test", logging.INFO, __file__, 1, message, None, None)
    entry.__dict__.update(extra)
    return entry


def test_json_line_with_request_id_and_extras() -> None:
    token = request_id_var.set("rid-7")
    try:
        line = JsonFormatter().format(record("hello %s", status=200))
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "hello %s" and entry["level"] == "INFO" and entry["logger"] == "service.test"
    assert entry["request_id"] == "rid-7" and entry["status"] == 200 and "time" in entry
    assert "\n" not in line


def test_exceptions_stay_inside_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        entry = record("failed")
        entry.exc_info = sys.exc_info()
    line = JsonFormatter().format(entry)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exception"]
    assert "request_id" not in json.loads(line)
