"""POST /containers/{id}/recreate against the real engine and the local registry (issue 15): a new build of the
container's tag replaces it with every setting kept; a new container that is not healthy is undone, the old one
running again; what moorage cannot express or the policy refuses is refused with nothing touched; one recreate
of a container at a time; a recreate cut by a killed daemon is finished or undone at its next start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from moorage.containers.ownership import CREATE_LABEL, POLICY_LABEL
from moorage.settings import Settings

from ..helpers import (
    STOPPABLE,
    TEST_IMAGE,
    TEST_LABEL,
    Daemon,
    MakeContainer,
    daemon_config,
    docker_cli,
    free_port,
    inspected,
    labelled,
    make_settings,
    plain_key,
    remove_labelled,
    untag,
    until,
)

STEPS_RUNNING = ["inspected", "pulled", "created", "old_stopped", "new_started", "running", "old_removed", "renamed"]
STEPS_HEALTHY = ["inspected", "pulled", "created", "old_stopped", "new_started", "healthy", "old_removed", "renamed"]
# A web server of / on 8080, that ends at the stop's SIGTERM.
SERVE = ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h / & wait"]
# Probed every second; healthy once /tmp/ready exists, which the command makes after a few seconds: the time
# between "new_started" and "healthy" in which a second recreate or a kill can come.
SLOW_READY = ["sh", "-c", "trap 'exit 0' TERM; sleep 4 & wait; touch /tmp/ready; sleep 600 & wait"]
SLOW_HEALTH = {"test": "test -f /tmp/ready", "interval": "1s", "timeout": "2s", "retries": 3, "start_period": "30s"}


@pytest.fixture
def settings(tmp_path: Path, allowed_root: Path) -> Settings:
    """The admin client's app (tests/conftest.py): binds allowed under `allowed_root`."""
    return make_settings(tmp_path, {"test-admin": "admin"}, policy={"allowed_host_paths": [str(allowed_root)]})


@pytest.fixture
def repository(case_label: str) -> Iterator[str]:
    """A repository of the local registry of this test's own; its tag and every digest reference left after."""
    repo = f"127.0.0.1:5000/moorage-test/recreate-{case_label}"
    yield repo
    untag(f"{repo}:latest")


@pytest.fixture(autouse=True)
async def swept(docker: aiodocker.Docker, case_label: str, repository: str) -> AsyncIterator[list[str]]:
    """Every container labelled for this test (a recreate makes new ids), then its networks, its volume and those
    the test adds to the list yielded, removed after the test, before the repository's images (which they hold)."""
    volumes = [f"moorage-test-{case_label}"]
    yield volumes
    await remove_labelled(docker, case_label)
    for network in networks(case_label):
        remove_quietly("network", network)
    for volume in volumes:
        remove_quietly("volume", volume)


def networks(case_label: str) -> tuple[str, str]:
    """The names of the two networks a test may make, on subnets of this file's own."""
    return f"moorage-test-{case_label}", f"moorage-test-{case_label}-b"


def remove_quietly(kind: str, name: str) -> None:
    subprocess.run(["docker", kind, "rm", name], capture_output=True, check=False)


def publish(tag: str, version: str, *, keep_local: bool = True, more: str = "") -> str:
    """Build the test image with a file /version holding `version` (and the Dockerfile lines `more`), push it to
    `tag`; its image id. Without keep_local the tag is removed here: only the registry knows of the build, as
    after a CI push."""
    dockerfile = f"FROM {TEST_IMAGE}\nRUN echo {version} > /version\n{more}"
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-"], input=dockerfile.encode(), capture_output=True, check=True
    )
    docker_cli("push", "-q", tag)
    image_id = docker_cli("inspect", "-f", "{{.Id}}", tag)
    if not keep_local:
        docker_cli("rmi", tag)
    return image_id


def setting(container: dict[str, Any]) -> dict[str, Any]:
    """What a recreate keeps, as the engine holds it: each setting issue 15 lists, and the hardening moorage adds.
    The short-id and hostname aliases and moorage's create label are the container's own; the rest must be equal."""
    config, host = container["Config"], container["HostConfig"]
    labels = dict(config.get("Labels") or {})
    labels.pop(CREATE_LABEL, None)
    own_aliases = {container["Id"][:12], config["Hostname"]}
    mounts = sorted((m["Type"], m.get("Name") or m["Source"], m["Destination"], m["RW"]) for m in container["Mounts"])
    return {
        "name": container["Name"],
        "image": config["Image"],
        "command": config["Cmd"],
        "entrypoint": config["Entrypoint"],
        "env": sorted(config.get("Env") or ()),
        "labels": labels,
        "port_bindings": host["PortBindings"],
        "mounts": mounts,
        "network_mode": host["NetworkMode"],
        "networks": {
            name: (sorted(set(endpoint.get("Aliases") or ()) - own_aliases), endpoint.get("IPAMConfig") or None)
            for name, endpoint in container["NetworkSettings"]["Networks"].items()
        },
        "restart_policy": host["RestartPolicy"],
        "limits": [host["Memory"], host["MemoryReservation"], host["NanoCpus"], host["PidsLimit"]],
        "user": config["User"],
        "working_dir": config["WorkingDir"],
        "hostname": config["Hostname"],
        "healthcheck": config.get("Healthcheck"),
        "hardening": [host["Privileged"], host["CapAdd"], host["SecurityOpt"]],
    }


