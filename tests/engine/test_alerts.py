"""Alerts against the real engine, delivered to a real receiver on loopback (an aiohttp app checking each signature):
each rule fires once and is resolved once, the line or exit code in its payload, and no notification is lost to a
receiver that is down or to a moorage that is killed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from moorage.alerts.signing import DELIVERY, SIGNATURE, TIMESTAMP, verify
from moorage.app import create_app

from ..helpers import (
    SERVER_KWARGS,
    TEST_LABEL,
    Daemon,
    MakeContainer,
    daemon_config,
    docker_cli,
    free_port,
    make_settings,
    plain_key,
)

SECRET = b"s3cret-of-the-receiver-0123456789"
FAST = {"backoff_initial": "200ms", "backoff_max": "1s"}  # retries within a second of the receiver's return


class Receiver:
    """A webhook receiver as a user would write one: it refuses a request whose signature does not verify."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.got: list[dict[str, Any]] = []
        self.deliveries: list[str] = []
        self.refused = 0
        self._runner: web.AppRunner | None = None

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.read()
        h = request.headers
        if not verify(SECRET, h.get(TIMESTAMP), body, h.get(SIGNATURE), time.time()):
            self.refused += 1
            return web.Response(status=401)
        self.got.append(json.loads(body))
        self.deliveries.append(h[DELIVERY])
        return web.Response(status=204)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._take)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def of(self, alert: str, status: str | None = None) -> list[dict[str, Any]]:
        return [n for n in self.got if n["alert"] == alert and (status is None or n["status"] == status)]

    async def until(self, check: Callable[[], bool], what: str, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: the receiver got {self.got}")
            await asyncio.sleep(0.1)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    await found.up()
    yield found
    await found.down()


def metric_samples(text: str) -> list[Any]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def webhook(tmp_path: Path, receiver: Receiver) -> dict[str, Any]:
    secret = tmp_path / "webhook-secret"
    secret.write_bytes(SECRET)
    return {"name": "ops", "url": f"http://127.0.0.1:{receiver.port}/hook", "secret_file": str(secret), **FAST}


async def alerting(aiohttp_client: Any, tmp_path: Path, receiver: Receiver, case_label: str,
                   *rules: dict[str, Any]) -> TestClient:  # fmt: skip
    """moorage with `rules` over this test's containers, telling the receiver."""
    mine = f"{TEST_LABEL}={case_label}"
    alerts = [{"webhooks": ["ops"], "selector": mine, **rule} for rule in rules]
    settings = make_settings(tmp_path, {"admin": "admin"}, webhooks=[webhook(tmp_path, receiver)], alerts=alerts)
    client: TestClient = await aiohttp_client(create_app(settings), server_kwargs=SERVER_KWARGS,
                                              headers={"X-API-Key": plain_key("admin")})  # fmt: skip
    await asyncio.sleep(0.5)  # the engine's events are followed
    return client


async def test_an_exit_of_3_fires_once_and_is_resolved_when_it_runs_again(
    aiohttp_client: Any, tmp_path: Path, receiver: Receiver, case_label: str, make_container: MakeContainer
) -> None:
    client = await alerting(aiohttp_client, tmp_path, receiver, case_label, {"name": "crashed", "event": "die"})
    made = await make_container(cmd=["sh", "-c", "sleep 0.3; exit 3"], start=True)
    await receiver.until(lambda: receiver.of("crashed", "firing"), "no firing")
    [firing] = receiver.of("crashed")
    assert firing["details"]["exit_code"] == 3 and firing["details"]["container"]["id"] == made["Id"]
    assert "exited with code 3" in firing["summary"] and firing["severity"] == "warning"
    alerts = (await (await client.get("/api/v1/alerts")).json())["data"]
    assert [(a["alert"], a["status"], a["subject"]) for a in alerts["active"]] == [("crashed", "firing", made["Id"])]
    delivered = ("moorage_webhook_deliveries_total", (("outcome", "delivered"), ("webhook", "ops")))
    for _ in range(20):  # counted once the receiver's answer is in, a moment after the receiver has the request
        series = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for s in metric_samples(await (await client.get("/metrics")).text())
        }
        if series[delivered]:
            break
        await asyncio.sleep(0.1)
    assert series["moorage_alerts_firing", (("alert", "crashed"),)] == 1 and series[delivered] == 1
    await client.post(f"/api/v1/containers/{made['Id']}/start")  # it exits 3 again: still the same firing
    await receiver.until(lambda: receiver.of("crashed", "resolved"), "no resolution")
    await asyncio.sleep(1.5)
    statuses = [n["status"] for n in receiver.of("crashed")]
    assert statuses[:2] == ["firing", "resolved"] and statuses.count("resolved") == 1, statuses
    assert receiver.refused == 0 and len(set(receiver.deliveries)) == len(receiver.deliveries)


