"""The host-safety policy's later rules, through the API and against the real engine: refusals that tell
nothing of the file system outside the allowed roots, the healthcheck's pace, cpus, and published ports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from moorage.app import create_app

from ..helpers import TEST_IMAGE, TEST_LABEL, docker_cli, free_port, make_settings, plain_key

# POST a create body under a [policy] section; the answer's status and JSON.
Create = Callable[..., Awaitable[tuple[int, dict[str, Any]]]]


@pytest.fixture
async def create(
    aiohttp_client: Any, tmp_path: Path, allowed_root: Path, docker: aiodocker.Docker, case_label: str
) -> AsyncIterator[Create]:
    """POST a labelled create body to an app with binds allowed under `allowed_root` and the given policy;
    whatever the test made is removed afterwards."""
    clients: dict[str, Any] = {}

    async def post(body: dict[str, Any], **policy: Any) -> tuple[int, dict[str, Any]]:
        key = json.dumps(policy, sort_keys=True)
        if key not in clients:
            section = {"allowed_host_paths": [str(allowed_root)], **policy}
            settings = make_settings(tmp_path / f"app{len(clients)}", {"test-admin": "admin"}, policy=section)
            clients[key] = await aiohttp_client(create_app(settings), headers={"X-API-Key": plain_key("test-admin")})
        labelled = {"image": TEST_IMAGE, **body, "labels": {TEST_LABEL: case_label}}
        resp = await clients[key].post("/api/v1/containers", json=labelled)
        return resp.status, await resp.json()

    yield post
    for container in await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"{TEST_LABEL}={case_label}"]})
    ):
        await container.delete(force=True, v=True)


async def made(docker: aiodocker.Docker, case_label: str) -> int:
    return len(await docker.containers.list(all=True, filters=json.dumps({"label": [f"{TEST_LABEL}={case_label}"]})))


async def host_config(docker: aiodocker.Docker, body: dict[str, Any]) -> dict[str, Any]:
    inspected: dict[str, Any] = await docker.containers.container(body["data"]["id"]).show()
    return inspected["HostConfig"]


def refused(status: int, body: dict[str, Any]) -> list[str]:
    assert status == 403, body
    return [error["field"] for error in body["errors"]]


def bind(path: Path | str) -> dict[str, Any]:
    return {"volumes": [{"host_path": str(path), "container_path": "/host"}]}


async def test_a_refused_bind_tells_nothing_of_the_file_system_outside_the_allowed_roots(
    create: Create, docker: aiodocker.Docker, case_label: str, tmp_path: Path, allowed_root: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "there").mkdir(parents=True)
    links = {"to-dir": outside / "there", "to-missing": outside / "missing", "to-root": Path("/root")}
    for name, target in links.items():
        (allowed_root / name).symlink_to(target)
    answers = {
        "existing": await create(bind(outside / "there")),
        "missing": await create(bind(outside / "missing")),
        **{name: await create(bind(allowed_root / name)) for name in links},
        **{f"{name}/.ssh": await create(bind(allowed_root / name / ".ssh")) for name in links},
    }
    for status, body in answers.values():
        assert refused(status, body) == ["volumes.0.host_path"]
        text = json.dumps(body)
        assert "Errno" not in text and "No such file" not in text
        assert str(outside) not in text and "/root" not in text, text
    # Outside the roots, existing or not: one answer. Through a symlink, wherever it leads: one answer.
    assert answers["existing"] == answers["missing"]
    through = [answers[name] for name in answers if name.startswith("to-")]
    assert all(answer == through[0] for answer in through)
    assert "symlink" in through[0][1]["errors"][0]["message"]
    assert await made(docker, case_label) == 0


async def test_the_default_cpus_lands_in_the_engine(create: Create, docker: aiodocker.Docker) -> None:
    status, body = await create({}, default_cpus=0.5, max_cpus=1.5)
    assert status == 201, body
    assert (await host_config(docker, body))["NanoCpus"] == 500_000_000
    status, body = await create({"cpus": 1.25}, default_cpus=0.5, max_cpus=1.5)
    assert status == 201, body
    assert (await host_config(docker, body))["NanoCpus"] == 1_250_000_000
    # With a maximum and no default, a container that names none gets the maximum, not no limit at all.
    status, body = await create({}, max_cpus=1.5)
    assert status == 201, body
    assert (await host_config(docker, body))["NanoCpus"] == 1_500_000_000


async def test_cpus_above_the_maximum_are_a_403(create: Create, docker: aiodocker.Docker, case_label: str) -> None:
    assert refused(*await create({"cpus": 1.6}, max_cpus=1.5)) == ["cpus"]
    assert await made(docker, case_label) == 0


async def test_a_healthcheck_faster_than_the_minimum_is_a_403(
    create: Create, docker: aiodocker.Docker, case_label: str
) -> None:
    assert refused(*await create({"healthcheck": {"test": "true", "interval": "1ms"}})) == ["healthcheck.interval"]
    assert await made(docker, case_label) == 0
    status, body = await create({"healthcheck": {"test": "true", "interval": "1s", "timeout": "10ms"}})
    assert status == 201, body
    inspected = await docker.containers.container(body["data"]["id"]).show()
    assert inspected["Config"]["Healthcheck"]["Interval"] == 10**9


@pytest.fixture
def fast_healthcheck_image(case_label: str) -> Iterator[str]:
    """A local image whose own HEALTHCHECK runs every 5 ms (docker commit --change), removed after the
    containers made of it (ask for it before `create`, whose clean-up must run first)."""
    image = f"moorage-hc-{case_label}:latest"
    source = docker_cli("create", TEST_IMAGE, "true")
    try:
        docker_cli("commit", "--change", "HEALTHCHECK --interval=5ms CMD true", source, image)
        yield image
    finally:
        docker_cli("rm", source)
        docker_cli("rmi", image)


async def test_an_images_own_fast_healthcheck_is_a_403_unless_the_request_paces_it(
    fast_healthcheck_image: str, create: Create, docker: aiodocker.Docker, case_label: str
) -> None:
    """The engine takes every healthcheck field the request leaves out from the image, so the image's is judged."""
    body = {"image": fast_healthcheck_image, "pull": "never"}
    status, answer = await create(body)
    assert (status, [e["field"] for e in answer["errors"]]) == (403, ["healthcheck.interval"]), answer
    assert await made(docker, case_label) == 0
    for paced in ({"interval": "2s"}, {"test": ["NONE"]}):
        status, answer = await create({**body, "healthcheck": paced})
        assert status == 201, answer


