"""Webhook notifications: signed, in each service's format, and delivered from the persisted outbox to a real
receiver (an aiohttp app on a port of its own that checks every signature) exactly as a user would see them:
once each, in order per webhook, through a receiver's outage and a restart of moorage, expired and logged (without
a secret) when too old, and a slow receiver holding back nobody else's."""

from __future__ import annotations

import asyncio
import contextlib
import email.header
import hashlib
import hmac
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from moorage.alerts.delivery import Deliverer
from moorage.alerts.formats import FORMATS, render
from moorage.alerts.notifications import Notification
from moorage.alerts.outbox import FILE, Outbox
from moorage.alerts.signing import DELIVERY, EVENT, SIGNATURE, TIMESTAMP, sign, signed_headers, verify
from moorage.settings import Webhook
from moorage.timestamps import rfc3339

SECRET = b"webhook-secret-0f3a9c"
TOKEN = "query-token-77d2e1"  # in each webhook's URL, as Gotify's ?token= is: never in a log

Server = Callable[..., Any]  # pytest-aiohttp's aiohttp_server


@dataclass
class Received:
    webhook: str
    body: bytes
    headers: dict[str, str]
    signed: bool  # the signature checked out, with a timestamp within the tolerance
    status: int | None = None  # what the receiver answered; None while it is still answering (or never did)

    def notification_id(self) -> str:
        return str(json.loads(self.body)["id"])


@dataclass
class Receiver:
    """Takes a POST to /{webhook}, records it and answers `status[webhook]` (200 by default) after
    `delay[webhook]` seconds."""

    got: list[Received] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{webhook}", self._take)
        return app

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        signed = verify(SECRET, headers.get(TIMESTAMP), body, headers.get(SIGNATURE), time.time())
        received = Received(request.match_info["webhook"], body, headers, signed)
        self.got.append(received)
        await asyncio.sleep(self.delay.get(received.webhook, 0))
        received.status = self.status.get(received.webhook, 200)
        return web.Response(status=received.status)

    def delivered(self, webhook: str) -> list[Received]:
        return [r for r in self.got if r.webhook == webhook and r.status == 200]

    def requests(self, webhook: str) -> list[Received]:
        return [r for r in self.got if r.webhook == webhook]


async def serve(aiohttp_server: Server, receiver: Receiver, port: int | None = None) -> TestServer:
    # A TestServer cancels a handler when its client goes: a send cut short by a stopping deliverer ends there.
    server: TestServer = await aiohttp_server(receiver.app(), port=port)
    return server


def hook(server: TestServer, name: str, **options: Any) -> Webhook:
    url = str(server.make_url(f"/{name}").with_query(token=TOKEN))
    settings: dict[str, Any] = {"secret": SECRET, "timeout": 5.0, "backoff_initial": 0.05, "backoff_max": 0.2}
    return Webhook(name=name, url=url, **(settings | options))


def note(alert: str = "cpu-high", **fields: Any) -> Notification:
    values: dict[str, Any] = {
        "alert": alert,
        "status": "firing",
        "severity": "warning",
        "summary": "web-1 CPU at 97% (threshold 90%)",
        "details": {"container": "web-1", "value": 97.0, "threshold": 90},
        "started_at": time.time() - 60,
    }
    return Notification(**(values | fields))


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.02)


