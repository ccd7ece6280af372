"""The client's address: the TCP peer's, or, from a trusted reverse proxy, the one its forwarding header names.

Behind a proxy every peer is the proxy, so the failed-auth limiter would give all its clients one budget and
the audit would name the proxy. A forwarding header is believed only from a peer in `[server] trusted_proxies`,
and only as far as trusted proxies vouch for it: the chain is read from the right, and the first address that
is not a trusted proxy is the client (whatever stands left of it, the client may have written itself). A hop
that is not an address (`unknown`, an obfuscated name, garbage) ends the walk at the trusted proxy that passed
it on: the proxy is then the client, a budget its clients share, rather than a 400 that a misconfigured proxy
would turn into an outage.

aiohttp-remotes (aio-libs) does not fit: its strict modes answer 400 to a peer that is not a listed proxy (the
local CLI, a health probe) and take the proxies as a chain of fixed length; its filtered mode believes the
header from any peer, which lets every direct client pick its own address.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from moorage.access.clientaddr import client_address, unmapped
from moorage.settings import FORWARDED, X_FORWARDED_FOR, IPNetwork

# The client a trusted proxy named, on the request aiohttp made (for the access log, which is handed that one).
FORWARDED_CLIENT = web.RequestKey("forwarded_client", str)


def forwarded_chain(request: web.Request, header: str) -> list[str]:
    """The hops `header` lists, leftmost first; several X-Forwarded-For headers are one list, in order."""
    if header == FORWARDED:
        return [element.get("for", "") for element in request.forwarded]
    return [hop for value in request.headers.getall(X_FORWARDED_FOR, ()) for hop in value.split(",")]


def forwarded_client(trusted: Sequence[IPNetwork], header: str) -> Middleware:
    """A middleware giving the handlers after it (audit, limiter) the client's address as `request.remote`.

    Only the one header the proxy is configured to write is read: a proxy passes on the other as the client
    sent it, so reading both would let a client name itself."""

    @web.middleware
    async def from_proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            peer = unmapped(ip_address(request.remote or ""))
        except ValueError:
            return await handler(request)
        client = str(client_address(peer, forwarded_chain(request, header), trusted))
        if client == request.remote:
            return await handler(request)
        # The access log is handed the request aiohttp made, not this clone: tell it the client too.
        request[FORWARDED_CLIENT] = client
        return await handler(request.clone(remote=client))

    return from_proxy