def others_named(name: str) -> list[str]:
    """Names of the containers that carry `name` with a suffix (the recreate's temporary "<name>-new-*")."""
    names = docker_cli("ps", "-a", "--format", "{{.Names}}", "--filter", f"name=^/{name}-").split()
    return sorted(names)


async def create(client: TestClient, case_label: str, **body: Any) -> dict[str, Any]:
    """A container made through the API, labelled for this test and started; its detail. A field given as None
    is left out (the image's own)."""
    labels = {TEST_LABEL: case_label, **body.pop("labels", {})}
    defaults = {"image": TEST_IMAGE, "name": f"rt-{case_label}", "command": STOPPABLE, "start": True}
    body = {key: value for key, value in {**defaults, "pull": "never", **body}.items() if value is not None}
    resp = await client.post("/api/v1/containers", json={**body, "labels": labels})
    answer = await resp.json()
    assert resp.status == 201, answer
    return dict(answer["data"])


async def recreate(client: TestClient, container: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await client.post(f"/api/v1/containers/{container}/recreate", json=body)
    return resp.status, await resp.json()


async def streamed(resp: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    """The NDJSON lines of a recreate stream, heartbeats left out."""
    assert resp.status == 200 and resp.content_type == "application/x-ndjson", await resp.text()
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    return [line for line in lines if "heartbeat" not in line]


async def served(port: int, seconds: float = 10) -> str:
    """/version as the container publishing `port` serves it, once its server listens (a container started a
    moment ago may not yet)."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/version") as resp:
                    assert resp.status == 200
                    return (await resp.text()).strip()
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


def steps(timeline: list[dict[str, Any]]) -> list[str]:
    return [entry["step"] for entry in timeline]


def fields(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body["errors"]]


def audited(tmp_path: Path) -> list[dict[str, Any]]:
    """The audit lines of the recreates the test's app answered."""
    lines = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    return [line for line in lines if line["path"].endswith("/recreate")]


def docker_run(case_label: str, *flags: str, start: bool = True) -> dict[str, Any]:
    """A container made with the docker CLI, not moorage, labelled for this test (running unless `start` is
    false); its inspect."""
    name = f"rt-cli-{case_label}"
    made = ("run", "-d") if start else ("create",)
    docker_cli(*made, "--name", name, "--label", f"{TEST_LABEL}={case_label}", *flags, TEST_IMAGE, *STOPPABLE)
    return inspected(name)


def assert_untouched(before: dict[str, Any], case_label: str) -> None:
    """The container is the same one, in the same state since the same start, and nothing else was made."""
    now = inspected(before["Id"])
    assert now and now["Name"] == before["Name"], now
    state = ("Status", "Running", "Pid", "StartedAt")
    assert [now["State"][key] for key in state] == [before["State"][key] for key in state]
    assert [c["Id"] for c in labelled(case_label)] == [before["Id"]]


async def test_a_new_build_of_the_tag_replaces_the_container_with_every_setting_kept(
    client: TestClient, case_label: str, repository: str, allowed_root: Path, tmp_path: Path
) -> None:
    tag = f"{repository}:latest"
    publish(tag, "v1")
    network = volume = f"moorage-test-{case_label}"
    docker_cli("network", "create", network)
    port = free_port()
    made = await create(
        client,
        case_label,
        image=tag,
        entrypoint=SERVE[:2],
        command=SERVE[2:],
        environment={"GREETING": "hello world", "EMPTY": ""},
        labels={"app": "web"},
        ports={"8080/tcp": f"127.0.0.1:{port}"},
        volumes=[
            {"host_path": str(allowed_root / "data"), "container_path": "/data", "read_only": True},
            {"volume": volume, "container_path": "/cache"},
        ],
        network=network,
        network_aliases=["web-alias"],
        healthcheck={"test": "wget -q -O /dev/null http://127.0.0.1:8080/version", "interval": "1s", "retries": 3},
        restart_policy="on-failure:3",
        memory="64m",
        memory_reservation="32m",
        cpus=0.5,
        pids_limit=64,
        user="nobody",
        working_dir="/tmp",
        hostname="rt-web",
    )
    old = inspected(made["id"])
    v2 = publish(tag, "v2", keep_local=False)

    resp = await client.get(f"/api/v1/containers/{made['id']}/image-update")
    check = (await resp.json())["data"]
    assert resp.status == 200 and check["update_available"] is True, check
    status, body = await recreate(client, made["id"], {"pull": "always", "wait": "healthy", "timeout": 60})
    assert status == 200, body
    data = body["data"]

    new = inspected(data["container"]["id"])
    assert data["old_id"] == old["Id"] and data["kept_old"] is None and new["Id"] != old["Id"]
    assert new["Image"] == v2 and new["State"]["Health"]["Status"] == "healthy"
    assert docker_cli("exec", new["Id"], "cat", "/version") == "v2"
    assert await served(port) == "v2"
    assert setting(new) == setting(old)
    assert new["Config"]["Labels"][POLICY_LABEL] == old["Config"]["Labels"][POLICY_LABEL]  # still moorage's own
    assert data["container"]["name"] == made["name"] and data["container"]["status"] == "running"
    assert inspected(old["Id"]) == {} and others_named(made["name"]) == []
    assert [c["Id"] for c in labelled(case_label)] == [new["Id"]]

    timeline = data["timeline"]
    assert steps(timeline) == STEPS_HEALTHY
    elapsed = [entry["elapsed"] for entry in timeline]
    assert elapsed == sorted(elapsed) and all(isinstance(entry["at"], str) for entry in timeline)
    step = {entry["step"]: entry for entry in timeline}
    assert step["pulled"]["image_id"] == v2 and step["pulled"]["digest"].endswith(check["remote_digest"])
    assert step["created"]["id"] == new["Id"] and step["created"]["name"].startswith(f"{made['name']}-new-")
    assert step["old_stopped"] == {**step["old_stopped"], "id": old["Id"], "was_running": True}
    assert step["new_started"]["id"] == new["Id"] and step["healthy"]["after"] >= 0
    assert step["old_removed"]["id"] == old["Id"] and step["renamed"]["name"] == made["name"]
    resp = await client.get(f"/api/v1/containers/{new['Id']}/image-update")
    assert (await resp.json())["data"]["update_available"] is False
    [line] = audited(tmp_path)
    assert line["result"] == 200 and line["key"] == "test-admin", line
    assert line["detail"] == {**line["detail"], "old_id": old["Id"], "new_id": new["Id"], "name": made["name"]}
    assert line["detail"]["image"] == tag and line["detail"]["outcome"]


async def test_what_the_container_took_from_its_image_comes_from_the_new_image(
    client: TestClient, case_label: str, repository: str
) -> None:
    """A new build's command, environment and labels are the new container's; only the request's own are kept."""
    tag = f"{repository}:latest"

    def build(version: str, seconds: int) -> str:
        command = json.dumps([*STOPPABLE[:-1], STOPPABLE[-1].replace("600", str(seconds))])
        more = f"ENV APP_VERSION={version}\nLABEL build={version}\nCMD {command}\n"
        return publish(tag, version, keep_local=version == "v1", more=more)

    build("v1", 601)
    made = await create(client, case_label, image=tag, command=None, environment={"MINE": "x"}, labels={"app": "web"})
    v2 = build("v2", 602)
    status, body = await recreate(client, made["id"], {"pull": "always"})
    assert status == 200, body
    new = inspected(body["data"]["container"]["id"])
    assert new["Image"] == v2 and new["Config"]["Cmd"][-1].endswith("sleep 602 & wait")
    env = new["Config"]["Env"]
    assert "APP_VERSION=v2" in env and "APP_VERSION=v1" not in env and "MINE=x" in env, env
    labels = new["Config"]["Labels"]
    assert labels["build"] == "v2" and labels["app"] == "web" and labels[TEST_LABEL] == case_label, labels


async def test_the_data_in_every_volume_is_the_new_containers(
    client: TestClient, case_label: str, repository: str, allowed_root: Path, swept: list[str]
) -> None:
    """A named volume, an anonymous one (`docker run -v /anon`), one the image declares (VOLUME) and a bind: the
    new container mounts the same data, and no volume is removed with the old container."""
    tag = f"{repository}:latest"
    publish(tag, "v1", more="VOLUME /declared\n")
    bind = allowed_root / "data"
    volume = f"moorage-test-{case_label}"
    flags = ["-v", f"{volume}:/named", "-v", "/anon", "-v", f"{bind}:/bound"]
    before = docker_cli("run", "-d", "--label", f"{TEST_LABEL}={case_label}", *flags, tag, *STOPPABLE)
    for path in ("/named", "/anon", "/declared", "/bound"):
        docker_cli("exec", before, "sh", "-c", f"echo kept > {path}/file")
    volumes = {m["Destination"]: m.get("Name") for m in inspected(before)["Mounts"]}
    swept.extend(name for name in volumes.values() if name)
    publish(tag, "v2", keep_local=False, more="VOLUME /declared\n")

    status, body = await recreate(client, before, {"pull": "always"})
    assert status == 200, body
    new = body["data"]["container"]["id"]
    assert docker_cli("exec", new, "cat", "/version") == "v2"
    for path in ("/named", "/anon", "/declared", "/bound"):
        assert docker_cli("exec", new, "cat", f"{path}/file") == "kept", path
    assert {m["Destination"]: m.get("Name") for m in inspected(new)["Mounts"]} == volumes
    listed = docker_cli("volume", "ls", "-q").split()
    assert all(name in listed for name in volumes.values() if name), (volumes, listed)


# The image's own healthcheck, which the container takes when it sets none: v3's fails.
IMAGE_HEALTHCHECK = "HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD grep -qx v2 /version\n"


@pytest.mark.parametrize(
    ("stream", "image_healthcheck"),
    [(False, False), (True, False), (False, True)],
    ids=["answer", "stream", "the-images-healthcheck"],
)
async def test_a_build_whose_healthcheck_fails_is_undone_and_the_old_container_runs_again(
    client: TestClient, case_label: str, repository: str, stream: bool, image_healthcheck: bool, tmp_path: Path
) -> None:
    """The healthcheck (the container's own, or its image's) asks for what only v2 has: v3 never becomes
    healthy."""
    tag = f"{repository}:latest"
    more = IMAGE_HEALTHCHECK if image_healthcheck else ""
    v2 = publish(tag, "v2", more=more)
    health = {"test": "grep -qx v2 /version", "interval": "1s", "timeout": "2s", "retries": 2}
    port = free_port()
    made = await create(
        client,
        case_label,
        image=tag,
        command=SERVE,
        ports={"8080/tcp": f"127.0.0.1:{port}"},
        healthcheck=None if image_healthcheck else health,
    )
    old = inspected(made["id"])
    assert old["Config"]["Healthcheck"]
    publish(tag, "v3", keep_local=False, more=more)

    body = {"pull": "always", "wait": "healthy", "timeout": 60}
    if stream:
        resp = await client.post(f"/api/v1/containers/{made['id']}/recreate", params={"stream": "true"}, json=body)
        *lines, end = await streamed(resp)
        assert end["end"] == "failed" and end["code"] == 409, end
        answer = end
        assert steps(lines) == steps(answer["data"]["timeline"])
    else:
        status, answer = await recreate(client, made["id"], body)
        assert status == 409, answer
    assert answer["message"] and fields(answer) == ["wait"], answer
    data = answer["data"]
    assert data["old_id"] == old["Id"] and data["new_id"] != old["Id"]
    assert data["health_log"], data
    assert all(entry["exit_code"] != 0 for entry in data["health_log"]), data["health_log"]
    assert isinstance(data["logs"], list)
    assert steps(data["timeline"])[-4:] == ["new_started", "failed", "new_removed", "old_started"]
    step = {entry["step"]: entry for entry in data["timeline"]}
    assert step["old_started"]["id"] == old["Id"] and step["new_removed"]["id"] == data["new_id"]

    now = inspected(old["Id"])
    assert now["Name"] == old["Name"] and now["State"]["Running"] is True and now["Image"] == v2
    assert await served(port) == "v2"
    assert inspected(data["new_id"]) == {} and others_named(made["name"]) == []
    assert [c["Id"] for c in labelled(case_label)] == [old["Id"]]
    await until(lambda: len(audited(tmp_path)) == 1, "the audit line, written once the stream has ended")
    [line] = audited(tmp_path)
    assert line["result"] == (200 if stream else 409), line  # a stream's status went before its outcome was known
    assert line["detail"] == {**line["detail"], "old_id": old["Id"], "new_id": data["new_id"]}, line


async def test_image_names_another_reference_for_the_new_container(
    client: TestClient, case_label: str, repository: str
) -> None:
    v1 = publish(f"{repository}:latest", "v1")
    v2 = publish(f"{repository}:v2", "v2", keep_local=False)
    made = await create(client, case_label, image=f"{repository}:latest")
    status, body = await recreate(client, made["id"], {"image": f"{repository}:v2", "pull": "missing"})
    assert status == 200, body
    new = inspected(body["data"]["container"]["id"])
    assert (new["Config"]["Image"], new["Image"]) == (f"{repository}:v2", v2) and v2 != v1
    assert body["data"]["container"]["image"] == f"{repository}:v2"
    assert new["Config"]["Cmd"] == STOPPABLE and new["Name"] == f"/{made['name']}"


async def test_a_new_container_that_exits_is_a_409_with_its_last_log_lines(
    client: TestClient, case_label: str, repository: str
) -> None:
    """The new build's command fails a second after it starts, before its healthcheck could pass."""
    publish(f"{repository}:latest", "v1", more=f"CMD {json.dumps(STOPPABLE)}\n")
    made = await create(client, case_label, image=f"{repository}:latest", command=None, healthcheck=SLOW_HEALTH)
    old = inspected(made["id"])
    crashing = 'CMD ["sh", "-c", "echo starting v2; sleep 0.3; echo no database >&2; sleep 1; exit 3"]\n'
    publish(f"{repository}:latest", "v2", keep_local=False, more=crashing)
    status, body = await recreate(client, made["id"], {"pull": "always", "wait": "healthy"})
    assert (status, fields(body)) == (409, ["wait"]), body
    assert "3" in body["message"], body["message"]
    assert body["data"]["logs"] == ["starting v2", "no database"], body["data"]["logs"]
    now = inspected(old["Id"])
    assert now["State"]["Running"] is True and now["Name"] == old["Name"]
    assert [c["Id"] for c in labelled(case_label)] == [old["Id"]]


async def test_a_new_container_that_cannot_start_is_a_409_undone(
    client: TestClient, case_label: str, repository: str
) -> None:
    """The new build's entrypoint is not there: the engine cannot start it."""
    publish(f"{repository}:latest", "v1")
    made = await create(client, case_label, image=f"{repository}:latest")
    old = inspected(made["id"])
    publish(f"{repository}:latest", "v2", keep_local=False, more='ENTRYPOINT ["/no-such-program"]\n')
    status, body = await recreate(client, made["id"], {"pull": "always"})
    assert steps(body["data"]["timeline"])[-4:] == ["old_stopped", "failed", "new_removed", "old_started"]
    now = inspected(old["Id"])
    assert now["State"]["Running"] is True and now["Name"] == old["Name"]
    assert [c["Id"] for c in labelled(case_label)] == [old["Id"]] and others_named(made["name"]) == []
    assert (status, body["errors"] != []) == (409, True), (status, body["message"], body["errors"])


async def test_a_new_container_not_healthy_within_the_timeout_is_a_504_undone(
    client: TestClient, case_label: str
) -> None:
    made = await create(client, case_label, command=SLOW_READY, healthcheck=SLOW_HEALTH)
    old = inspected(made["id"])
    status, body = await recreate(client, made["id"], {"pull": "never", "wait": "healthy", "timeout": 1})
    assert status == 504 and fields(body) == ["timeout"], body
    assert steps(body["data"]["timeline"])[-3:] == ["failed", "new_removed", "old_started"]
    now = inspected(old["Id"])
    assert now["Name"] == old["Name"] and now["State"]["Running"] is True
    assert [c["Id"] for c in labelled(case_label)] == [old["Id"]] and others_named(made["name"]) == []


async def test_an_image_the_registry_does_not_have_is_a_404_naming_image_untouched(
    client: TestClient, case_label: str, repository: str
) -> None:
    made = await create(client, case_label)
    before = inspected(made["id"])
    status, body = await recreate(client, made["id"], {"pull": "always", "image": f"{repository}:nothing-here"})
    assert status == 404 and fields(body) == ["image"], body
    assert_untouched(before, case_label)


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--privileged"], "privileged"),
        (["--cap-add", "NET_ADMIN"], "cap_add.0"),
        (["--device", "/dev/null:/dev/xnull"], "devices.0"),
        (["--network", "host"], "network_mode"),
        (["-v", "/tmp:/data:ro"], "volumes.0.host_path"),
    ],
    ids=["privileged", "cap-add", "device", "host-network", "bind-outside"],
)
async def test_a_docker_cli_container_the_policy_refuses_is_a_403_naming_it_untouched(
    client: TestClient, case_label: str, flags: list[str], field: str
) -> None:
    """The policy judges the rebuilt create as it judges POST /containers."""
    before = docker_run(case_label, *flags, start=flags != ["--privileged"])  # this engine cannot start that one
    status, body = await recreate(client, before["Id"], {"pull": "never"})
    assert status == 403 and field in fields(body), body
    assert_untouched(before, case_label)


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--cap-drop", "ALL"], "HostConfig.CapDrop"),
        (["--dns", "1.1.1.1"], "HostConfig.Dns"),
        (["--tmpfs", "/x"], "HostConfig.Tmpfs"),
        (["--add-host", "db:10.0.0.2"], "HostConfig.ExtraHosts"),
        (["-t"], "Config.Tty"),
    ],
    ids=["cap-drop", "dns", "tmpfs", "add-host", "tty"],
)
async def test_a_setting_moorage_cannot_express_is_a_409_naming_it_untouched(
    client: TestClient, case_label: str, flags: list[str], field: str
) -> None:
    before = docker_run(case_label, *flags)
    status, body = await recreate(client, before["Id"], {"pull": "never"})
    assert status == 409 and fields(body) == [field], body
    assert_untouched(before, case_label)


