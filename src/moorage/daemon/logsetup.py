"""The daemon's log: one line per record whatever a client put in it, as text or JSON, with the request's id."""

from __future__ import annotations

import json
import logging
import os
import sys

from aiohttp.http_exceptions import HttpProcessingError

from moorage.daemon.logfilters import limit_per_request_lines
from moorage.timestamps import rfc3339
from moorage.web.requestctx import current_request_id

# What could end a log line, or rewrite it on a terminal: every control character, and Unicode's line and
# paragraph separators, each written as an escape.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES |= {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}
# The prefix of a traceback's lines after the first: no line of a record begins where a record begins.
_CONTINUED = "  | "


def one_line(text: str) -> str:
    """`text` as part of one log line, whatever a client put in it: control characters (newlines above all)
    and text that is not valid Unicode escaped, so that it cannot end the line or begin a forged one."""
    if text.isprintable():
        return text
    return text.translate(_ESCAPES).encode("utf-8", "backslashreplace").decode("utf-8")


class TextFormatter(logging.Formatter):
    """`[stamp] LEVEL logger: message [req=ID]`: the message on one line, a traceback's lines indented under it."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if request_id := getattr(record, "request_id", None):
            line += f" [req={request_id}]"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for details in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if details:
                line += "".join(f"\n{_CONTINUED}{one_line(part)}" for part in details.splitlines())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for collectors that parse fields rather than read text. json.dumps escapes
    control characters and lone surrogates itself: a message cannot break its line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": rfc3339(record.created, milliseconds=True),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := getattr(record, "request_id", None):
            line["request_id"] = request_id
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line)


def with_request_id(record: logging.LogRecord) -> bool:
    """A handler's filter: a record logged while a request is handled names the request's id."""
    record.request_id = current_request_id()
    return True


def malformed_request(record: logging.LogRecord) -> bool:
    """aiohttp logs a request it cannot parse (a header over the limits, say) at ERROR with a traceback whose
    message quotes 100 bytes of the offending header, which may be a key: one line naming the error instead."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = f"{record.getMessage()}: {type(exc).__name__}, answered {exc.code}", ()
        record.exc_info = record.exc_text = None
    return True


def setup_logging(log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(with_request_id)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        # journald stamps each line itself; elsewhere the time is worth having.
        stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
        handler.setFormatter(TextFormatter(f"{stamp}%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("aiohttp.server").addFilter(malformed_request)
    limit_per_request_lines()  # after malformed_request, which makes aiohttp's traceback one line
