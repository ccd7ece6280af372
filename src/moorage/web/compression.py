"""gzip of JSON answers for clients that accept it, and of downloads; other streams never (they are written as they
come, and a gzip stream holds bytes back until it has enough to pack).

aiohttp's own `enable_compression` always uses zlib's default level, four times the CPU of level 1 for a
tenth fewer bytes on a large list, and reads Accept-Encoding without its q-values (`gzip;q=0` would get gzip).
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Mapping

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from moorage.web import responses

# gzip from about 1 KB: below, the header and the CPU outweigh the bytes saved. Level 1: on a 500-container list
# (239 KB) it takes 1.3 ms for 24.5 % of the size, where zlib's default (6, which aiohttp's enable_compression
# always uses) takes 4.3 ms for 22.5 %. Above 16 KB in a thread (aiohttp: above 4 KB): there a hand-off costs
# about what compressing inline does (190 us, on 2 busy cores), and a large answer does not stall the loop.
_COMPRESS_FROM = 1024
_GZIP_LEVEL = 1
_COMPRESS_IN_THREAD = 16 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS


@web.middleware
async def compress_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON answers over about 1 KB gzipped for a client that accepts it; streams never (they are prepared,
    written as they come, before this sees them)."""
    response = await handler(request)
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes) or len(body) < _COMPRESS_FROM or response.content_type != responses.JSON:
        return response
    response.headers.add(hdrs.VARY, hdrs.ACCEPT_ENCODING)
    accepted = request.headers.get(hdrs.ACCEPT_ENCODING)
    if not accepted or hdrs.CONTENT_ENCODING in response.headers or not accepts_gzip(accepted):
        return response
    if len(body) > _COMPRESS_IN_THREAD:
        response.body = await asyncio.to_thread(zlib.compress, body, _GZIP_LEVEL, _GZIP_WBITS)
    else:
        response.body = zlib.compress(body, _GZIP_LEVEL, _GZIP_WBITS)
    response.headers[hdrs.CONTENT_ENCODING] = "gzip"
    return response


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether Accept-Encoding admits gzip (RFC 9110 12.5.3): named, or `*`, with a q-value above 0."""
    weights: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        coding, *params = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                weight = _qvalue(value)
        weights.setdefault(coding, weight)
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def _qvalue(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def gzipped_if_accepted(
    request: web.Request, chunks: AsyncIterator[bytes], headers: Mapping[str, str]
) -> tuple[AsyncIterator[bytes], dict[str, str]]:
    """A download's body and headers: gzipped as it is written when the client accepts gzip. A file of any size
    is packed a chunk at a time, so memory stays flat."""
    varied = {**headers, hdrs.VARY: hdrs.ACCEPT_ENCODING}
    if not accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, "")):
        return chunks, varied
    return _gzipped(chunks), {**varied, hdrs.CONTENT_ENCODING: "gzip"}


async def _gzipped(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    packer = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            if packed := packer.compress(chunk):
                yield packed
    yield packer.flush()