async def test_a_container_made_with_the_docker_cli_is_recreated_with_its_settings(
    client: TestClient, case_label: str, allowed_root: Path
) -> None:
    """What `docker run` was told is kept, and the engine's defaults for what it was not told are no setting to
    refuse; moorage's hardening and its own labels are added."""
    flags = [
        *("--env", "A=1", "--label", "app=web", "--restart", "on-failure:2", "--memory", "64m"),
        *("--memory-reservation", "32m", "--cpus", "0.5", "--pids-limit", "50", "-p", "127.0.0.1::8080"),
        *("-w", "/tmp", "-u", "nobody", "--hostname", "cli-host", "-v", f"{allowed_root / 'data'}:/data:ro"),
        *("--health-cmd", "true", "--health-interval", "1s", "--health-retries", "2"),
    ]
    before = docker_run(case_label, *flags)
    status, body = await recreate(client, before["Id"], {"pull": "never"})
    assert status == 200, body
    new = inspected(body["data"]["container"]["id"])
    kept, was = setting(new), setting(before)
    for own in (kept, was):
        own["labels"].pop(POLICY_LABEL, None)
    assert kept.pop("hardening") == [False, None, ["no-new-privileges:true"]] and was.pop("hardening")[0] is False
    assert kept == was
    assert new["State"]["Running"] is True and [c["Id"] for c in labelled(case_label)] == [new["Id"]]


