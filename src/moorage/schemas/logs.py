"""Log and event query schemas: points in time as `docker logs --since` takes them, tail, streams, format."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, missing, post_load, validate, validates_schema

from moorage.engine.frames import CutLogLine, LogLine
from moorage.logs.fields import LEVELS, LineFields
from moorage.logs.grep import LineGrep, PatternError
from moorage.schemas.common import StrictSchema
from moorage.schemas.containers import CONTAINER_NAME, LABEL_FILTER
from moorage.schemas.fields import DURATION, JsonSchema, anchored, duration_ns, matches, valid_text
from moorage.timestamps import compact

FORMATS = ("json", "text", "ndjson", "sse")
MERGED_FORMATS = ("ndjson", "sse", "text")
PARSED = ("json", "level")
MAX_PATTERN = 4096
_UNIX = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
_LAST_SECOND = Decimal(2**63 - 1) / 10**9
_MOMENT_RULE = 'RFC 3339 with a zone, Unix seconds, or a duration back from now such as "10m"'


class Moment(fields.Field[Decimal]):
    """A point in time, loaded as Unix seconds: RFC 3339 (with a zone), Unix seconds, or "10m" ago."""

    json_schema: ClassVar[JsonSchema] = {
        "type": "string",
        "description": _MOMENT_RULE,
        "anyOf": [
            {"format": "date-time"},
            {"pattern": anchored(_UNIX.pattern)},
            {"pattern": anchored(DURATION.pattern), "maxLength": 64},
        ],
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        seconds = self._seconds(valid_text(value).strip())
        # The engine counts in int64 nanoseconds: a moment past 2262 (or before 1970) is its 500, not an answer.
        if not 0 <= seconds < _LAST_SECOND:
            raise ValidationError("must be from 1970 to 2262")
        return seconds

    @staticmethod
    def _seconds(text: str) -> Decimal:
        if _UNIX.fullmatch(text):
            return Decimal(text)
        if (ago := duration_ns(text)) is not None:
            return (Decimal(time.time_ns()) - ago) / 10**9
        try:
            moment = datetime.fromisoformat(text) if len(text) <= 64 else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ValidationError(_MOMENT_RULE)
        return Decimal(str(moment.timestamp()))


class Tail(fields.Field[str]):
    """The last N lines, or "all"; kept as the engine's text."""

    json_schema: ClassVar[JsonSchema] = {
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": 10**9 - 1},
            {"type": "string", "pattern": "^(?:[aA][lL][lL]|[0-9]{1,9})$"},
        ]
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = valid_text(value).strip().lower()
        if text == "all" or (text.isascii() and text.isdigit() and len(text) <= 9):
            return str(int(text)) if text != "all" else text
        raise ValidationError('a number of lines (0 or more) or "all"')


class TimeWindow(StrictSchema):
    """`since` and `until`, in the forms `docker logs --since` takes."""

    since = Moment()
    until = Moment()

    @validates_schema
    def ordered(self, data: dict[str, Any], **_: Any) -> None:
        if "since" in data and "until" in data and data["until"] < data["since"]:
            raise ValidationError("must not be before since", "until")


def _pattern(value: str) -> None:
    try:
        LineGrep.of(value, ignore_case=False, invert=False, stamped=False, tty=False)
    except PatternError as err:
        raise ValidationError(f"not a regular expression RE2 takes: {err}") from None