async def test_a_stop_asked_for_is_not_a_crash(
    aiohttp_client: Any, tmp_path: Path, receiver: Receiver, case_label: str, make_container: MakeContainer
) -> None:
    client = await alerting(aiohttp_client, tmp_path, receiver, case_label, {"name": "crashed", "event": "die"})
    made = await make_container(cmd=["sleep", "600"], start=True)  # sleep ignores TERM: the stop kills it
    assert (await client.post(f"/api/v1/containers/{made['Id']}/stop?timeout=1")).status == 200
    await asyncio.sleep(1)  # the die event judged
    await client.post("/api/v1/alerts/crashed/test")  # queued after any firing the stop would have made
    await receiver.until(lambda: receiver.of("crashed", "test"), "no test notification")
    assert receiver.of("crashed", "firing") == []


async def test_a_scoped_key_sees_the_alerts_of_its_containers_only(
    aiohttp_client: Any, tmp_path: Path, receiver: Receiver, case_label: str, make_container: MakeContainer
) -> None:
    team = f"{TEST_LABEL}={case_label},team=a"
    keys = {"admin": "admin", "team-a": {"role": "viewer", "selector": team}, "team-a-admin": {"role": "admin",
            "selector": team}}  # fmt: skip
    alerts = [{"name": "crashed", "event": "die", "webhooks": ["ops"], "selector": f"{TEST_LABEL}={case_label}"},
              {"name": "busy-host", "metric": "load1", "above": 0, "webhooks": ["ops"]}]  # fmt: skip
    settings = make_settings(tmp_path, keys, webhooks=[webhook(tmp_path, receiver)], alerts=alerts)
    client: TestClient = await aiohttp_client(create_app(settings), server_kwargs=SERVER_KWARGS)
    await asyncio.sleep(0.5)
    mine = await make_container(cmd=["sh", "-c", "exit 3"], start=True, labels={"team": "a"})
    theirs = await make_container(cmd=["sh", "-c", "exit 4"], start=True, labels={"team": "b"})
    await receiver.until(lambda: len(receiver.of("crashed", "firing")) == 2, "two firings")

    async def seen(key: str) -> set[tuple[str, str]]:
        resp = await client.get("/api/v1/alerts", headers={"X-API-Key": plain_key(key)})
        return {(a["alert"], a["subject"]) for a in (await resp.json())["data"]["active"]}

    assert {("crashed", mine["Id"]), ("crashed", theirs["Id"]), ("busy-host", "host")} <= await seen("admin")
    assert await seen("team-a") == {("crashed", mine["Id"])}  # neither the other team's nor the host's
    resp = await client.get("/api/v1/alerts/deliveries", headers={"X-API-Key": plain_key("team-a")})
    assert resp.status == 403
    resp = await client.post("/api/v1/alerts/crashed/test", headers={"X-API-Key": plain_key("team-a-admin")})
    assert resp.status == 403  # the rules and their webhooks serve every container


async def test_an_oom_kill_fires_oom(
    aiohttp_client: Any, tmp_path: Path, receiver: Receiver, case_label: str, make_container: MakeContainer
) -> None:
    await alerting(
        aiohttp_client, tmp_path, receiver, case_label, {"name": "oom", "event": "oom", "severity": "critical"}
    )
    hog = "dd if=/dev/zero of=/dev/null bs=64M count=1"  # a 64 MiB buffer under a 16 MiB limit
    limited = {"Memory": 16 * 2**20, "MemorySwap": 16 * 2**20}
    made = await make_container(cmd=["sh", "-c", hog], start=True, host_config=limited)
    await receiver.until(lambda: receiver.of("oom", "firing"), "no oom firing")
    await asyncio.sleep(1)  # the kernel may kill several processes: one firing all the same
    [firing] = receiver.of("oom")
    assert firing["severity"] == "critical" and firing["details"]["container"]["id"] == made["Id"]


