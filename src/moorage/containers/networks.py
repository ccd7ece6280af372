"""User-defined networks within the host-safety policy: which drivers, which subnets, and which networks a
container may be connected to after create.

A bridge network is the host's own business only through its subnet: one that overlaps an address or a route of
the host's would shadow that part of the host's LAN for every container on it, and the host's own traffic to it.
macvlan and ipvlan put containers straight on the host's LAN, so every driver but bridge is the operator's
choice ([policy] allowed_network_drivers)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
from aiodocker.exceptions import DockerError

from moorage.containers.policy import Decision, judged
from moorage.containers.spec import endpoint_config
from moorage.engine.errors import from_docker_error
from moorage.errors import ApiError, BadRequest, Conflict, FieldError
from moorage.settings import PolicySettings

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The engine's own networks: removing one breaks every container that uses it, and nothing can make them again.
PREDEFINED = frozenset({"bridge", "host", "none"})
HOST_SUBNETS = "moorage.host_subnets"  # a new network's subnet overlaps none of the host's
# The predefined networks that are namespaces rather than networks: a container joins them only at create.
_NAMESPACE_DRIVERS = {"host": "host", "null": "none"}
# What the engine says (403 or 500) of a change that is the state's fault, not the request's.
_IN_USE = ("has active endpoints", "already exists in network", "is not connected to", "Address already in use")
# What it says (a 403) of a fixed address another container holds, and (a 400 or 500) of one it cannot give: outside
# the network's subnets, or on a network whose subnet it chose itself.
_ADDRESS_TAKEN = "Address already in use"
_ADDRESS_REFUSED = (
    "does not belong to any of this network's subnets",
    "user specified IP address is supported only when connecting to networks with user configured subnets",
)
# And (a 400) of aliases on a network that is not user-defined.
_ALIASES_REFUSED = "network-scoped alias is supported only"

_ROUTES_V4 = Path("/proc/net/route")
_ROUTES_V6 = Path("/proc/net/ipv6_route")


def _routes_v4(text: str) -> Iterator[IpNetwork]:
    """/proc/net/route: destination and mask as little-endian hex, after a header line."""
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 8:
            continue
        destination = ipaddress.IPv4Address(int(parts[1], 16).to_bytes(4, "little"))
        mask = ipaddress.IPv4Address(int(parts[7], 16).to_bytes(4, "little"))
        yield ipaddress.IPv4Network(f"{destination}/{mask}", strict=False)


def _routes_v6(text: str) -> Iterator[IpNetwork]:
    """/proc/net/ipv6_route: destination as 32 hex digits, then its prefix length in hex."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        yield ipaddress.IPv6Network((int(parts[0], 16), int(parts[1], 16)), strict=False)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # no IPv6 on this host, or no /proc: nothing routed that way
        return ""


