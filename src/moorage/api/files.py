"""A container's files copied out and in, as `docker cp` does, through the engine's archive API, under the
[files] path policy: a file as a download, a directory as a tar, a path's stat; a tar or one file written in."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator

from aiodocker.exceptions import DockerError
from aiohttp import hdrs, web

from moorage.api.paths import API_PREFIX
from moorage.containers.files import (
    PathStat,
    check_path,
    checked_copy,
    denied_below,
    not_found,
    resolve,
    single_file_copy,
    stat,
    stat_headers,
    stat_of,
)
from moorage.engine.archive import first_file
from moorage.engine.client import engine_json, engine_put
from moorage.errors import BadRequest, Conflict, Forbidden, UnsupportedMediaType
from moorage.schemas.containers import ContainerRef
from moorage.schemas.files import FilesPutQuery, FilesQuery, WrittenSchema
from moorage.settings import Permission
from moorage.web.middlewares import write_audit
from moorage.web.operations import ENGINE, STREAM, documented
from moorage.web.requests import copy_body, load_query
from moorage.web.responses import attached, ok, serve_stream
from moorage.web.roles import requires
from moorage.web.scoping import container_ref
from moorage.web.state import AUDIT_DETAIL, docker, live, stream_slot, streams

routes = web.RouteTableDef()
TAR = "application/x-tar"
OCTET = "application/octet-stream"
_BINARY = {"type": "string", "format": "binary"}
_WRITTEN = WrittenSchema()


async def located(request: web.Request, ref: str, path: str) -> tuple[str, str, PathStat]:
    """The container's id, where the engine resolves `path` to, and the stat of `path` itself: 404 for an
    unknown container (naming it) or a path with nothing there (naming `path`), 403 for one the policy refuses,
    judged where it leads, before anything of it is read or written."""
    container_id = (await engine_json(docker(request), f"containers/{ref}/json"))["Id"]
    resolved, found = await resolve(docker(request), container_id, path)
    check_path(path, resolved, live(request).files)
    if found is None:
        raise not_found(path)
    return container_id, resolved, found


@routes.get(f"{API_PREFIX}/containers/{{container_id}}/files")
@requires(Permission.CONTAINERS_FILES)
@documented(
    "A file of a container as a download, or a directory as a tar (docker cp out)",
    tag="containers",
    path=ContainerRef,
    query=FilesQuery,
    raw={OCTET: _BINARY, TAR: _BINARY},
    errors=(404, *STREAM),
)
async def get_container_files(request: web.Request) -> web.StreamResponse:
    """A regular file is answered as itself (application/octet-stream, as an attachment, with its
    Content-Length), read out of the engine's tar as it streams; a directory, or any path asked with `Accept:
    application/x-tar`, as the engine's tar (a directory that holds a denied path is a 403). A symlink is
    followed (the engine resolves it in the container). The X-Moorage-File-* headers give the stat of what is
    sent; HEAD answers the headers a GET would get, but X-Moorage-File-* of the path's own stat (a symlink's with
    its Link-Target), and no body. A stopped container can be read too. A read is audited: it is root's read of
    the container's files."""
    ref = await container_ref(request)
    path = load_query(request, FilesQuery)["path"]
    container_id, resolved, found = await located(request, ref, path)
    if request.method == hdrs.METH_HEAD:
        target = await stat(docker(request), container_id, resolved) if found.link_target else found
        media, headers = download(request, target or found)
        if media == OCTET and target is not None:
            headers[hdrs.CONTENT_LENGTH] = str(target.size)
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: media, **headers, **stat_headers(found, resolved)})
        await response.prepare(request)
        await response.write_eof()
        return response
    with stream_slot(request, OCTET):
        try:
            async with streams(request).request(
                "GET", f"/containers/{container_id}/archive", {"path": resolved}
            ) as engine:
                target = stat_of(engine.headers)
                media, headers = download(request, target)
                if media == TAR and (denied := denied_below(resolved, live(request).files)) is not None:
                    reason = f"{resolved} holds {denied}, which [files] denied_paths refuses"
                    raise Forbidden(f"path refused: {reason}", errors=[{"field": "path", "message": reason}])
                if media == TAR:
                    body = engine.content.iter_any()
                else:
                    size, body = await first_file(engine.content.iter_any())
                    headers[hdrs.CONTENT_LENGTH] = str(size)
                sent = [0]
                headers.update(stat_headers(target, resolved))
                response = await serve_stream(request, streams(request), media, counted(body, sent), headers=headers)
        except DockerError as err:
            if err.status == 404:
                raise not_found(path) from None  # a symlink that leads nowhere, or a path just removed
            raise
    # A GET the middleware does not audit, but root's read of a container's file.
    detail = {"path": resolved, "type": target.kind, "as": "tar" if media == TAR else "file", "bytes": sent[0]}
    write_audit(request, 200, detail)
    return response


def download(request: web.Request, target: PathStat) -> tuple[str, dict[str, str]]:
    """The media type `target` is sent as (itself for a regular file unless a tar is asked for, else a tar),
    and its Content-Disposition."""
    if target.kind == "file" and TAR not in request.headers.get(hdrs.ACCEPT, ""):
        return OCTET, attached(target.name)
    return TAR, attached(f"{target.name}.tar")


async def counted(chunks: AsyncIterator[bytes], sent: list[int]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        sent[0] += len(chunk)
        yield chunk


@routes.put(f"{API_PREFIX}/containers/{{container_id}}/files")
@requires(Permission.CONTAINERS_FILES)
@documented(
    "Write a tar, or one file, into a directory of a container (docker cp in)",
    tag="containers",
    path=ContainerRef,
    query=FilesPutQuery,
    raw_body={TAR: _BINARY, OCTET: _BINARY},
    data=WrittenSchema,
    errors=(404, 409, *ENGINE),
)
async def put_container_files(request: web.Request) -> web.Response:
    """The body is a tar (application/x-tar, uncompressed) extracted into the directory `path`, or the bytes of
    one file (application/octet-stream) written as `path`/`name`. At most [files] max_upload bytes (413). Every
    tar entry is checked before the engine is called: an absolute name, a `..` component, a symlink or hard
    link leaving `path`, a device or fifo, a path the policy refuses is a 400 naming the entry (`entries.N`),
    and nothing is written. The engine then extracts the archive as it was checked (written again by moorage),
    into `path` as resolved in the container."""
    ref = await container_ref(request)
    query = load_query(request, FilesPutQuery)
    name = query.get("name")
    media_type(request, name)
    container_id, resolved, found = await located(request, ref, query["path"])
    request[AUDIT_DETAIL] = {"path": resolved}
    if found.link_target:
        found = await stat(docker(request), container_id, resolved) or found
    if found.kind != "directory":
        raise BadRequest(
            f"not a directory in the container: {query['path']}",
            errors=[{"field": "path", "message": "not a directory"}],
        )
    files = live(request).files
    with tempfile.TemporaryFile() as upload, tempfile.TemporaryFile() as archive:
        await copy_body(request, upload, files.max_upload, "[files] max_upload")
        upload.seek(0)
        if name is None:
            checked = await asyncio.to_thread(checked_copy, upload, archive, resolved, files)
        else:
            checked = await asyncio.to_thread(single_file_copy, upload, archive, name, resolved, files)
        archive.seek(0)
        try:
            await engine_put(docker(request), f"containers/{container_id}/archive", {"path": resolved}, archive, TAR)
        except DockerError as err:
            if err.status == 403:  # the engine's word for a read-only root file system
                raise Conflict(str(err.message), errors=[{"field": "path", "message": "read-only"}]) from None
            raise
    written = {"path": resolved, "entries": checked.entries, "bytes": checked.bytes}
    request[AUDIT_DETAIL] = written
    return ok(_WRITTEN.dump(written))


def media_type(request: web.Request, name: str | None) -> None:
    """A tar, or with `name` a single file's bytes: 415 for another body, 400 for a `name` that does not fit."""
    if request.content_type not in (TAR, OCTET):
        raise UnsupportedMediaType(
            f"Content-Type must be {TAR} or {OCTET} (with name=), not {request.content_type}",
            errors=[{"field": "Content-Type", "message": f"must be {TAR} or {OCTET}"}],
        )
    if request.content_type == OCTET and name is None:
        raise BadRequest(
            f"a {OCTET} body is one file: its name is needed", errors=[{"field": "name", "message": "required"}]
        )
    if request.content_type == TAR and name is not None:
        raise BadRequest(
            f"name is for a single file ({OCTET}); a tar names its own entries",
            errors=[{"field": "name", "message": f"only with {OCTET}"}],
        )