async def test_an_unhealthy_container_fires_and_is_resolved_when_its_check_passes(
    aiohttp_client: Any, tmp_path: Path, receiver: Receiver, case_label: str, make_container: MakeContainer
) -> None:
    await alerting(aiohttp_client, tmp_path, receiver, case_label, {"name": "sick", "event": "unhealthy"})
    check = {"Test": ["CMD", "test", "-f", "/tmp/ok"], "Interval": 200_000_000, "StartPeriod": 0, "Retries": 1}
    made = await make_container(start=True, Healthcheck=check)
    await receiver.until(lambda: receiver.of("sick", "firing"), "no unhealthy firing")
    docker_cli("exec", made["Id"], "touch", "/tmp/ok")
    await receiver.until(lambda: receiver.of("sick", "resolved"), "no resolution once the check passed")
    assert [n["status"] for n in receiver.of("sick")] == ["firing", "resolved"]
    assert receiver.of("sick", "resolved")[0]["summary"].endswith("is healthy again")


async def test_a_restart_loop_fires_once_not_per_restart(
    aiohttp_client: Any, tmp_path: Path, receiver: Receiver, case_label: str, make_container: MakeContainer
) -> None:
    rule = {"name": "looping", "event": "restart_loop", "restarts": 3, "within": "1m"}
    await alerting(aiohttp_client, tmp_path, receiver, case_label, rule)
    policy = {"RestartPolicy": {"Name": "always"}}
    await make_container(cmd=["sh", "-c", "sleep 0.2; exit 1"], start=True, host_config=policy)
    await receiver.until(lambda: receiver.of("looping", "firing"), "no loop firing", seconds=30)
    await asyncio.sleep(4)  # the engine goes on restarting it
    assert [n["status"] for n in receiver.of("looping")] == ["firing"]
    assert receiver.of("looping")[0]["details"]["restarts"] >= 3


async def test_a_cpu_burner_above_80_for_5_seconds_fires(
    aiohttp_client: Any, tmp_path: Path, receiver: Receiver, case_label: str, make_container: MakeContainer
) -> None:
    rule = {"name": "hot", "metric": "container_cpu", "above": 80, "for": "5s"}
    client = await alerting(aiohttp_client, tmp_path, receiver, case_label, rule)
    started = time.monotonic()
    burner = await make_container(cmd=["sh", "-c", "while :; do :; done"], start=True)
    await asyncio.sleep(3)
    pending = (await (await client.get("/api/v1/alerts")).json())["data"]["active"]
    assert [(a["alert"], a["status"]) for a in pending] == [("hot", "pending")] and not receiver.got
    await receiver.until(lambda: receiver.of("hot", "firing"), "no cpu firing")
    assert time.monotonic() - started >= 5
    [firing] = receiver.of("hot")
    assert firing["details"]["value"] > 80 and firing["details"]["container"]["name"] == burner["Name"].lstrip("/")
    await client.post(f"/api/v1/containers/{burner['Id']}/kill")
    await receiver.until(lambda: receiver.of("hot", "resolved"), "no resolution once it stopped")


async def test_a_line_with_error_fires_with_the_line(
    aiohttp_client: Any, tmp_path: Path, receiver: Receiver, case_label: str, make_container: MakeContainer
) -> None:
    rule = {"name": "errors", "pattern": "ERROR", "quiet": "2s"}
    await alerting(aiohttp_client, tmp_path, receiver, case_label, rule)
    script = "echo starting; sleep 1; echo 'ERROR: disk on fire'; echo 'ERROR: again'; echo fine; sleep 600"
    await make_container(cmd=["sh", "-c", script], start=True)
    await receiver.until(lambda: receiver.of("errors", "resolved"), "no firing and resolution", seconds=15)
    firing, resolved = receiver.of("errors")
    assert firing["status"] == "firing" and firing["details"]["line"] == "ERROR: disk on fire"
    assert resolved["details"]["count"] == 2  # the second line counted, not notified


async def test_a_receiver_down_for_30_seconds_gets_every_notification_once(
    aiohttp_client: Any, tmp_path: Path, receiver: Receiver, case_label: str, make_container: MakeContainer
) -> None:
    client = await alerting(aiohttp_client, tmp_path, receiver, case_label, {"name": "crashed", "event": "die"})
    await receiver.down()
    made = [await make_container(cmd=["sh", "-c", f"exit {code}"], start=True) for code in (3, 4, 5)]
    for _ in range(2):
        assert (await client.post("/api/v1/alerts/crashed/test")).status == 200
    await asyncio.sleep(30)
    deliveries = (await (await client.get("/api/v1/alerts/deliveries?state=pending")).json())["data"]["items"]
    # A webhook's deliveries go out oldest first: the oldest has been tried again and again, the rest wait behind it.
    assert len(deliveries) == 5 and deliveries[-1]["attempts"] >= 5 and deliveries[-1]["last_error"], deliveries
    await receiver.up()
    await receiver.until(lambda: len(receiver.got) >= 5, "not every notification after the receiver came back")
    await asyncio.sleep(2)
    assert len(receiver.got) == 5 and len(set(receiver.deliveries)) == 5
    codes = sorted(n["details"]["exit_code"] for n in receiver.of("crashed", "firing"))
    assert codes == [3, 4, 5] and {n["details"]["container"]["id"] for n in receiver.of("crashed", "firing")} == {
        m["Id"] for m in made
    }
    assert len(receiver.of("crashed", "test")) == 2