async def test_wait_healthy_without_a_healthcheck_is_a_409_untouched(client: TestClient, case_label: str) -> None:
    made = await create(client, case_label)
    before = inspected(made["id"])
    status, body = await recreate(client, made["id"], {"pull": "never", "wait": "healthy"})
    assert status == 409 and fields(body) == ["wait"], body
    assert_untouched(before, case_label)


async def test_keep_old_keeps_it_stopped_under_a_name_of_its_own(client: TestClient, case_label: str) -> None:
    made = await create(client, case_label)
    status, body = await recreate(client, made["id"], {"pull": "never", "keep_old": True})
    assert status == 200, body
    data = body["data"]
    kept = {"id": made["id"], "name": f"{made['name']}-old-{made['id'][:12]}"}
    assert data["kept_old"] == kept and steps(data["timeline"])[-2] == "old_kept"
    old = inspected(made["id"])
    assert old["Name"] == f"/{kept['name']}" and old["State"]["Running"] is False
    assert inspected(made["name"])["Id"] == data["container"]["id"] != made["id"]


async def test_the_old_ids_alias_is_not_carried_to_the_new_container(client: TestClient, case_label: str) -> None:
    """The engine gives a container on a user-defined network its hostname (by default its short id) as an alias:
    the old one's would point at nothing once it is gone."""
    network = f"moorage-test-{case_label}"
    docker_cli("network", "create", network)
    made = await create(client, case_label, network=network, network_aliases=["web-alias"])
    status, body = await recreate(client, made["id"], {"pull": "never"})
    assert status == 200, body
    new = inspected(body["data"]["container"]["id"])
    aliases = set(new["NetworkSettings"]["Networks"][network]["Aliases"])
    assert "web-alias" in aliases and made["id"][:12] not in aliases, aliases
    assert new["Config"]["Hostname"] == new["Id"][:12]  # the hostname was the engine's default, and still is


