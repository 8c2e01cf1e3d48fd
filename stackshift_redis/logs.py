"""Structured run logs: every line written for a run (the worker's and `ctx.logger`'s)
carries `run_id`, `job`, `attempt` and `queue` as record attributes (`extra`), so JSON
handlers get them as fields; `TextFormatter` (the CLI default) appends them to the line,
`JsonFormatter` (`stackshift-worker --log-format json`) writes one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

RUN_FIELDS = ("run_id", "job", "attempt", "queue")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# attributes every LogRecord has: not `extra` fields
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def run_extra(run_id: str, job: str, attempt: int, queue: str) -> dict[str, Any]:
    """The `extra` of a log line about one attempt of a run."""
    return {"run_id": run_id, "job": job, "attempt": attempt, "queue": queue}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's `extra` fields (attributes a plain record does not have)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, then the run's fields when the record has them:
    `... run 01H.. completed [run_id=01H.. job=checkout attempt=1 queue=orders]`."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The formatted line, with the run's fields appended when it has them."""
        line = super().formatMessage(record)
        if getattr(record, "run_id", None) is None:
            return line
        fields = " ".join(f"{k}={getattr(record, k)}" for k in RUN_FIELDS if hasattr(record, k))
        return f"{line} [{fields}]"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the `extra` fields (run_id,
    job, attempt, queue for run lines) and, with an exception, its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            out.setdefault(key, value)
        if record.exc_info and record.exc_info[0] is not None:
            out["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at `level` in `fmt` ("text" or "json"); the stackshift-worker setup."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