async def test_deliveries_pending_when_moorage_is_killed_go_out_after_it_starts_again(
    tmp_path: Path, receiver: Receiver
) -> None:
    await receiver.down()
    hook = webhook(tmp_path, receiver)
    config = tmp_path / "moorage.toml"
    config.write_text(daemon_alerts(tmp_path, hook, "crashed"))
    port = free_port()
    daemon = Daemon(config, port)
    try:
        await asyncio.to_thread(daemon.wait_healthy)
        async with aiohttp.ClientSession(headers={"X-API-Key": plain_key("test-admin")}) as session:
            for _ in range(3):
                async with session.post(f"{daemon.url}/api/v1/alerts/crashed/test") as resp:
                    assert resp.status == 200, await resp.text()
        os.kill(daemon.proc.pid, signal.SIGKILL)
        daemon.proc.wait(timeout=10)
        await receiver.up()
        await asyncio.sleep(1)
        assert receiver.got == []  # nothing sent while moorage was down
        daemon = Daemon(config, port)
        await asyncio.to_thread(daemon.wait_healthy)
        await receiver.until(lambda: len(receiver.got) == 3, "the pending deliveries after the restart")
        assert [n["status"] for n in receiver.got] == ["test"] * 3 and len(set(receiver.deliveries)) == 3
    finally:
        with contextlib.suppress(ProcessLookupError):
            daemon.stop()


async def test_bad_alert_calls_are_4xx_naming_the_field(
    aiohttp_client: Any, tmp_path: Path, receiver: Receiver, case_label: str
) -> None:
    client = await alerting(aiohttp_client, tmp_path, receiver, case_label, {"name": "crashed", "event": "die"})
    for method, path, field in [
        ("GET", "/api/v1/alerts/deliveries?limit=0", "limit"),
        ("GET", "/api/v1/alerts/deliveries?state=lost", "state"),
        ("GET", "/api/v1/alerts/deliveries?webhook=NOPE", "webhook"),
        ("POST", "/api/v1/alerts/-bad/test", "name"),
    ]:
        resp = await client.request(method, path)
        assert resp.status == 400, (path, await resp.text())
        assert [e["field"] for e in (await resp.json())["errors"]] == [field]
    assert (await client.post("/api/v1/alerts/nope/test")).status == 404


def daemon_alerts(tmp_path: Path, hook: dict[str, Any], *names: str) -> str:
    """A `moorage serve` config with `hook` and a rule of each name, watching no container."""
    webhooks = "[[webhooks]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in hook.items())
    rules = "".join(
        f'[[alerts]]\nname = "{name}"\nevent = "die"\nwebhooks = ["ops"]\nselector = "moorage.test=none"\n'
        for name in names
    )
    return daemon_config(tmp_path, more=webhooks + rules)


async def test_sighup_reloads_the_rules_and_the_webhooks(tmp_path: Path, receiver: Receiver) -> None:
    config = tmp_path / "moorage.toml"
    config.write_text(daemon_alerts(tmp_path, webhook(tmp_path, receiver), "first"))
    daemon = Daemon(config, free_port())
    moved = Receiver()
    await moved.up()
    try:
        await asyncio.to_thread(daemon.wait_healthy)
        async with aiohttp.ClientSession(headers={"X-API-Key": plain_key("test-admin")}) as session:

            async def test(name: str) -> int:
                async with session.post(f"{daemon.url}/api/v1/alerts/{name}/test") as resp:
                    return resp.status

            assert (await test("first"), await test("second")) == (200, 404)
            await receiver.until(lambda: len(receiver.got) == 1, "the first rule's test")
            config.write_text(daemon_alerts(tmp_path, webhook(tmp_path, moved), "second"))
            daemon.proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(1)
            assert (await test("first"), await test("second")) == (404, 200)
            await moved.until(lambda: len(moved.got) == 1, "the second rule's test, at the webhook's new URL")
            assert moved.got[0]["alert"] == "second" and len(receiver.got) == 1
    finally:
        await moved.down()
        daemon.stop()
