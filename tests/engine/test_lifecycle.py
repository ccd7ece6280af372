"""Lifecycle actions and delete against the real engine: each answers with the state Docker then holds."""

from __future__ import annotations

from typing import Any

import aiodocker
import pytest

from ..helpers import MakeContainer, assert_error

ACTIONS = ("start", "stop", "restart", "pause", "unpause", "kill")


async def act(client: Any, container: dict[str, Any], action: str, query: str = "") -> tuple[int, dict[str, Any]]:
    resp = await client.post(f"/api/v1/containers/{container['Id']}/{action}{query}")
    return resp.status, await resp.json()


async def engine_state(docker: aiodocker.Docker, container: dict[str, Any]) -> dict[str, Any]:
    return (await docker.containers.container(container["Id"]).show())["State"]


async def test_start_then_start_again_is_not_an_error(client: Any, make_container: MakeContainer, docker: Any) -> None:
    created = await make_container()
    status, body = await act(client, created, "start")
    assert status == 200 and body["data"]["status"] == "running"
    assert (await engine_state(docker, created))["Running"] is True
    status, body = await act(client, created, "start")
    assert status == 200 and body["data"]["state"]["running"] is True


async def test_stop_honours_the_timeout_and_stopping_again_is_not_an_error(
    client: Any, make_container: MakeContainer, docker: Any
) -> None:
    # sleep as PID 1 ignores SIGTERM, so the engine waits the whole timeout and then kills it.
    running = await make_container(start=True)
    status, body = await act(client, running, "stop", "?timeout=1")
    assert status == 200
    assert body["data"]["status"] == "exited" and body["data"]["state"]["exit_code"] == 137
    assert (await engine_state(docker, running))["Running"] is False
    status, body = await act(client, running, "stop")
    assert status == 200 and body["data"]["status"] == "exited"


async def test_restart_gives_a_new_start_time(client: Any, make_container: MakeContainer, docker: Any) -> None:
    running = await make_container(start=True)
    before = (await engine_state(docker, running))["StartedAt"]
    status, body = await act(client, running, "restart", "?timeout=0")
    assert status == 200 and body["data"]["status"] == "running"
    assert (await engine_state(docker, running))["StartedAt"] != before


async def test_pause_and_unpause(client: Any, make_container: MakeContainer, docker: Any) -> None:
    running = await make_container(start=True)
    status, body = await act(client, running, "pause")
    assert status == 200 and body["data"]["status"] == "paused" and body["data"]["state"]["paused"] is True
    assert (await engine_state(docker, running))["Paused"] is True
    status, body = await act(client, running, "unpause")
    assert status == 200 and body["data"]["status"] == "running"
    assert (await engine_state(docker, running))["Paused"] is False


async def test_pausing_a_stopped_container_is_a_409(client: Any, make_container: MakeContainer) -> None:
    created = await make_container()
    status, body = await act(client, created, "pause")
    assert status == 409
    assert_error(body, 409)
    assert "not running" in body["message"]


@pytest.mark.parametrize(("signal", "exit_code"), [(None, 137), ("TERM", 143), ("SIGTERM", 143), ("15", 143)])
async def test_kill_sends_the_signal(
    client: Any, make_container: MakeContainer, docker: Any, signal: str | None, exit_code: int
) -> None:
    # A shell with a TERM trap would swallow it; this one exits by the signal's default action.
    running = await make_container(start=True, cmd=["sh", "-c", "trap 'exit 143' TERM; sleep 600 & wait"])
    status, _ = await act(client, running, "kill", f"?signal={signal}" if signal else "")
    assert status == 200
    await docker.containers.container(running["Id"]).wait()
    assert (await engine_state(docker, running))["ExitCode"] == exit_code


async def test_killing_a_stopped_container_is_a_409(client: Any, make_container: MakeContainer) -> None:
    status, body = await act(client, await make_container(), "kill")
    assert status == 409
    assert_error(body, 409)


@pytest.mark.parametrize(
    ("action", "query", "field"),
    [
        ("stop", "?timeout=-1", "timeout"),
        ("stop", "?timeout=soon", "timeout"),
        ("restart", "?timeout=3601", "timeout"),
        ("kill", "?signal=SIGNOPE", "signal"),
        ("kill", "?signal=65", "signal"),
        ("kill", "?signal=0", "signal"),
        ("start", "?detach=1", "detach"),
        ("pause", "?x=1", "x"),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(
    client: Any, make_container: MakeContainer, action: str, query: str, field: str
) -> None:
    created = await make_container()
    status, body = await act(client, created, action, query)
    assert status == 400
    assert [e["field"] for e in body["errors"]] == [field]


@pytest.mark.parametrize("action", ACTIONS)
async def test_unknown_container_is_a_404_for_every_action(client: Any, action: str) -> None:
    status, body = await act(client, {"Id": "no-such-container-x"}, action)
    assert status == 404
    assert_error(body, 404)


async def test_delete_by_name_answers_the_full_id(client: Any, make_container: MakeContainer, docker: Any) -> None:
    created = await make_container()
    resp = await client.delete(f"/api/v1/containers/{created['Name'].lstrip('/')}")
    assert resp.status == 200
    assert (await resp.json())["data"] == {"id": created["Id"]}
    with pytest.raises(aiodocker.DockerError) as gone:
        await docker.containers.container(created["Id"]).show()
    assert gone.value.status == 404


async def test_deleting_a_running_container_needs_force(
    client: Any, make_container: MakeContainer, docker: Any
) -> None:
    running = await make_container(start=True)
    resp = await client.delete(f"/api/v1/containers/{running['Id']}")
    assert resp.status == 409
    assert_error(await resp.json(), 409)
    assert (await engine_state(docker, running))["Running"] is True
    resp = await client.delete(f"/api/v1/containers/{running['Id']}?force=true")
    assert resp.status == 200


async def test_delete_with_volumes_removes_anonymous_volumes(
    client: Any, make_container: MakeContainer, docker: Any
) -> None:
    created = await make_container(Volumes={"/scratch": {}})
    [mount] = created["Mounts"]
    resp = await client.delete(f"/api/v1/containers/{created['Id']}?volumes=true")
    assert resp.status == 200
    names = {v["Name"] for v in (await docker.volumes.list())["Volumes"] or []}
    assert mount["Name"] not in names


async def test_delete_unknown_is_a_404_and_a_bad_flag_a_400(client: Any) -> None:
    assert (await client.delete("/api/v1/containers/no-such-container-x")).status == 404
    resp = await client.delete("/api/v1/containers/whatever?force=perhaps")
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == ["force"]