def test_a_signature_holds_for_its_body_and_a_recent_timestamp_only() -> None:
    body, now = b'{"id":"1"}', time.time()
    timestamp = int(now)
    signature = sign(SECRET, timestamp, body)
    # The receiver's recipe: HMAC-SHA256 over "<timestamp>." and the body, in hex.
    assert signature == "sha256=" + hmac.new(SECRET, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert verify(SECRET, str(timestamp), body, signature, now)
    assert verify(SECRET, str(timestamp), body, signature, now + 299)
    assert not verify(SECRET, str(timestamp), body + b" ", signature, now)  # tampered body
    assert not verify(b"another secret", str(timestamp), body, signature, now)
    assert not verify(SECRET, str(timestamp), body, signature, now + 301)  # replayed later
    assert not verify(SECRET, str(timestamp), body, signature, now - 301)  # stamped ahead
    assert not verify(SECRET, str(timestamp + 1), body, signature, now)  # a timestamp it was not signed at
    for bad_timestamp in (None, "", "+" + str(timestamp), f"{timestamp}.0", "١٢٣"):
        assert not verify(SECRET, bad_timestamp, body, signature, now)
    for bad_signature in (None, "", signature.upper(), "sha256=é"):
        assert not verify(SECRET, str(timestamp), body, bad_signature, now)


def test_without_a_secret_a_request_carries_no_signature() -> None:
    headers = signed_headers(None, "d1", "firing", b"{}", 1_700_000_000.5)
    assert headers == {TIMESTAMP: "1700000000", DELIVERY: "d1", EVENT: "firing"}
    signed = signed_headers(SECRET, "d1", "firing", b"{}", 1_700_000_000.5)
    assert signed == headers | {SIGNATURE: sign(SECRET, 1_700_000_000, b"{}")}


def test_each_format_is_what_its_service_takes() -> None:
    notification = note(summary="logged <!channel> & <@here>", details={"container": "web-1", "line": "@everyone"})
    body, headers = render(notification, "json")
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(body) == {
        "id": notification.id,
        "alert": "cpu-high",
        "status": "firing",
        "severity": "warning",
        "summary": "logged <!channel> & <@here>",
        "details": {"container": "web-1", "line": "@everyone"},
        "started_at": rfc3339(notification.started_at),
        "at": rfc3339(notification.at),
    }
    assert json.loads(body)["at"].endswith("Z")

    # Slack: a mrkdwn text whose control characters (&, <, >) are escaped, so no <!channel> pings anyone.
    body, headers = render(notification, "slack")
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(body) == {
        "text": "[FIRING] cpu-high (warning): logged &lt;!channel&gt; &amp; &lt;@here&gt;\n"
        "container: web-1\nline: @everyone"
    }

    # Discord: at most 2000 characters of content, and no mention parsed.
    long = note(details={"line": "x" * 5000})
    discord = json.loads(render(long, "discord")[0])
    assert len(discord["content"]) == 2000 and discord["content"].startswith("[FIRING] cpu-high (warning): web-1")
    assert discord["allowed_mentions"] == {"parse": []}

    # ntfy: the message as the body (4096 bytes at most: ntfy makes a longer one an attachment), the rest in headers.
    body, headers = render(notification, "ntfy")
    assert headers == {
        "Content-Type": "text/plain; charset=utf-8",
        "Title": "[FIRING] cpu-high (warning)",
        "Priority": "4",
        "Tags": "warning,firing",
    }
    assert body.decode() == "logged <!channel> & <@here>\ncontainer: web-1\nline: @everyone"
    cut = render(note(details={"line": "é" * 5000}), "ntfy")[0]
    assert len(cut) <= 4096 and cut.decode().endswith("é…")  # cut between two characters, never inside one
    assert [render(note(severity=s), "ntfy")[1]["Priority"] for s in ("critical", "warning", "info")] == ["5", "4", "3"]
    # A title beyond ASCII goes as an RFC 2047 word, which ntfy decodes.
    title = render(note(alert="température"), "ntfy")[1]["Title"]
    assert title.isascii()
    assert str(email.header.make_header(email.header.decode_header(title))) == "[FIRING] température (warning)"

    # Gotify: title, message and a priority of its 0-10 scale.
    body, headers = render(notification, "gotify")
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(body) == {
        "title": "[FIRING] cpu-high (warning)",
        "message": "logged <!channel> & <@here>\ncontainer: web-1\nline: @everyone",
        "priority": 5,
    }
    gotify = [json.loads(render(note(severity=s), "gotify")[0]) for s in ("critical", "warning", "info")]
    assert [message["priority"] for message in gotify] == [8, 5, 2]

    with pytest.raises(ValueError, match="unknown webhook format"):
        render(notification, "email")


def test_a_notification_survives_the_queue_as_it_was() -> None:
    notification = note(status="resolved", details={"container": "web-1", "values": [1, 2.5], "nested": {"a": None}})
    assert Notification.from_json(notification.to_json()) == notification
    with pytest.raises(ValueError, match="status"):
        note(status="pending")


async def test_a_notification_reaches_a_webhook_of_each_format_once_and_signed(
    tmp_path: Path, aiohttp_server: Server
) -> None:
    receiver = Receiver()
    server = await serve(aiohttp_server, receiver)
    notification = note()
    async with Deliverer(tmp_path, [hook(server, fmt, format=fmt) for fmt in FORMATS]) as deliverer:
        before = int(time.time())
        ids = dict(zip(FORMATS, await deliverer.notify(notification, FORMATS), strict=True))
        await eventually(lambda: deliverer.delivered.total() == len(FORMATS))
        listed = await deliverer.outbox.call(Outbox.recent, 10)
        await asyncio.sleep(0.2)  # and nothing more comes
        assert len(receiver.got) == len(FORMATS)
        assert deliverer.delivered == dict.fromkeys(FORMATS, 1) and not deliverer.failed
    for got in receiver.got:
        assert got.signed and got.status == 200
        assert got.headers[DELIVERY] == ids[got.webhook] and got.headers[EVENT] == "firing"
        assert before <= int(got.headers[TIMESTAMP]) <= time.time()
        body, headers = render(notification, got.webhook)
        assert got.body == body and headers.items() <= got.headers.items()  # ntfy's Title, Priority and Tags too
    assert {(d.webhook, d.state, d.attempts, d.last_status, d.last_error) for d in listed} == {
        (fmt, "delivered", 1, 200, None) for fmt in FORMATS
    }


async def test_a_receiver_that_fails_for_a_while_then_gets_each_notification_once_in_order(
    tmp_path: Path, aiohttp_server: Server
) -> None:
    receiver = Receiver(status={"a": 500, "b": 503})
    server = await serve(aiohttp_server, receiver)
    notes = [note(summary=f"number {n}") for n in range(3)]
    order = [n.id for n in notes]
    async with Deliverer(tmp_path, [hook(server, "a"), hook(server, "b")]) as deliverer:
        ids = [await deliverer.notify(n, ["a", "b"]) for n in notes]
        await eventually(lambda: len(receiver.requests("a")) >= 3 and len(receiver.requests("b")) >= 3)
        [head] = await deliverer.outbox.call(Outbox.heads, "a")
        assert (head.id, head.state, head.last_status) == (ids[0][0], "pending", 500) and head.attempts >= 2
        assert head.last_error == "HTTP 500 Internal Server Error"
        [newest] = await deliverer.outbox.call(Outbox.recent, 1, webhook="a", state="pending")
        assert newest.attempts == 0  # it waits behind the oldest: a webhook's go out in order
        receiver.status.clear()  # the receiver is fixed
        await eventually(lambda: deliverer.delivered == {"a": 3, "b": 3})
        listed = await deliverer.outbox.call(Outbox.recent, 10, webhook="b")
        assert deliverer.failed["a"] >= 2
    for webhook in ("a", "b"):
        assert [r.notification_id() for r in receiver.delivered(webhook)] == order
        # Every attempt, failed ones too, was in order and signed, and a retry carried the same delivery id.
        attempts = [order.index(r.notification_id()) for r in receiver.requests(webhook)]
        assert attempts == sorted(attempts) and all(r.signed for r in receiver.requests(webhook))
        column = ("a", "b").index(webhook)
        for notification_id, delivery_ids in zip(order, ids, strict=True):
            seen = {r.headers[DELIVERY] for r in receiver.requests(webhook) if r.notification_id() == notification_id}
            assert seen == {delivery_ids[column]}
    oldest = listed[-1]
    assert (oldest.state, oldest.last_status, oldest.last_error) == ("delivered", 200, "HTTP 503 Service Unavailable")
    assert oldest.attempts == len([r for r in receiver.requests("b") if r.notification_id() == order[0]]) > 1


async def test_a_receiver_not_listening_gets_them_when_it_comes_up_on_its_port(
    tmp_path: Path, aiohttp_server: Server
) -> None:
    receiver = Receiver()
    server = await serve(aiohttp_server, receiver)
    webhook, port = hook(server, "later"), server.port
    await server.close()
    async with Deliverer(tmp_path, [webhook]) as deliverer:
        first, second = note(), note(status="resolved")
        await deliverer.notify(first, ["later"])
        await deliverer.notify(second, ["later"])
        await eventually(lambda: deliverer.failed["later"] >= 2)
        [head] = await deliverer.outbox.call(Outbox.heads, "later")
        assert head.attempts >= 1 and head.last_status is None and head.last_error is not None
        assert head.last_error.startswith("ClientConnectorError") and TOKEN not in head.last_error
        await serve(aiohttp_server, receiver, port=port)
        await eventually(lambda: deliverer.delivered["later"] == 2)
        assert await deliverer.outbox.call(Outbox.pending_count) == 0
    assert [r.notification_id() for r in receiver.got] == [first.id, second.id]
    assert [r.headers[EVENT] for r in receiver.got] == ["firing", "resolved"]


async def test_a_delivery_past_its_max_age_expires_logged_and_counted_without_secrets(
    tmp_path: Path, aiohttp_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="moorage.alerts")
    receiver = Receiver(status={"down": 500})
    server = await serve(aiohttp_server, receiver)
    async with Deliverer(tmp_path, [hook(server, "down", max_age=0.5)]) as deliverer:
        await deliverer.notify(note(alert="disk-full"), ["down"])
        await eventually(lambda: deliverer.expired["down"] == 1)
        [expired] = await deliverer.outbox.call(Outbox.recent, 5)
        requests = len(receiver.got)
        await asyncio.sleep(0.3)
        assert len(receiver.got) == requests  # no attempt after its expiry
        assert deliverer.failed["down"] == requests == expired.attempts >= 2
    assert (expired.state, expired.last_status) == ("expired", 500)
    assert expired.last_error == "HTTP 500 Internal Server Error"
    assert expired.finished_at is not None and expired.finished_at >= expired.created_at + 0.5
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.name == "moorage.alerts.delivery"
    message = warning.getMessage()
    assert "down" in message and "disk-full" in message and f"{requests} attempts" in message and "HTTP 500" in message
    assert SECRET.decode() not in caplog.text and TOKEN not in caplog.text and "token=" not in caplog.text


async def test_a_delivery_left_older_than_its_max_age_expires_unsent(tmp_path: Path, aiohttp_server: Server) -> None:
    receiver = Receiver()
    server = await serve(aiohttp_server, receiver)
    outbox = Outbox(tmp_path)  # as a run that stopped long ago left it
    try:
        outbox.enqueue(note(), ["old"], time.time() - 120)
    finally:
        outbox.close()
    async with Deliverer(tmp_path, [hook(server, "old", max_age=60)]) as deliverer:
        await eventually(lambda: deliverer.expired["old"] == 1)
        [expired] = await deliverer.outbox.call(Outbox.recent, 5)
    assert receiver.got == []
    assert (expired.state, expired.attempts, expired.last_error) == ("expired", 0, "never attempted")


async def test_a_stopped_deliverer_leaves_its_deliveries_to_the_next_on_the_same_state(
    tmp_path: Path, aiohttp_server: Server
) -> None:
    receiver = Receiver(delay={"w": 60})  # answers nothing for a minute: the first send is in flight at the stop
    server = await serve(aiohttp_server, receiver)
    first, second = note(summary="first"), note(summary="second")
    async with Deliverer(tmp_path, [hook(server, "w")]) as deliverer:
        [first_id] = await deliverer.notify(first, ["w"])
        await deliverer.notify(second, ["w"])
        await eventually(lambda: len(receiver.got) == 1)
        stopped = time.monotonic()
    assert time.monotonic() - stopped < 2  # the stop does not wait for the receiver
    outbox = Outbox(tmp_path)
    try:
        assert outbox.pending_count() == 2
        assert [(d.id, d.attempts) for d in outbox.heads()] == [(first_id, 0)]  # the cut attempt did not count
    finally:
        outbox.close()
    receiver.delay.clear()
    async with Deliverer(tmp_path, [hook(server, "w")]) as deliverer:
        await eventually(lambda: deliverer.delivered["w"] == 2)
    assert [r.notification_id() for r in receiver.delivered("w")] == [first.id, second.id]
    # The repeat of the first carries the id the cut one did: the receiver may drop it.
    assert receiver.got[0].status is None and receiver.got[0].headers[DELIVERY] == first_id
    assert receiver.delivered("w")[0].headers[DELIVERY] == first_id


async def test_a_slow_webhook_does_not_hold_another_back(tmp_path: Path, aiohttp_server: Server) -> None:
    receiver = Receiver(delay={"slow": 30})
    server = await serve(aiohttp_server, receiver)
    async with Deliverer(tmp_path, [hook(server, "slow", timeout=60), hook(server, "fast")]) as deliverer:
        started = time.monotonic()
        for n in range(3):
            await deliverer.notify(note(summary=f"number {n}"), ["slow", "fast"])
        await eventually(lambda: deliverer.delivered["fast"] == 3, within=2)
        assert time.monotonic() - started < 2
        assert len(receiver.requests("slow")) == 1 and receiver.delivered("slow") == []  # one in flight, no more
        assert await deliverer.outbox.call(Outbox.pending_count) == 3


async def test_a_delivery_for_a_webhook_not_configured_waits_for_it(tmp_path: Path, aiohttp_server: Server) -> None:
    receiver = Receiver()
    server = await serve(aiohttp_server, receiver)
    async with Deliverer(tmp_path, [hook(server, "a")]) as deliverer:
        await deliverer.notify(note(), ["gone"])  # a reload removed it meanwhile
        await asyncio.sleep(0.3)
        assert receiver.got == [] and await deliverer.outbox.call(Outbox.pending_count) == 1
        deliverer.set_webhooks([hook(server, "a"), hook(server, "gone")])  # and the next brings it back
        await eventually(lambda: deliverer.delivered["gone"] == 1)
        assert deliverer.expired == {}


def test_the_outbox_is_private_committed_at_once_and_pruned(tmp_path: Path) -> None:
    state = tmp_path / "state"
    outbox = Outbox(state)
    try:
        now = time.time()
        ids = [outbox.enqueue(note(summary=str(n)), ["a"], now + n)[0] for n in range(4)]
        # Committed: another connection (another process, after a kill) sees them.
        with contextlib.closing(sqlite3.connect(state / FILE)) as other:
            assert other.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'").fetchone() == (4,)
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert (state.stat().st_mode & 0o777, (state / FILE).stat().st_mode & 0o777) == (0o700, 0o600)
        assert all(p.stat().st_mode & 0o077 == 0 for p in state.iterdir())  # the -wal and -shm too
        outbox.delivered(ids[0], 200, now - 8 * 86400)  # finished longer ago than kept
        outbox.delivered(ids[1], 204, now)
        outbox.expired(ids[2], "HTTP 410 Gone", now)
        assert outbox.prune(now, keep=1) == 2  # the old one, and the newest finished but one
        assert [(d.id, d.state) for d in outbox.recent(10)] == [(ids[3], "pending"), (ids[2], "expired")]
        assert [d.id for d in outbox.recent(10, state="expired")] == [ids[2]]
        assert outbox.recent(10, webhook="b") == [] and outbox.pending_count() == 1
    finally:
        outbox.close()