def host_networks() -> list[IpNetwork]:
    """The networks of the host's own addresses and the destinations of its routes, default routes aside (a
    default route covers everything, and is what a private subnet is meant to be carved out of)."""
    found: list[IpNetwork] = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family not in (socket.AF_INET, socket.AF_INET6) or not address.netmask:
                continue
            ip = address.address.split("%", 1)[0]  # fe80::1%eth0
            # psutil writes an IPv6 netmask as an address (ffff:ffff::), which ip_network does not read.
            prefix = bin(int(ipaddress.ip_address(address.netmask))).count("1")
            found.append(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
    found.extend(_routes_v4(_read(_ROUTES_V4)))
    found.extend(_routes_v6(_read(_ROUTES_V6)))
    return [network for network in found if network.prefixlen > 0]


def _violation(field: str, message: str) -> FieldError:
    return {"field": field, "message": message}


def decide_create(driver: str, subnet: IpNetwork | None, policy: PolicySettings) -> list[Decision]:
    """The policy's decision on a network create's driver, and its subnet when it gives one."""
    allowed = ", ".join(sorted(policy.allowed_network_drivers)) or "none"
    refused = driver not in policy.allowed_network_drivers
    problem = f"network driver {driver} is not allowed (allowed: {allowed})" if refused else None
    decisions = [judged("driver", "policy.allowed_network_drivers", problem, f"network driver {driver} is allowed")]
    if subnet is not None:
        clash = next((net for net in host_networks() if net.version == subnet.version and net.overlaps(subnet)), None)
        problem = clash and f"{subnet} overlaps {clash}, an address or a route of the host's"
        decisions.append(judged("ipam.subnet", HOST_SUBNETS, problem, "overlaps no address or route of the host's"))
    return decisions


def check_attach(network: Mapping[str, Any], policy: PolicySettings) -> list[FieldError]:
    """Connecting to or disconnecting from the host's or the none network after create: refused as the create
    policy refuses the host's network (a container that joins the host's namespace reaches every host port)."""
    kind = _NAMESPACE_DRIVERS.get(network.get("Driver", ""))
    if kind == "host" and policy.allow_host_network:
        return []  # allowed at create: the engine's own answer, then
    if kind is not None:
        message = f"the {kind} network is a namespace: a container joins it only at create, with network_mode"
        return [_violation("network_id", message)]
    return []


def endpoint_problems(
    network: Mapping[str, Any], aliases: bool, ipv4_address: ipaddress.IPv4Address | None, endpoint: str
) -> list[FieldError]:
    """What the engine would refuse of a container's endpoint on `network` (inspected), named before it is asked
    (`endpoint` prefixes the fields): a namespace rather than a network, aliases or an address on the default
    bridge, an address outside the network's subnets (of a stopped container, the engine says so only at start)."""
    name = network.get("Name")
    kind = _NAMESPACE_DRIVERS.get(network.get("Driver", ""))
    if kind is not None:
        return [_violation(f"{endpoint}name", f"{name} is the {kind} network, a namespace: give it as network_mode")]
    found = []
    if name == "bridge":
        for field, given in (("aliases", aliases), ("ipv4_address", ipv4_address is not None)):
            if given:
                message = "needs a user-defined network: the default bridge takes none"
                found.append(_violation(f"{endpoint}{field}", message))
        return found
    configs = (network.get("IPAM") or {}).get("Config") or ()
    subnets = [ipaddress.ip_network(c["Subnet"], strict=False) for c in configs if c.get("Subnet")]
    subnets = [subnet for subnet in subnets if subnet.version == 4]
    if ipv4_address is not None and not any(ipv4_address in subnet for subnet in subnets):
        listed = ", ".join(map(str, subnets)) or "none"
        message = f"{ipv4_address} lies in no subnet of network {name} ({listed})"
        found.append(_violation(f"{endpoint}ipv4_address", message))
    return found


def engine_create_body(req: Mapping[str, Any]) -> dict[str, Any]:
    """POST /networks/create's body from a loaded request."""
    ipam = req.get("ipam")
    config = {}
    if ipam:
        config = {"Subnet": str(ipam["subnet"])}
        if ipam.get("gateway") is not None:
            config["Gateway"] = str(ipam["gateway"])
        if ipam.get("ip_range") is not None:
            config["IPRange"] = str(ipam["ip_range"])
    return {
        "Name": req["name"],
        "CheckDuplicate": True,
        "Driver": req["driver"],
        "Internal": req["internal"],
        "Attachable": req["attachable"],
        "EnableIPv6": req["enable_ipv6"],
        "Labels": req.get("labels", {}),
        "IPAM": {"Driver": "default", "Config": [config] if config else []},
    }


def engine_connect_body(req: Mapping[str, Any]) -> dict[str, Any]:
    """POST /networks/{id}/connect's body from a loaded request."""
    endpoint = endpoint_config(req.get("aliases") or (), req.get("ipv4_address"))
    return {"Container": req["container"], "EndpointConfig": endpoint}


def address_failure(err: DockerError, fields: Sequence[str]) -> ApiError | None:
    """An engine error about a fixed address, naming each of `fields` (those that give one): taken is a 409, one
    the engine cannot give (outside the subnets, or on a network whose subnet it chose itself) a 400. None when the
    error is another's, or no field gives an address."""
    message = str(err.message).strip()
    if not fields:
        return None
    if _ADDRESS_TAKEN in message:
        return Conflict(message, errors=[_violation(field, "is in use on its network") for field in fields])
    if any(text in message for text in _ADDRESS_REFUSED):
        return BadRequest(message, errors=[_violation(field, message) for field in fields])
    return None


def change_failure(err: DockerError, endpoint: str | None = None) -> ApiError:
    """An engine error of a network change: a network in use, a container connected already or not connected, an
    address taken is a 409 (the engine says 403 or 500 of them). A connect's (`endpoint`, the prefix of its fields:
    "" for POST /networks/{id}/connect, "networks.1." for a create's second network) address or aliases that the
    engine refuses are a 400 or 409 naming the field."""
    message = str(err.message).strip()
    if endpoint is not None:
        if found := address_failure(err, [f"{endpoint}ipv4_address"]):
            return found
        if _ALIASES_REFUSED in message:
            return BadRequest(message, errors=[_violation(f"{endpoint}aliases", message)])
    if any(text in message for text in _IN_USE):
        return Conflict(message)
    return from_docker_error(err)
