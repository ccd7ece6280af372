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
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

X_FORWARDED_FOR = "X-Forwarded-For"
FORWARDED = "Forwarded"
HEADERS = (X_FORWARDED_FOR, FORWARDED)
IPV6_PREFIX = 64
# The client a trusted proxy named, on the request aiohttp made (keys.py would import this module's importers).
FORWARDED_CLIENT = web.RequestKey("forwarded_client", str)


def unmapped(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as the IPv4 address it is."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_group(address: str | None) -> str:
    """The group of addresses that one caller can rotate its source address through, as one name: all of
    loopback (127.0.0.0/8, ::1 and their IPv4-mapped forms), or an IPv6 client's /64 (the smallest network a
    host is given); any other address is its own. The failed-auth limiter and the audit's folding count by it."""
    try:
        ip = unmapped(ip_address(address or ""))
    except ValueError:
        return address or "unknown"
    if ip.is_loopback:
        return "loopback"
    if isinstance(ip, IPv6Address):
        return str(IPv6Network((int(ip), IPV6_PREFIX), strict=False))
    return str(ip)


def parse_node(text: str) -> IPAddress | None:
    """An address as a forwarding header writes it (`1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`),
    or None when it is not one."""
    text = text.strip()
    port = ""
    if text.startswith("["):
        text, bracket, after = text[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            return None
        port = after[1:] if after else ""
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        port = port or "-"  # "1.2.3.4:" names no port
    if port and not port.isdigit():
        return None
    try:
        return unmapped(ip_address(text))
    except ValueError:
        return None


def client_address(peer: IPAddress, chain: Sequence[str], trusted: Sequence[IPNetwork]) -> IPAddress:
    """The client behind `peer`: `chain` (the forwarded hops, leftmost first) read from the right while the
    address reached is a trusted proxy."""
    address = peer
    for hop in reversed(chain):
        if not any(address in network for network in trusted):
            return address
        forwarded = parse_node(hop)
        if forwarded is None:
            return address
        address = forwarded
    return address


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