async def test_a_container_on_two_networks_is_recreated_on_both_with_its_aliases_and_fixed_address(
    client: TestClient, case_label: str
) -> None:
    front, back = networks(case_label)
    docker_cli("network", "create", "--subnet", "10.231.173.0/24", front)
    docker_cli("network", "create", back)
    made = await create(
        client,
        case_label,
        hostname="rt-web",
        networks=[
            {"name": front, "aliases": ["web"], "ipv4_address": "10.231.173.10"},
            {"name": back, "aliases": ["api", "svc"]},
        ],
    )
    old = inspected(made["id"])
    status, body = await recreate(client, made["id"], {"pull": "never"})
    assert status == 200, body
    new = inspected(body["data"]["container"]["id"])
    assert setting(new) == setting(old)
    assert setting(new)["networks"] == {
        front: (["web"], {"IPv4Address": "10.231.173.10"}),
        back: (["api", "svc"], None),
    }
    assert new["HostConfig"]["NetworkMode"] == front
    assert new["NetworkSettings"]["Networks"][front]["IPAddress"] == "10.231.173.10"


async def test_a_docker_cli_container_connected_to_a_second_network_is_recreated_on_both(
    client: TestClient, case_label: str
) -> None:
    """`docker run --network --ip --network-alias`, then `docker network connect --alias`: the engine-given
    address on the second network is not carried over as a fixed one."""
    front, back = networks(case_label)
    docker_cli("network", "create", "--subnet", "10.231.174.0/24", front)
    docker_cli("network", "create", back)
    before = docker_run(case_label, "--network", front, "--ip", "10.231.174.10", "--network-alias", "web")
    docker_cli("network", "connect", "--alias", "api", back, before["Id"])
    before = inspected(before["Id"])
    status, body = await recreate(client, before["Id"], {"pull": "never"})
    assert status == 200, body
    new = inspected(body["data"]["container"]["id"])
    assert (
        setting(new)["networks"]
        == setting(before)["networks"]
        == {
            front: (["web"], {"IPv4Address": "10.231.174.10"}),
            back: (["api"], None),
        }
    )
    assert new["State"]["Running"] is True and new["HostConfig"]["NetworkMode"] == front