class LineQuery(TimeWindow):
    """Which lines of a log, alike for one container's and a merged one's."""

    tail = Tail(load_default="all")
    timestamps = fields.Boolean(load_default=False)
    stdout = fields.Boolean(load_default=True)
    stderr = fields.Boolean(load_default=True)
    follow = fields.Boolean(load_default=False)
    grep = fields.String(
        validate=[validate.Length(min=1, max=MAX_PATTERN), _pattern],
        metadata={"description": "only the lines this regular expression (RE2's syntax) finds a match in"},
    )
    grep_ignore_case = fields.Boolean(load_default=False)
    grep_invert = fields.Boolean(load_default=False, metadata={"description": "the lines grep does not match"})
    parse = fields.List(
        fields.String(validate=validate.OneOf(PARSED)),
        metadata={"description": "fields read from each line: json (its object, or null), level (or null)"},
    )

    @validates_schema
    def chosen(self, data: dict[str, Any], **_: Any) -> None:
        if not (data["stdout"] or data["stderr"]):
            raise ValidationError("at least one of stdout and stderr must be true", "stdout")
        for flag in ("grep_ignore_case", "grep_invert"):
            if data[flag] and "grep" not in data:
                raise ValidationError("only with grep", flag)
        if data.get("parse") and data.get("format", self.default_format(data)) == "text":
            raise ValidationError("text lines have no fields: use json, ndjson or sse", "parse")

    @staticmethod
    def default_format(data: dict[str, Any]) -> str:
        raise NotImplementedError

    @post_load
    def with_format(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {"format": self.default_format(data), **data}


class LogQuery(LineQuery):
    format = fields.String(validate=validate.OneOf(FORMATS))
    count = fields.Boolean(load_default=False, metadata={"description": "only how many lines: data = {count}"})
    download = fields.Boolean(
        load_default=False,
        metadata={"description": "a file (text, or ndjson): Content-Disposition, gzip when accepted; never followed"},
    )

    @validates_schema
    def coherent(self, data: dict[str, Any], **_: Any) -> None:
        fmt = data.get("format") or self.default_format(data)
        if data["follow"] and fmt == "json":
            raise ValidationError("a followed log is a stream: use text, ndjson or sse", "format")
        if data["count"] and (data["follow"] or fmt != "json"):
            raise ValidationError("a count is a JSON answer of a log that ends: no follow, no format", "count")
        if data["download"] and (data["follow"] or fmt not in ("text", "ndjson")):
            raise ValidationError("a download is a text or ndjson file of a log that ends: no follow", "download")

    @staticmethod
    def default_format(data: dict[str, Any]) -> str:
        """Text for a followed log and a download (`docker logs -f`, a .log file), else the JSON page."""
        return "text" if data["follow"] or data["download"] else "json"


class Download(fields.Field[str | bool]):
    """A merged log's download: `true`, one file of every line ("file"); `zip`, a file per container; else none
    (False, which the document gives as the default)."""

    json_schema: ClassVar[JsonSchema] = {"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["zip"]}]}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | bool:
        if isinstance(value, str) and value.strip().lower() == "zip":
            return "zip"
        try:
            wanted = fields.Boolean().deserialize(value)
        except ValidationError:
            raise ValidationError('true, false or "zip"') from None
        return "file" if wanted else False


class MergedLogQuery(LineQuery):
    """Many containers' logs as one: those named, and those with the labels (stopped ones too, and, followed,
    those that start later). since, until, tail and grep apply to each."""

    container = fields.List(
        fields.String(validate=matches(CONTAINER_NAME, "not a container id or name")),
        metadata={"description": "a name or id (repeatable)"},
    )
    label = fields.List(
        fields.String(validate=LABEL_FILTER),
        metadata={"description": "KEY or KEY=VALUE (repeatable): the containers with every one"},
    )
    format = fields.String(validate=validate.OneOf(MERGED_FORMATS))
    download = Download(
        load_default=False,
        metadata={"description": "true: one file of every line; zip: a zip of a file per container; never followed"},
    )

    @validates_schema
    def coherent(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("container") and not data.get("label"):
            raise ValidationError("name containers, or a label that chooses them", "container")
        fmt = data.get("format") or self.default_format(data)
        if data["download"] and (data["follow"] or fmt not in ("text", "ndjson")):
            raise ValidationError("a download is a text or ndjson file of logs that end: no follow", "download")

    @staticmethod
    def default_format(data: dict[str, Any]) -> str:
        """Text for a download (a .log file), else NDJSON: a merged log's lines each name their container."""
        return "text" if data["download"] else "ndjson"


class EventQuery(TimeWindow):
    """`docker events --filter`'s filters, and whether healthchecks' exec events are left out (they are, unless
    asked for: a healthcheck every few seconds floods the stream)."""

    type = fields.List(fields.String(validate=validate.OneOf(("container", "image", "volume", "network"))))
    container = fields.List(
        fields.String(validate=matches(CONTAINER_NAME, "not a container id or name")),
        metadata={"description": "a name or id; only that container's events"},
    )
    label = fields.List(fields.String(validate=LABEL_FILTER), metadata={"description": "KEY or KEY=VALUE"})
    action = fields.List(
        fields.String(validate=matches(r"[a-z_]{1,64}", "an action, such as die or health_status")),
        metadata={"description": "as events name it, without what follows a colon: health_status, exec_start"},
    )
    exclude_exec = fields.Boolean(
        metadata={"description": "leave out exec_* events; default true, false when `action` names one"}
    )
    format = fields.String(
        validate=validate.OneOf(("ndjson", "sse")),
        metadata={"description": "ndjson, or sse (the default when Accept names text/event-stream)"},
    )

    @post_load
    def exec_default(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "exclude_exec" not in data:
            data["exclude_exec"] = not any(action.startswith("exec_") for action in data.get("action", ()))
        data.setdefault("format", "ndjson")
        return data


class CutMark(fields.Boolean):
    """`cut: true` on a line that was cut, and no field on the others: most lines are short. Every line of
    every page and NDJSON stream is dumped, and a fourth field read the generic way (an attribute lookup that
    fails on most lines) made that about 30% slower; one type check costs about half as much."""

    def serialize(self, attr: str, obj: Any, accessor: Any = None, **kwargs: Any) -> Any:
        return True if type(obj) is CutLogLine else missing


class LogLineSchema(Schema):
    stream = fields.String()
    timestamp = fields.String(allow_none=True)
    line = fields.String()
    cut = CutMark(metadata={"description": "present, and true, on a line cut at [logs] max_line_bytes"})
    json = fields.Dict(allow_none=True, metadata={"description": "parse=json: the line's object; null if not one"})
    level = fields.String(
        allow_none=True,
        validate=validate.OneOf(LEVELS),
        metadata={"description": "parse=level: the level the line names in a common form, or null"},
    )


class MemberSchema(Schema):
    id = fields.String()
    name = fields.String()


class MergedLineSchema(LogLineSchema):
    container = fields.Nested(MemberSchema, metadata={"description": "the container whose line it is"})


NOTICES = ("joined", "container_stopped", "container_removed", "done", "failed", "engine_gone")


class NoticeSchema(Schema):
    """What a merged log says of one of its containers: it joined (its log is open), or it left, and why."""

    container = fields.Nested(MemberSchema)
    notice = fields.String(validate=validate.OneOf(NOTICES))
    exit_code = fields.Integer(allow_none=True, metadata={"description": "container_stopped: its exit code"})
    message = fields.String(metadata={"description": "failed, engine_gone: what the engine said"})


_LINE = LogLineSchema()


def line_items(lines: Iterable[LogLine], parsed: LineFields) -> list[dict[str, Any]]:
    """The lines as items, with the fields asked of them."""
    items = _LINE.dump(lines, many=True)
    return [parsed.added(item) for item in items] if parsed else items


def download_window(query: dict[str, Any], created: datetime | None) -> str:
    """`<since>-<until>` of a download, in compact UTC: the query's, or, where it leaves them open, from `created`
    (the container's creation, the earliest's of many) to now."""
    since = query["since"] if "since" in query else created or time.time()
    return f"{compact(since)}-{compact(query.get('until', time.time()))}"


def file_suffix(query: dict[str, Any]) -> str:
    return "ndjson" if query["format"] == "ndjson" else "log"


def line_grep(query: dict[str, Any], *, stamped: bool, tty: bool) -> LineGrep:
    """A loaded query's grep, for a container's lines (a TTY's end in a carriage return), stamped or not."""
    return LineGrep.of(
        query["grep"], ignore_case=query["grep_ignore_case"], invert=query["grep_invert"], stamped=stamped, tty=tty
    )


def line_fields(query: dict[str, Any]) -> LineFields:
    """The fields a loaded query asks of each line."""
    asked = query.get("parse", ())
    return LineFields(json="json" in asked, level="level" in asked)


def engine_params(query: dict[str, Any], stamped: bool) -> dict[str, str]:
    """A loaded log query as the engine's log call takes it."""
    params = {
        "stdout": str(query["stdout"]).lower(),
        "stderr": str(query["stderr"]).lower(),
        "follow": str(query["follow"]).lower(),
        "timestamps": str(stamped).lower(),
        "tail": query["tail"],
    }
    params.update(engine_window(query))
    return params


def engine_window(query: dict[str, Any]) -> dict[str, str]:
    """A loaded query's since/until as the engine takes them: Unix seconds with nanoseconds."""
    return {key: f"{query[key]:.9f}" for key in ("since", "until") if key in query}
