"""Notifications to the webhooks, from the outbox: at least once, each webhook's in the order they were made, one
in flight per webhook (so that a receiver that is down or slow holds back its own only), retried with backoff
until they expire.

Any answer but a 2xx is a failure, and is retried until the notification's `max_age`, a 4xx too: a receiver
misconfigured for an hour (a wrong token, a proxy's 403) must not lose the alerts of that hour, and it is fixed
from the other side without moorage knowing. A 3xx is not followed (the signed body would go wherever it
points). A delivery stopped half-way (moorage stopping) stays pending and is sent again after the restart: a
receiver drops a repeat by its X-Moorage-Delivery id."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from moorage.alerts.formats import render
from moorage.alerts.notifications import Notification
from moorage.alerts.outbox import AsyncOutbox, Delivery, Outbox
from moorage.alerts.signing import signed_headers
from moorage.background import again_and_again, cancel_and_wait, running
from moorage.settings import Webhook

UNCONFIGURED_MAX_AGE = 86400.0  # seconds a delivery whose webhook a reload removed waits for it to come back
MIN_RETRY = 0.05  # seconds at least between two attempts: full jitter may draw 0
ERROR_PAUSE = 5.0  # seconds a webhook's deliveries (or all) wait after an unexpected error (the disk is full)
PRUNE_EVERY = 3600.0  # seconds between two prunings of finished deliveries
USER_AGENT = "moorage"
_LOGGER = logging.getLogger(__name__)


def backoff(webhook: Webhook, attempts: int) -> float:
    """Seconds until the next attempt after the one that followed `attempts` others failed: exponential, with full
    jitter so that a receiver coming back is not met by every retry at once."""
    ceiling = min(webhook.backoff_max, webhook.backoff_initial * 2 ** min(attempts, 64))
    return max(MIN_RETRY, random.uniform(0, ceiling))


def described(err: Exception, url: str) -> str:
    """`err` for a log line and the API, without what the URL holds of secrets: the query (Gotify's ?token=), a
    password, and the path (Slack's and Discord's end in their token). aiohttp puts the URL in some errors."""
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    parts = urlsplit(url)
    for secret in (parts.query, parts.password, parts.path if len(parts.path) > 1 else ""):
        if secret:
            text = text.replace(secret, "…").replace(unquote(secret), "…")
    return text


class Deliverer:
    """The worker that sends the outbox's deliveries, for as long as it is entered (`async with`): it owns the
    outbox, one HTTP session, and the webhooks (`set_webhooks` on a reload). Deliveries a former run left pending
    go out at the start. Counters per webhook, for the metrics: `delivered`, `failed` (attempts), `expired`."""

    def __init__(self, state_dir: Path, webhooks: Iterable[Webhook]) -> None:
        self.outbox = AsyncOutbox(state_dir)
        self.delivered: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.expired: Counter[str] = Counter()
        self._webhooks = {webhook.name: webhook for webhook in webhooks}
        self._session: aiohttp.ClientSession | None = None
        self._lanes: dict[str, asyncio.Task[None]] = {}  # the webhooks being sent to, each by one task
        self._wake = asyncio.Event()
        self._next_prune = 0.0
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Deliverer:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.outbox)
            self._session = await stack.enter_async_context(
                aiohttp.ClientSession(
                    headers={"User-Agent": USER_AGENT},
                    cookie_jar=aiohttp.DummyCookieJar(),  # no receiver's cookie
                )
            )
            worker = again_and_again(self._run, "webhook deliveries", (), ERROR_PAUSE)
            await stack.enter_async_context(running(worker, "webhook deliveries"))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._stack.aclose()  # the worker and its sends cancelled, then the session closed, then the outbox

    def set_webhooks(self, webhooks: Iterable[Webhook]) -> None:
        self._webhooks = {webhook.name: webhook for webhook in webhooks}
        self._wake.set()

    async def notify(self, notification: Notification, webhook_names: Iterable[str]) -> list[str]:
        """Queue `notification` for each webhook, and the ids of its deliveries: on the disk when this returns."""
        ids = await self.outbox.call(Outbox.enqueue, notification, list(webhook_names), time.time())
        self._wake.set()
        return ids

    def _expires_at(self, delivery: Delivery) -> float:
        webhook = self._webhooks.get(delivery.webhook)
        return delivery.created_at + (webhook.max_age if webhook is not None else UNCONFIGURED_MAX_AGE)

    def _due_at(self, delivery: Delivery) -> float:
        """When the delivery needs the worker: its next attempt, or its expiry; only its expiry while its webhook
        is not configured."""
        if delivery.webhook not in self._webhooks:
            return self._expires_at(delivery)
        return min(delivery.next_attempt_at, self._expires_at(delivery))

    async def _run(self) -> None:
        try:
            while True:
                self._wake.clear()
                pause = await self._dispatch()
                # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancellation that comes as the event is set
                # (a lane ending at the stop), and the worker would go on for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._wake.wait()
        finally:
            for lane in list(self._lanes.values()):
                await cancel_and_wait(lane)

    async def _dispatch(self) -> float:
        """A lane for each webhook whose oldest delivery is due; the seconds until the next is due (or a pruning),
        for a new notification, a lane's end or a reload wakes the worker sooner."""
        now = time.time()
        if now >= self._next_prune:
            await self.outbox.call(Outbox.prune, now)
            self._next_prune = now + PRUNE_EVERY
        pause = self._next_prune - now
        for head in await self.outbox.call(Outbox.heads):
            if head.webhook in self._lanes:
                continue
            if (due_at := self._due_at(head)) <= now:
                lane = asyncio.create_task(self._lane(head.webhook), name=f"webhook {head.webhook}")
                lane.add_done_callback(functools.partial(self._lane_ended, head.webhook))
                self._lanes[head.webhook] = lane
            else:
                pause = min(pause, due_at - now)
        return pause

    def _lane_ended(self, name: str, _: asyncio.Task[None]) -> None:
        del self._lanes[name]
        self._wake.set()

    async def _lane(self, name: str) -> None:
        """The webhook's deliveries one after the other, oldest first, for as long as the oldest is due."""
        try:
            while (heads := await self.outbox.call(Outbox.heads, name)) and self._due_at(heads[0]) <= time.time():
                await self._attempt(heads[0])
        except Exception:
            _LOGGER.exception("webhook %s: delivering failed; trying again in %g s", name, ERROR_PAUSE)
            await asyncio.sleep(ERROR_PAUSE)

    async def _attempt(self, delivery: Delivery) -> None:
        webhook = self._webhooks.get(delivery.webhook)
        if time.time() >= self._expires_at(delivery):
            await self._expire(delivery, webhook)
            return
        if webhook is None:  # removed by a reload since the lane looked: it waits for its webhook or its expiry
            return
        status, error = await self._send(webhook, delivery)
        now = time.time()
        if error is None:
            await self.outbox.call(Outbox.delivered, delivery.id, status, now)
            self.delivered[webhook.name] += 1
            _LOGGER.debug("webhook %s: delivered %s (HTTP %s)", webhook.name, delivery.id, status)
            return
        self.failed[webhook.name] += 1
        delay = backoff(webhook, delivery.attempts)
        await self.outbox.call(Outbox.failed, delivery.id, error, status, now + delay)
        _LOGGER.info(
            "webhook %s: attempt %d of delivery %s failed (%s); next in %.1f s",
            webhook.name,
            delivery.attempts + 1,
            delivery.id,
            error,
            delay,
        )

    async def _send(self, webhook: Webhook, delivery: Delivery) -> tuple[int | None, str | None]:
        """One attempt: the answer's status (None without one), and what went wrong (None when delivered)."""
        assert self._session is not None
        notification = delivery.notification
        try:
            body, headers = render(notification, webhook.format)
            headers |= signed_headers(webhook.secret, delivery.id, notification.status, body, time.time())
            timeout = aiohttp.ClientTimeout(total=webhook.timeout)
            async with self._session.post(
                webhook.url, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                status, reason = response.status, response.reason
        except TimeoutError:
            return None, f"no answer within {webhook.timeout:g} s"
        except (aiohttp.ClientError, ValueError) as err:  # ValueError: a URL or format aiohttp or render refuses
            return None, described(err, webhook.url)
        if 200 <= status < 300:
            return status, None
        return status, f"HTTP {status} {reason or ''}".rstrip()

    async def _expire(self, delivery: Delivery, webhook: Webhook | None) -> None:
        error = delivery.last_error or ("its webhook is not configured" if webhook is None else "never attempted")
        await self.outbox.call(Outbox.expired, delivery.id, error, time.time())
        self.expired[delivery.webhook] += 1
        _LOGGER.warning(
            "webhook %s: the %s notification of alert %s expired undelivered after %d attempts (last error: %s)",
            delivery.webhook,
            delivery.notification.status,
            delivery.notification.alert,
            delivery.attempts,
            error,
        )