async def test_a_second_recreate_while_one_runs_is_a_409(client: TestClient, case_label: str) -> None:
    made = await create(client, case_label, command=SLOW_READY, healthcheck=SLOW_HEALTH)
    body = {"pull": "never", "wait": "healthy", "timeout": 60}
    answers = await asyncio.gather(recreate(client, made["id"], body), recreate(client, made["id"], body))
    assert sorted(status for status, _ in answers) == [200, 409], answers
    [refused] = [answer for status, answer in answers if status == 409]
    assert fields(refused) == ["container_id"], refused
    [survivor] = labelled(case_label)
    assert survivor["Name"] == f"/{made['name']}" and survivor["State"]["Running"] is True


async def test_a_recreate_by_name_while_one_by_id_runs_is_a_409(client: TestClient, case_label: str) -> None:
    """One recreate per container, however the path names it (a hook names it by name)."""
    made = await create(client, case_label, command=SLOW_READY, healthcheck=SLOW_HEALTH)
    body = {"pull": "never", "wait": "healthy", "timeout": 60}
    resp = await client.post(f"/api/v1/containers/{made['id']}/recreate", params={"stream": "true"}, json=body)
    assert resp.status == 200, await resp.text()
    first = json.loads(await resp.content.readline())
    assert first["step"] == "inspected", first
    for path in (made["id"], made["name"]):
        status, answer = await recreate(client, path, body)
        assert (status, fields(answer)) == (409, ["container_id"]), (path, answer)
    rest = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert rest[-1]["end"] == "done", rest


