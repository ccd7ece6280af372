"""A notification as each kind of receiver takes it: the body and headers of one request. `json` is moorage's
own document, for a receiver of one's own; the others are what each service's incoming webhook accepts, so that
an operator points one at the service's URL and nothing in between: Slack's incoming webhook (`{"text"}`, mrkdwn),
Discord's execute-webhook (`{"content"}`), ntfy's publish by POST to a topic (the message as the body, the rest in
headers) and Gotify's create-message (`{"title", "message", "priority"}`)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from moorage.alerts.notifications import Notification
from moorage.timestamps import rfc3339

DISCORD_MAX = 2000  # characters of a message's content; Discord refuses a longer one
NTFY_MAX = 4096  # bytes of a message; ntfy makes a longer body an attachment instead
NTFY_PRIORITY = {"critical": "5", "warning": "4", "info": "3"}  # urgent, high, default
GOTIFY_PRIORITY = {"critical": 8, "warning": 5, "info": 2}
_JSON = "application/json"

Rendered = tuple[bytes, dict[str, str]]


def _document(notification: Notification) -> dict[str, Any]:
    """The `json` format's object: the notification with its moments in RFC 3339, as the API writes them."""
    moments = {"started_at": rfc3339(notification.started_at), "at": rfc3339(notification.at)}
    return {**asdict(notification), **moments}


def _title(notification: Notification) -> str:
    return f"[{notification.status.upper()}] {notification.alert} ({notification.severity})"


def _detail_lines(notification: Notification) -> list[str]:
    return [
        f"{key}: {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"
        for key, value in notification.details.items()
    ]


def _message(notification: Notification) -> str:
    """The summary and the details, for the services that show a title apart (ntfy, Gotify)."""
    return "\n".join([notification.summary, *_detail_lines(notification)])


def _text(notification: Notification) -> str:
    """The title, the summary and the details, for the services that show one text (Slack, Discord)."""
    return "\n".join([f"{_title(notification)}: {notification.summary}", *_detail_lines(notification)])


def _json_body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _slack_escaped(text: str) -> str:
    """Slack reads &, < and > as its control characters (<!channel> pings everyone, <url|label> is a link): a log
    line quoted in an alert must show as it is. Slack decodes these three entities and no others."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cut_utf8(text: str, limit: int) -> str:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - len("…".encode())].decode(errors="ignore") + "…"  # a character cut in two is dropped


def _header(value: str) -> str:
    """One line, and ASCII: a value that is not goes as an RFC 2047 encoded word, which ntfy decodes (many HTTP
    stacks mangle UTF-8 in a header)."""
    value = " ".join(value.split())
    if value.isascii():
        return value
    return f"=?UTF-8?B?{base64.b64encode(value.encode()).decode()}?="


def _as_json(notification: Notification) -> Rendered:
    return _json_body(_document(notification)), {"Content-Type": _JSON}


def _as_slack(notification: Notification) -> Rendered:
    return _json_body({"text": _slack_escaped(_text(notification))}), {"Content-Type": _JSON}


def _as_discord(notification: Notification) -> Rendered:
    # No mention is parsed: an @everyone in a quoted log line must not ping a whole server.
    body = {"content": _cut(_text(notification), DISCORD_MAX), "allowed_mentions": {"parse": []}}
    return _json_body(body), {"Content-Type": _JSON}


def _as_ntfy(notification: Notification) -> Rendered:
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Title": _header(_title(notification)),
        "Priority": NTFY_PRIORITY.get(notification.severity, "3"),
        "Tags": _header(f"{notification.severity},{notification.status}"),
    }
    return _cut_utf8(_message(notification), NTFY_MAX).encode(), headers


def _as_gotify(notification: Notification) -> Rendered:
    body = {
        "title": _title(notification),
        "message": _message(notification) or _title(notification),  # Gotify refuses an empty message
        "priority": GOTIFY_PRIORITY.get(notification.severity, 5),
    }
    return _json_body(body), {"Content-Type": _JSON}


_RENDERERS: dict[str, Callable[[Notification], Rendered]] = {
    "json": _as_json,
    "slack": _as_slack,
    "discord": _as_discord,
    "ntfy": _as_ntfy,
    "gotify": _as_gotify,
}
FORMATS = tuple(_RENDERERS)


def render(notification: Notification, fmt: str) -> Rendered:
    """The body and the headers (Content-Type among them) of the request that tells a receiver of `fmt`."""
    try:
        renderer = _RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown webhook format {fmt!r} (one of {', '.join(FORMATS)})") from None
    return renderer(notification)
