"""Logs as Server-Sent Events against the real engine: ids a reconnecting client resumes from exactly, an end
event saying why, and a real browser's EventSource that is cut mid-stream and still reads every line once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiodocker
import orjson
from aiohttp.test_utils import TestClient

from ..browser import run_in_page
from ..helpers import MakeContainer, finished, until

SSE = {"Accept": "text/event-stream"}
SCRIPT = "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done"


def events(body: str) -> list[dict[str, Any]]:
    """The body's events as EventSource reads them: fields per blank-line-separated block, comments dropped."""
    found = []
    for block in body.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if fields:
            found.append(fields)
    return found


async def read_events(client: TestClient, path: str, **headers: str) -> list[dict[str, Any]]:
    resp = await client.get(path, headers={**SSE, **headers})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    return events(await resp.text())


async def test_lines_come_as_events_with_ids_and_the_stream_ends_with_why(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, "echo one; echo two >&2; exit 3")
    got = await read_events(client, f"/api/v1/containers/{container}/logs?follow=true")
    assert got[0] == {"retry": "1000"}
    lines = [e for e in got if e.get("event") == "line"]
    items = [orjson.loads(e["data"]) for e in lines]
    assert sorted((item["stream"], item["line"]) for item in items) == [("stderr", "two"), ("stdout", "one")]
    assert [e["id"] for e in lines] == [f"{item['timestamp']}:0" for item in items]
    assert got[-1]["event"] == "end"
    assert orjson.loads(got[-1]["data"]) == {"end": "container_stopped", "exit_code": 3}


async def test_last_event_id_resumes_after_exactly_that_line(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, SCRIPT)
    path = f"/api/v1/containers/{container}/logs?format=sse"
    whole = [e for e in await read_events(client, path) if e.get("event") == "line"]
    path += "&tail=5"  # a resumed stream goes on from its id, whatever the first request's tail
    assert len(whole) == 300
    for cut in (0, 1, 150, 298, 299):
        again = await read_events(client, path, **{"Last-Event-ID": whole[cut]["id"]})
        assert [e["id"] for e in again if e.get("event") == "line"] == [e["id"] for e in whole[cut + 1 :]], cut


async def test_an_id_not_of_this_stream_is_a_400_naming_the_header(
    client: TestClient, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    container = await finished(make_container, docker, "echo one")
    resp = await client.get(
        f"/api/v1/containers/{container}/logs?format=sse", headers={**SSE, "Last-Event-ID": "yesterday:1"}
    )
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == ["Last-Event-ID"]


class CuttingProxy:
    """A TCP hop in front of moorage, as a load balancer is, that can drop every open connection at once."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers |= {writer, up_writer}
        await asyncio.gather(self.pipe(reader, up_writer), self.pipe(up_reader, writer))

    def cut(self) -> int:
        cut = len(self.writers) // 2
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        return cut

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        async with self.server:
            yield f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


PAGE = """async (path) => new Promise((resolve) => {
    const source = new EventSource(path), lines = [];
    let errors = 0;
    source.addEventListener("line", (e) => lines.push(JSON.parse(e.data).line));
    source.addEventListener("end", (e) => { source.close(); resolve({lines, errors, end: JSON.parse(e.data)}); });
    source.onerror = () => { errors += 1; };
})"""


async def test_a_browsers_event_source_cut_twice_reads_every_line_once(
    client: TestClient, api_key: str, make_container: MakeContainer, docker: aiodocker.Docker
) -> None:
    """The key comes as a proxy in front of a browser would add it: EventSource sends no header of its own."""
    script = "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); usleep 20000; done"
    created = await make_container(cmd=["sh", "-c", script])
    proxy = CuttingProxy(client.port)
    async with proxy.running() as origin:
        path = f"/api/v1/containers/{created['Id']}/logs?follow=true&format=sse"
        page = asyncio.ensure_future(run_in_page(origin, PAGE, arg=path, headers={"X-API-Key": api_key}, time_limit=30))
        await until(lambda: bool(proxy.writers), "the page's first connection", 30)
        await docker.containers.container(created["Id"]).start()
        cuts = 0
        for _ in range(2):
            await until(lambda: bool(proxy.writers), "the page's connection", 10)
            await asyncio.sleep(0.8)
            cuts += proxy.cut()
        result = await page
    assert cuts >= 2
    assert result["errors"] >= 2
    assert result["lines"] == [f"line {i}" for i in range(200)]
    assert result["end"] == {"end": "container_stopped", "exit_code": 0}