async def test_the_stream_is_one_ndjson_line_a_step_then_the_result(client: TestClient, case_label: str) -> None:
    made = await create(client, case_label)
    resp = await client.post(f"/api/v1/containers/{made['id']}/recreate", params={"stream": "true"}, json={})
    *lines, end = await streamed(resp)
    assert steps(lines) == STEPS_RUNNING
    assert all(isinstance(line["at"], str) and line["elapsed"] >= 0 for line in lines)
    assert end["end"] == "done", end
    result = end["result"]
    assert result["old_id"] == made["id"] and result["timeline"] == lines
    assert result["container"]["name"] == made["name"] and result["container"]["id"] == inspected(made["name"])["Id"]


@pytest.mark.parametrize(("body", "waited"), [({}, ["running"]), ({"wait": "none"}, [])], ids=["default", "none"])
async def test_the_default_or_no_wait_answers_in_the_envelope(
    client: TestClient, case_label: str, body: dict[str, Any], waited: list[str]
) -> None:
    """pull missing (the image is here), wait running by default; wait none has no step of its own."""
    made = await create(client, case_label)
    status, answer = await recreate(client, made["id"], body)
    assert status == 200 and answer["code"] == 200 and answer["message"], answer
    assert steps(answer["data"]["timeline"]) == [*STEPS_RUNNING[:5], *waited, *STEPS_RUNNING[6:]]
    assert answer["data"]["container"]["name"] == made["name"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pull": "sometimes"}, "pull"),
        ({"pull": None}, "pull"),
        ({"wait": "forever"}, "wait"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": 3601}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"timeout": 1.5}, "timeout"),
        ({"keep_old": "yes"}, "keep_old"),
        ({"image": "Not A Reference!"}, "image"),
        ({"image": ""}, "image"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_a_bad_body_is_a_400_naming_the_field_untouched(
    client: TestClient, make_container: MakeContainer, case_label: str, body: dict[str, Any], field: str
) -> None:
    before = inspected((await make_container(start=True))["Id"])
    status, answer = await recreate(client, before["Id"], body)
    assert (status, fields(answer)) == (400, [field]), answer
    assert_untouched(before, case_label)


async def test_an_unknown_container_is_a_404_a_bad_name_or_stream_a_400(
    client: TestClient, make_container: MakeContainer, case_label: str
) -> None:
    status, body = await recreate(client, "no-such-container-x", {})
    assert status == 404, body
    status, body = await recreate(client, "bad%20name", {})
    assert (status, fields(body)) == (400, ["container_id"]), body
    before = inspected((await make_container(start=True))["Id"])
    resp = await client.post(f"/api/v1/containers/{before['Id']}/recreate", params={"stream": "maybe"}, json={})
    assert resp.status == 400 and fields(await resp.json()) == ["stream"]
    assert_untouched(before, case_label)


async def settled(case_label: str, name: str, seconds: float, output: Callable[[], str] = str) -> dict[str, Any]:
    """Once there is one container of this test, of the name, running (within `seconds`), and still so a few
    seconds later: its inspect."""
    deadline = time.monotonic() + seconds
    while True:
        found = labelled(case_label)
        if len(found) == 1 and found[0]["Name"] == f"/{name}" and found[0]["State"]["Running"]:
            break
        assert time.monotonic() < deadline, ([(c["Name"], c["State"]["Status"]) for c in found], output())
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)
    [after] = labelled(case_label)
    assert after["Id"] == found[0]["Id"] and after["State"]["Running"] is True
    assert others_named(name) == []
    return after


def no_record_left(state_dir: Path) -> bool:
    return not list((state_dir / "recreates").glob("*.json"))


async def daemon_and_container(
    spawn_daemon: Callable[..., Daemon], tmp_path: Path, case_label: str, command: list[str], server: str = ""
) -> tuple[Daemon, str, str]:
    """A `moorage serve`, and a container it made that becomes healthy once /tmp/ready exists; the daemon, its
    config and the container's name."""
    config = daemon_config(tmp_path, server=server)
    daemon = spawn_daemon(config)
    name = f"rt-{case_label}"
    made = {"name": name, "image": TEST_IMAGE, "pull": "never", "command": command, "healthcheck": SLOW_HEALTH}
    async with (
        aiohttp.ClientSession(daemon.url, headers={"X-API-Key": plain_key("test-admin")}) as session,
        session.post("/api/v1/containers", json={**made, "labels": {TEST_LABEL: case_label}, "start": True}) as resp,
    ):
        assert resp.status == 201, await resp.text()
    return daemon, config, name


async def recreate_until(daemon: Daemon, name: str, step: str, then: Callable[[], Any], delay: float = 0) -> list[str]:
    """A streamed recreate (wait healthy) of `name`, and `then` done to the daemon `delay` s after `step` came;
    the steps seen."""
    seen: list[str] = []
    body = {"pull": "never", "wait": "healthy", "timeout": 60}
    async with (
        aiohttp.ClientSession(daemon.url, headers={"X-API-Key": plain_key("test-admin")}) as session,
        session.post(f"/api/v1/containers/{name}/recreate", params={"stream": "true"}, json=body) as resp,
    ):
        assert resp.status == 200, await resp.text()
        async for raw in resp.content:
            line = json.loads(raw)
            seen.append(line.get("step") or line.get("end") or "heartbeat")
            if line.get("step") == step:
                await asyncio.sleep(delay)
                then()
                break
    return seen


# The old container's process ignores SIGTERM (sleep as process 1): its stop takes the engine's 10 s.
SLOW_STOP = ["sh", "-c", "touch /tmp/ready; exec sleep 600"]


@pytest.mark.parametrize(
    ("step", "command", "delay"),
    [("new_started", SLOW_READY, 0), ("created", SLOW_READY, 0), ("healthy", SLOW_READY, 0), ("created", SLOW_STOP, 1)],
    ids=["new-started", "created", "healthy", "while-the-old-stops"],
)
async def test_a_recreate_cut_by_a_killed_daemon_ends_with_one_running_container_of_the_name(
    spawn_daemon: Any, case_label: str, tmp_path: Path, step: str, command: list[str], delay: float
) -> None:
    """Killed (SIGKILL) at a step of the recreate; the next start finishes or undoes it. The last case kills it
    while the engine is still stopping the old container, which it goes on doing."""
    daemon, config, name = await daemon_and_container(spawn_daemon, tmp_path, case_label, command)

    def kill() -> None:
        daemon.proc.kill()
        daemon.proc.wait(timeout=30)

    seen = await recreate_until(daemon, name, step, kill, delay)
    assert seen[-1] == step, seen
    if step == "new_started":
        assert len(labelled(case_label)) == 2  # cut half-way: the stopped old and the starting new
    again: Daemon = spawn_daemon(config)
    after = await settled(case_label, name, 60, again.output)
    if command is SLOW_STOP:  # past the end of the stop the engine went on with, it is still so
        await asyncio.sleep(12)
        assert inspected(after["Id"])["State"]["Running"] is True, inspected(after["Id"])["State"]
    assert no_record_left(tmp_path / "daemon-state")
    assert "Traceback" not in again.output()


async def test_a_recreate_cut_by_a_stop_of_the_daemon_is_settled_before_it_exits(
    spawn_daemon: Any, case_label: str, tmp_path: Path
) -> None:
    """SIGTERM while the new container is not healthy yet, with less grace than it needs: rolled back at once,
    and nothing is left for the next start to do."""
    daemon, _, name = await daemon_and_container(
        spawn_daemon, tmp_path, case_label, SLOW_READY, server="shutdown_timeout = 1\n"
    )
    old = inspected(name)
    seen = await recreate_until(daemon, name, "new_started", daemon.proc.terminate)
    assert daemon.proc.wait(timeout=30) == 0, daemon.output()
    assert seen[-1] == "new_started", seen
    after = await settled(case_label, name, 5, daemon.output)
    assert after["Id"] == old["Id"], "rolled back: the grace was shorter than the new container needed"
    assert no_record_left(tmp_path / "daemon-state")


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
async def test_a_recreate_whose_client_leaves_runs_to_its_end(
    client: TestClient, case_label: str, stream: bool
) -> None:
    made = await create(client, case_label, command=SLOW_READY, healthcheck=SLOW_HEALTH)
    body = {"pull": "never", "wait": "healthy", "timeout": 60}
    params = {"stream": "true"} if stream else {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1):
            resp = await client.post(f"/api/v1/containers/{made['id']}/recreate", params=params, json=body)
            await resp.read()
    after = await settled(case_label, made["name"], 30)
    assert after["Id"] != made["id"]
