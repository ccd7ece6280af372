"""Client addresses: how a forwarding header's hops are read, which hop is the client, and the group of
addresses one caller could rotate through (what the limiter and the audit count by). The middleware that
believes a trusted proxy is web/proxies.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address

from moorage.settings import IPNetwork

IPAddress = IPv4Address | IPv6Address
IPV6_PREFIX = 64


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
