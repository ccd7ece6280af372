"""Files copied out of and into containers (GET, HEAD, PUT /containers/{id}/files) against the real engine: what
a user would check with `docker exec cat` and `ls`, the path policy judged where a path leads, every refused tar
entry with nothing written, the upload cap, the audit lines, and the roles."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ..helpers import ROLES, MakeContainer, app_client, assert_error, docker_cli, key_headers

ADMIN = key_headers("admin-key")
LONG = "n" * 150  # a name the engine's tar writes in a PAX header
# A tree for a directory read, a symlink out to /proc and one into a file, an empty directory to write into.
SETUP = (
    "mkdir -p /srv/tree/sub /srv/in && echo one > /srv/tree/a.txt && echo two > /srv/tree/sub/b.txt"
    " && ln -s /proc /tmp/p && ln -s /etc/hostname /tmp/hn && chmod 0750 /srv/tree"
    " && head -c 3000000 /dev/urandom > /srv/big.bin && ln -s /srv/in /srv/link"
    f" && echo long > /srv/{LONG}"
)


def files_url(container: str, path: str, **more: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in {"path": path, **more}.items())
    return f"/api/v1/containers/{container}/files?{query}"


def in_container(container: str, *command: str) -> bytes:
    return subprocess.run(["docker", "exec", container, *command], capture_output=True, check=True).stdout


def listing(container: str, directory: str) -> list[str]:
    return sorted(in_container(container, "find", directory).decode().split())


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]


@pytest.fixture
async def admin(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path, files={"max_upload": 4 * 1024 * 1024})


@pytest.fixture
async def box(make_container: MakeContainer) -> str:
    made = await make_container(start=True)
    in_container(made["Id"], "sh", "-c", SETUP)
    return str(made["Id"])


async def test_a_file_out_is_the_file_as_cat_shows_it(admin: TestClient, box: str, tmp_path: Path) -> None:
    # A small one, one of several reads, a symlink, one behind a PAX header.
    for path in ("/etc/hostname", "/srv/big.bin", "/tmp/hn", f"/srv/{LONG}"):
        resp = await admin.get(files_url(box, path), headers=ADMIN)
        assert resp.status == 200, await resp.text()
        body = await resp.read()
        real = path if path != "/tmp/hn" else "/etc/hostname"
        assert body == in_container(box, "cat", real)
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.headers["Content-Length"] == str(len(body))
        assert resp.headers["Content-Disposition"] == f'attachment; filename="{real.rsplit("/", 1)[1]}"'
        assert resp.headers["X-Moorage-File-Path"] == real
    read = [line for line in audit_lines(tmp_path) if line["method"] == "GET"]
    assert [line["detail"]["path"] for line in read] == [
        "/etc/hostname",
        "/srv/big.bin",
        "/etc/hostname",
        f"/srv/{LONG}",
    ]
    assert read[1]["detail"] == {"path": "/srv/big.bin", "type": "file", "as": "file", "bytes": 3000000}
    assert read[1]["key"] == "admin-key" and read[1]["target"] == box and read[1]["result"] == 200


async def test_a_directory_out_is_a_tar_of_it(admin: TestClient, box: str) -> None:
    resp = await admin.get(files_url(box, "/srv/tree"), headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/x-tar"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="tree.tar"'
    with tarfile.open(fileobj=io.BytesIO(await resp.read())) as archive:
        names = sorted(archive.getnames())
        assert archive.extractfile("tree/sub/b.txt").read() == b"two\n"  # type: ignore[union-attr]
    assert names == ["tree", "tree/a.txt", "tree/sub", "tree/sub/b.txt"]
    # A file asked for as a tar comes as one.
    resp = await admin.get(files_url(box, "/etc/hostname"), headers={**ADMIN, "Accept": "application/x-tar"})
    with tarfile.open(fileobj=io.BytesIO(await resp.read())) as archive:
        assert archive.extractfile("hostname").read() == in_container(box, "cat", "/etc/hostname")  # type: ignore[union-attr]


async def test_head_gives_the_stat_without_a_body(admin: TestClient, box: str) -> None:
    resp = await admin.head(files_url(box, "/srv/tree"), headers=ADMIN)
    assert resp.status == 200 and await resp.read() == b""
    assert resp.headers["X-Moorage-File-Type"] == "directory"
    assert resp.headers["X-Moorage-File-Mode"] == "0750"
    shown = in_container(box, "stat", "-c", "%y", "/srv/tree").decode()  # 2026-12-02 03:13:17.322060416 +0000
    assert resp.headers["X-Moorage-File-Mtime"][:19] == shown[:19].replace(" ", "T")
    assert resp.headers["Content-Type"] == "application/x-tar" and "Content-Length" not in resp.headers
    resp = await admin.head(files_url(box, "/srv/big.bin"), headers=ADMIN)
    assert resp.headers["X-Moorage-File-Type"] == "file" and resp.headers["X-Moorage-File-Size"] == "3000000"
    assert resp.headers["X-Moorage-File-Mode"] == "0644"
    assert resp.headers["Content-Type"] == "application/octet-stream" and resp.headers["Content-Length"] == "3000000"
    resp = await admin.head(files_url(box, "/tmp/hn"), headers=ADMIN)  # the link's own stat, the file's length
    assert resp.headers["X-Moorage-File-Type"] == "symlink"
    assert resp.headers["X-Moorage-File-Link-Target"] == "/etc/hostname"
    assert resp.headers["X-Moorage-File-Path"] == "/etc/hostname"
    assert resp.headers["Content-Length"] == str(len(in_container(box, "cat", "/etc/hostname")))


async def test_a_stopped_container_is_read_and_written_too(admin: TestClient, box: str) -> None:
    docker_cli("stop", "-t", "0", box)
    resp = await admin.get(files_url(box, "/srv/tree/a.txt"), headers=ADMIN)
    assert resp.status == 200 and await resp.read() == b"one\n"
    octet = {**ADMIN, "Content-Type": "application/octet-stream"}
    resp = await admin.put(files_url(box, "/srv/in", name="later"), data=b"while stopped", headers=octet)
    assert resp.status == 200
    docker_cli("start", box)
    assert in_container(box, "cat", "/srv/in/later") == b"while stopped"


async def test_a_file_in_is_what_cat_then_shows(admin: TestClient, box: str, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    resp = await admin.put(
        files_url(box, "/srv/in", name="blob.bin"),
        data=data,
        headers={**ADMIN, "Content-Type": "application/octet-stream"},
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["data"] == {"path": "/srv/in", "entries": 1, "bytes": len(data)}
    assert in_container(box, "cat", "/srv/in/blob.bin") == data
    put = [line for line in audit_lines(tmp_path) if line["method"] == "PUT"]
    assert put[-1]["detail"] == {"path": "/srv/in", "entries": 1, "bytes": len(data)} and put[-1]["result"] == 200


async def test_a_tar_in_is_extracted_where_asked(admin: TestClient, box: str, tmp_path: Path) -> None:
    body = tar_of(
        (entry("conf", tarfile.DIRTYPE), None),
        (entry("conf/app.ini"), b"[app]\nx = 1\n"),
        (entry("conf/link", tarfile.SYMTYPE, "app.ini"), None),
        (entry("conf/hard", tarfile.LNKTYPE, "conf/app.ini"), None),
    )
    # Through a symlink to the directory: written where it leads, and said so.
    resp = await admin.put(
        files_url(box, "/srv/link"), data=body, headers={**ADMIN, "Content-Type": "application/x-tar"}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["data"] == {"path": "/srv/in", "entries": 4, "bytes": 12}
    assert in_container(box, "cat", "/srv/in/conf/link") == b"[app]\nx = 1\n"
    assert in_container(box, "cat", "/srv/in/conf/hard") == b"[app]\nx = 1\n"
    put = [line for line in audit_lines(tmp_path) if line["method"] == "PUT"]
    assert put[-1]["detail"] == {"path": "/srv/in", "entries": 4, "bytes": 12}


@pytest.mark.parametrize(
    "path",
    ["/proc/cpuinfo", "/proc", "/sys", "/sys/kernel", "/tmp/p", "/tmp/p/cpuinfo", "/tmp/p/x/y"],
)
async def test_a_refused_path_is_403_naming_path(admin: TestClient, box: str, path: str) -> None:
    for method in ("GET", "HEAD"):
        resp = await admin.request(method, files_url(box, path), headers=ADMIN)
        assert resp.status == 403, (method, path)
        if method == "GET":
            body = await resp.json()
            assert_error(body, 403)
            assert [e["field"] for e in body["errors"]] == ["path"]
    resp = await admin.put(
        files_url(box, path, name="f"), data=b"x", headers={**ADMIN, "Content-Type": "application/octet-stream"}
    )
    assert resp.status == 403 and [e["field"] for e in (await resp.json())["errors"]] == ["path"]


async def test_a_directory_holding_a_denied_path_is_not_read(admin: TestClient, box: str) -> None:
    resp = await admin.get(files_url(box, "/"), headers=ADMIN)
    assert resp.status == 403
    body = await resp.json()
    assert [e["field"] for e in body["errors"]] == ["path"] and "/proc" in body["message"]
    resp = await admin.head(files_url(box, "/"), headers=ADMIN)  # its stat is no read of what it holds
    assert resp.status == 200 and resp.headers["X-Moorage-File-Type"] == "directory"


async def test_a_path_refused_by_the_configured_policy(aiohttp_client: Any, tmp_path: Path, box: str) -> None:
    client = await app_client(
        aiohttp_client, tmp_path, files={"allowed_paths": ["/srv"], "denied_paths": ["/srv/tree/sub"]}
    )
    assert (await client.get(files_url(box, "/srv/tree/a.txt"), headers=ADMIN)).status == 200
    for path in ("/etc/hostname", "/tmp/hn", "/srv/tree/sub/b.txt", "/srv/tree"):  # the last holds a denied one
        resp = await client.get(files_url(box, path), headers=ADMIN)
        assert resp.status == 403, path
    body = tar_of((entry("tree/sub/new"), b"x"))
    resp = await client.put(files_url(box, "/srv"), data=body, headers={**ADMIN, "Content-Type": "application/x-tar"})
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "entries.0"
    assert listing(box, "/srv/tree/sub") == ["/srv/tree/sub", "/srv/tree/sub/b.txt"]


@pytest.mark.parametrize("path", ["/srv/../etc/hostname", "/srv/in/..", "etc/hostname", ""])
async def test_a_path_with_dot_dot_or_relative_is_400(admin: TestClient, box: str, path: str) -> None:
    resp = await admin.get(files_url(box, path), headers=ADMIN)
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == ["path"]


REFUSED_ENTRIES = {
    "absolute": [(entry("/srv/in/abs"), b"x")],
    "dot-dot": [(entry("ok"), b"x"), (entry("a/../../escape"), b"x")],
    "symlink leaving": [(entry("ok"), b"x"), (entry("out", tarfile.SYMTYPE, "../../etc"), None)],
    "absolute symlink leaving": [(entry("out", tarfile.SYMTYPE, "/etc/passwd"), None)],
    "symlink into /proc": [(entry("p", tarfile.SYMTYPE, "/proc"), None)],
    "through a symlink": [(entry("here", tarfile.SYMTYPE, "."), None), (entry("here/up", tarfile.SYMTYPE, ".."), None)],
    "hardlink leaving": [(entry("ok"), b"x"), (entry("hard", tarfile.LNKTYPE, "../../etc/passwd"), None)],
    "absolute hardlink": [(entry("hard", tarfile.LNKTYPE, "/etc/passwd"), None)],
    "hardlink through a symlink": [
        (entry("l", tarfile.SYMTYPE, "."), None),
        (entry("h", tarfile.LNKTYPE, "l/x"), None),
    ],
    "device": [(entry("null", tarfile.CHRTYPE), None)],
    "fifo": [(entry("pipe", tarfile.FIFOTYPE), None)],
}


@pytest.mark.parametrize("case", list(REFUSED_ENTRIES))
async def test_a_refused_tar_entry_is_400_and_nothing_is_written(
    admin: TestClient, box: str, case: str, tmp_path: Path
) -> None:
    members = REFUSED_ENTRIES[case]
    resp = await admin.put(
        files_url(box, "/srv/in"), data=tar_of(*members), headers={**ADMIN, "Content-Type": "application/x-tar"}
    )
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert_error(body, 400)
    index = len(members) - 1
    assert body["errors"][0]["field"] == f"entries.{index}"
    assert members[index][0].name in body["message"]
    assert listing(box, "/srv/in") == ["/srv/in"]
    [refusal] = [line for line in audit_lines(tmp_path) if line["method"] == "PUT"]
    assert refusal["result"] == 400 and refusal["detail"] == {"path": "/srv/in"}


async def test_a_body_that_is_no_tar_or_lacks_a_name(admin: TestClient, box: str) -> None:
    tar_type, octet = (
        {**ADMIN, "Content-Type": "application/x-tar"},
        {**ADMIN, "Content-Type": "application/octet-stream"},
    )
    cases = [
        (files_url(box, "/srv/in"), b"not a tar" * 100, tar_type, 400, "body"),
        (files_url(box, "/srv/in"), b"x", octet, 400, "name"),
        (files_url(box, "/srv/in", name="f"), tar_of((entry("f"), b"x")), tar_type, 400, "name"),
        (files_url(box, "/srv/in", name=".."), b"x", octet, 400, "name"),
        (files_url(box, "/srv/in/none", name="f"), b"x", octet, 404, "path"),
        (files_url(box, "/etc/hostname", name="f"), b"x", octet, 400, "path"),
        (files_url(box, "/srv/in", name="f"), b"x", {**ADMIN, "Content-Type": "text/plain"}, 415, "Content-Type"),
    ]
    for url, data, headers, status, field in cases:
        resp = await admin.put(url, data=data, headers=headers)
        assert resp.status == status, (url, await resp.text())
        assert [e["field"] for e in (await resp.json())["errors"]] == [field]
    assert listing(box, "/srv/in") == ["/srv/in"]


async def test_a_body_past_max_upload_is_413(admin: TestClient, box: str) -> None:
    octet = {**ADMIN, "Content-Type": "application/octet-stream"}
    resp = await admin.put(
        files_url(box, "/srv/in", name="big"), data=io.BytesIO(b"x" * (4 * 1024 * 1024 + 1)), headers=octet
    )
    assert resp.status == 413
    assert [e["field"] for e in (await resp.json())["errors"]] == ["body"]

    async def chunks() -> Any:  # no Content-Length: counted as it comes
        for _ in range(5):
            yield b"x" * (1024 * 1024)

    resp = await admin.put(files_url(box, "/srv/in", name="big"), data=chunks(), headers=octet)
    assert resp.status == 413
    assert listing(box, "/srv/in") == ["/srv/in"]
    resp = await admin.put(
        files_url(box, "/srv/in", name="fits"), data=io.BytesIO(b"x" * (4 * 1024 * 1024)), headers=octet
    )
    assert resp.status == 200


async def test_unknown_container_and_missing_path_are_404(admin: TestClient, box: str) -> None:
    resp = await admin.get(files_url(f"absent-{uuid.uuid4().hex[:8]}", "/etc/hostname"), headers=ADMIN)
    assert resp.status == 404
    assert "container" in (await resp.json())["message"].lower()
    for method in ("GET", "HEAD"):
        resp = await admin.request(method, files_url(box, "/srv/none"), headers=ADMIN)
        assert resp.status == 404
        if method == "GET":
            body = await resp.json()
            assert [e["field"] for e in body["errors"]] == ["path"] and "/srv/none" in body["message"]


@pytest.mark.parametrize("key", ["viewer-key", "operator-key"])
async def test_only_an_admin_may(aiohttp_client: Any, tmp_path: Path, box: str, key: str) -> None:
    client = await app_client(aiohttp_client, tmp_path, ROLES)
    headers = key_headers(key)
    for method in ("GET", "HEAD", "PUT"):
        resp = await client.request(
            method,
            files_url(box, "/srv/in", **({"name": "f"} if method == "PUT" else {})),
            data=b"x" if method == "PUT" else None,
            headers={**headers, "Content-Type": "application/octet-stream"},
        )
        assert resp.status == 403, (key, method)
    assert listing(box, "/srv/in") == ["/srv/in"]