async def test_a_privileged_host_port_is_a_403(create: Create, docker: aiodocker.Docker, case_label: str) -> None:
    assert refused(*await create({"ports": {"80/tcp": 80}})) == ["ports.80/tcp.0.host_port"]
    assert refused(*await create({"ports": {"53/udp": [free_port(), "127.0.0.1:53"]}})) == ["ports.53/udp.1.host_port"]
    assert await made(docker, case_label) == 0
    # Any free port is taken from the engine's unprivileged range.
    status, body = await create({"ports": {"80/tcp": None}, "command": ["sleep", "60"], "start": True})
    assert status == 201, body
    [live, *_] = body["data"]["ports"]["80/tcp"]
    assert live["host_port"] >= 1024
    status, body = await create({"ports": {"80/tcp": 80}}, allow_privileged_ports=True)
    assert status == 201, body
    assert (await host_config(docker, body))["PortBindings"]["80/tcp"] == [{"HostIp": "", "HostPort": "80"}]


async def test_a_host_address_outside_the_allowed_ones_is_a_403(
    create: Create, docker: aiodocker.Docker, case_label: str
) -> None:
    only_loopback = {"allowed_host_ips": ["127.0.0.1"]}
    port = free_port()
    assert refused(*await create({"ports": {"80": port}}, **only_loopback)) == ["ports.80/tcp.0.host_ip"]
    assert refused(*await create({"ports": {"80": f"[::1]:{port}"}}, **only_loopback)) == ["ports.80/tcp.0.host_ip"]
    assert refused(*await create({"ports": {"80": f"0.0.0.0:{port}"}}, **only_loopback)) == ["ports.80/tcp.0.host_ip"]
    assert await made(docker, case_label) == 0
    status, body = await create({"ports": {"80": f"127.0.0.1:{port}"}}, **only_loopback)
    assert status == 201, body
    assert (await host_config(docker, body))["PortBindings"]["80/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": str(port)}
    ]
    # 0.0.0.0 listed: a binding that omits its address (every address) is allowed.
    status, body = await create({"ports": {"80": None}}, allowed_host_ips=["0.0.0.0"])
    assert status == 201, body


async def test_every_violation_is_in_one_403(create: Create, docker: aiodocker.Docker, case_label: str) -> None:
    status, body = await create(
        {
            "cpus": 2,
            "healthcheck": {"test": "true", "interval": "10ms"},
            "ports": {"80": 80, "8080": f"127.0.0.1:{free_port()}"},
            "privileged": True,
        },
        max_cpus=1,
        allowed_host_ips=["127.0.0.1"],
    )
    assert sorted(refused(status, body)) == [
        "cpus", "healthcheck.interval", "ports.80/tcp.0.host_ip", "ports.80/tcp.0.host_port", "privileged",
    ]  # fmt: skip
    assert await made(docker, case_label) == 0
