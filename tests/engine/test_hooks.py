"""POST /hooks/{name} against a real `moorage serve` and the real engine (issue 15): a call signed as GitHub and
Gitea sign theirs (X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body>) recreates the hook's container;
any other call is a 401 that changes nothing and counts as a failed login."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest

from ..helpers import (
    STOPPABLE,
    TEST_IMAGE,
    TEST_LABEL,
    Daemon,
    daemon_config,
    inspected,
    labelled,
    plain_key,
    remove_labelled,
    until,
)

HOOK = "deploy-web"
PAYLOAD = b'{"ref": "refs/heads/main", "after": "0123456789abcdef"}'


@dataclass
class Hooked:
    """A daemon with one hook for one running container it made."""

    daemon: Daemon
    secret: bytes
    name: str
    before: dict[str, Any]
    state_dir: Path

    def signature(self, body: bytes = PAYLOAD, secret: bytes | None = None) -> str:
        return "sha256=" + hmac.new(secret or self.secret, body, hashlib.sha256).hexdigest()

    async def call(
        self, signature: str | None, *, hook: str = HOOK, body: bytes = PAYLOAD, query: str = ""
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.daemon.url}/api/v1/hooks/{hook}{query}", data=body, headers=headers) as resp,
        ):
            return resp.status, await resp.json()


@pytest.fixture(autouse=True)
async def swept(docker: aiodocker.Docker, case_label: str) -> AsyncIterator[None]:
    yield
    await remove_labelled(docker, case_label)


@pytest.fixture
def hooked_daemon(spawn_daemon: Callable[..., Daemon], tmp_path: Path, case_label: str) -> Callable[..., Any]:
    """Start a daemon whose one hook recreates a container it made (`failed_limit` as given); the Hooked."""

    async def start(failed_limit: int = 100_000) -> Hooked:
        secret = secrets.token_hex(16).encode()
        secret_file = tmp_path / "web.secret"
        secret_file.write_bytes(secret + b"\n")  # as `echo` writes it: the newline is not part of the secret
        secret_file.chmod(0o600)
        name = f"rh-{case_label}"
        hook = (
            f'[[hooks]]\nname = "{HOOK}"\ncontainer = "{name}"\nsecret_file = "{secret_file}"\n'
            'pull = "missing"\nwait = "running"\ntimeout = 30\n'
        )
        daemon = spawn_daemon(daemon_config(tmp_path, failed_limit, hook))
        made = {"name": name, "image": TEST_IMAGE, "pull": "never", "command": STOPPABLE, "start": True}
        async with (
            aiohttp.ClientSession(daemon.url, headers={"X-API-Key": plain_key("test-admin")}) as session,
            session.post("/api/v1/containers", json={**made, "labels": {TEST_LABEL: case_label}}) as resp,
        ):
            assert resp.status == 201, await resp.text()
            container_id = (await resp.json())["data"]["id"]
        return Hooked(daemon, secret, name, inspected(container_id), tmp_path / "daemon-state")

    return start


def hook_audit(hooked: Hooked) -> list[dict[str, Any]]:
    """The audit lines of the daemon's hook calls."""
    lines = [json.loads(line) for line in (hooked.state_dir / "audit.log").read_text().splitlines()]
    return [line for line in lines if line["path"] == f"/api/v1/hooks/{HOOK}"]


def assert_untouched(hooked: Hooked, case_label: str) -> None:
    now = inspected(hooked.before["Id"])
    assert now["Name"] == hooked.before["Name"] and now["State"]["StartedAt"] == hooked.before["State"]["StartedAt"]
    assert [c["Id"] for c in labelled(case_label)] == [hooked.before["Id"]]


async def test_a_signed_call_recreates_the_hooks_container(hooked_daemon: Any, case_label: str) -> None:
    hooked: Hooked = await hooked_daemon()
    status, body = await hooked.call(hooked.signature())
    assert status == 200, body
    data = body["data"]
    assert data["old_id"] == hooked.before["Id"] and data["container"]["name"] == hooked.name
    [now] = labelled(case_label)
    assert now["Id"] == data["container"]["id"] != hooked.before["Id"]
    assert now["Name"] == f"/{hooked.name}" and now["State"]["Running"] is True
    assert [entry["step"] for entry in data["timeline"]][-1] == "renamed"
    [line] = hook_audit(hooked)
    assert (line["key"], line["result"], line["target"]) == (None, 200, HOOK), line
    assert line["detail"] == {**line["detail"], "old_id": hooked.before["Id"], "new_id": now["Id"]}, line


async def test_an_unsigned_wrongly_signed_or_unknown_hook_call_is_a_401_that_changes_nothing(
    hooked_daemon: Any, case_label: str
) -> None:
    hooked: Hooked = await hooked_daemon()
    right = hooked.signature()
    refused = {
        "unsigned": await hooked.call(None),
        "empty": await hooked.call(""),
        "another secret": await hooked.call(hooked.signature(secret=b"not-the-secret")),
        "another body": await hooked.call(right, body=PAYLOAD + b" "),
        "sha1 form": await hooked.call("sha1=" + right.removeprefix("sha256=")[:40]),
        "bare hex": await hooked.call(right.removeprefix("sha256=")),
        "not hex": await hooked.call("sha256=" + "z" * 64),
        "unknown hook": await hooked.call(right, hook="deploy-other"),
    }
    assert {why: status for why, (status, _) in refused.items()} == dict.fromkeys(refused, 401), refused
    assert all(body["code"] == 401 and body["message"] for _, body in refused.values())
    assert_untouched(hooked, case_label)
    # The signature is no credential anywhere else.
    headers = {"X-Hub-Signature-256": right}
    async with aiohttp.ClientSession() as session:
        for path in ("/api/v1/containers", f"/api/v1/containers/{hooked.name}"):
            async with session.get(f"{hooked.daemon.url}{path}", headers=headers) as resp:
                assert resp.status == 401, path


async def test_bad_calls_count_as_failed_logins_up_to_a_429(hooked_daemon: Any, case_label: str) -> None:
    hooked: Hooked = await hooked_daemon(failed_limit=3)
    wrong = hooked.signature(secret=b"not-the-secret")
    statuses = [
        (await hooked.call(signature, hook=hook))[0]
        for signature, hook in [(None, HOOK), (wrong, HOOK), (hooked.signature(), "deploy-other"), (wrong, HOOK)]
    ]
    assert statuses == [401, 401, 401, 429], statuses
    assert_untouched(hooked, case_label)


async def test_async_is_a_202_at_once_and_the_container_is_recreated_shortly_after(
    hooked_daemon: Any, case_label: str
) -> None:
    hooked: Hooked = await hooked_daemon()
    status, body = await hooked.call(hooked.signature(), query="?async=true")
    assert status == 202 and body["data"] == {**body["data"], "accepted": True, "container": hooked.name}, body
    deadline = time.monotonic() + 30
    while True:
        found = labelled(case_label)
        now = found[0] if len(found) == 1 else {}
        if now and now["Id"] != hooked.before["Id"] and now["Name"] == f"/{hooked.name}" and now["State"]["Running"]:
            break
        assert time.monotonic() < deadline, [(c["Name"], c["State"]["Status"]) for c in found]
        await asyncio.sleep(0.25)
    assert inspected(hooked.before["Id"]) == {}
    await until(lambda: len(hook_audit(hooked)) == 2, "the audit line of the recreate's outcome")
    accepted, outcome = hook_audit(hooked)
    assert accepted["result"] == 202 and outcome["result"] == 200 and outcome["detail"]["async"] is True, outcome
    assert outcome["detail"]["new_id"] == now["Id"], outcome
