"""Network schemas: the list query, the create and connect bodies, and the engine's payloads in moorage's shape."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from moorage.schemas.common import PageQuery, StrictSchema, docker_time
from moorage.schemas.containers import CONTAINER_NAME, CONTAINER_NAME_RULE, LABEL_FILTER
from moorage.schemas.create import MAX_ALIASES, text_map
from moorage.schemas.fields import CappedList, JsonSchema, StrictBool, Text, matches

# Docker's rule for network names is its rule for container names; ids are hex.
NETWORK_NAME_RULE = CONTAINER_NAME_RULE


class NetworkListQuery(PageQuery):
    name = fields.String(validate=matches(r"[a-zA-Z0-9_.-]{1,128}", "letters, digits, _ . - only (a part of a name)"))
    label = fields.List(fields.String(validate=LABEL_FILTER))
    driver = fields.String(validate=matches(CONTAINER_NAME, "not a driver name"))


class NetworkRef(StrictSchema):
    """A network id, short id or name in the path; anything else never reaches the engine's URL."""

    network_id = fields.String(required=True, validate=matches(CONTAINER_NAME, "not a network id or name"))


class IpNetworkField(fields.Field):
    """An IPv4 or IPv6 network in CIDR form, without host bits (the engine would refuse them, less clearly)."""

    json_schema: ClassVar[JsonSchema] = {"type": "string", "description": "CIDR: 10.231.1.0/24 or fd00:1::/64"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or "/" not in value:
            raise ValidationError("must be a network in CIDR form, such as 10.231.1.0/24")
        try:
            return ipaddress.ip_network(value)
        except ValueError as err:
            raise ValidationError(f"not a network without host bits: {err}") from None


class IpAddressField(fields.Field):
    json_schema: ClassVar[JsonSchema] = {"type": "string", "description": "an IPv4 or IPv6 address"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return ipaddress.ip_address(value if isinstance(value, str) else "")
        except ValueError:
            raise ValidationError("must be an IP address") from None


class IpamSchema(StrictSchema):
    subnet = IpNetworkField(required=True)
    gateway = IpAddressField()
    ip_range = IpNetworkField()

    @validates_schema
    def within_subnet(self, data: dict[str, Any], **_: Any) -> None:
        subnet = data.get("subnet")
        if subnet is None:
            return
        gateway, ip_range = data.get("gateway"), data.get("ip_range")
        if gateway is not None and (gateway.version != subnet.version or gateway not in subnet):
            raise ValidationError(f"must lie within the subnet {subnet}", "gateway")
        if ip_range is not None and (ip_range.version != subnet.version or not ip_range.subnet_of(subnet)):
            raise ValidationError(f"must lie within the subnet {subnet}", "ip_range")


class NetworkCreateSchema(StrictSchema):
    name = Text(required=True, validate=matches(CONTAINER_NAME, NETWORK_NAME_RULE))
    driver = Text(load_default="bridge", validate=matches(CONTAINER_NAME, "not a driver name"))
    internal = StrictBool(load_default=False)
    attachable = StrictBool(load_default=False)
    labels = text_map(validate.Length(min=1))
    ipam = fields.Nested(IpamSchema)
    enable_ipv6 = StrictBool(load_default=False)

    @validates_schema
    def predefined_names(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("name") in ("bridge", "host", "none", "default"):
            raise ValidationError("is the name of a predefined network", "name")

    @validates_schema
    def ipv6_subnet(self, data: dict[str, Any], **_: Any) -> None:
        # The engine has no IPv6 pool of its own to take one from (it answers a 404).
        ipam = data.get("ipam")
        if data.get("enable_ipv6") and (ipam is None or ipam["subnet"].version != 6):
            raise ValidationError("needs an IPv6 subnet in ipam.subnet", "enable_ipv6")


class ConnectSchema(StrictSchema):
    container = Text(required=True, validate=matches(CONTAINER_NAME, "not a container id or name"))
    aliases = CappedList(Text(validate=matches(CONTAINER_NAME, "not a network alias")), MAX_ALIASES)
    ipv4_address = fields.IPv4()


class DisconnectSchema(StrictSchema):
    container = Text(required=True, validate=matches(CONTAINER_NAME, "not a container id or name"))
    force = StrictBool(load_default=False)


def _ipam(network: Mapping[str, Any]) -> list[dict[str, Any]]:
    configs = (network.get("IPAM") or {}).get("Config") or ()
    return [
        {"subnet": c.get("Subnet") or None, "gateway": c.get("Gateway") or None, "ip_range": c.get("IPRange") or None}
        for c in configs
    ]


def summary(network: Mapping[str, Any]) -> dict[str, Any]:
    """One item of `GET /networks` from the engine's list (or inspect) payload; NetworkSummarySchema is its
    contract."""
    return {
        "id": network["Id"],
        "name": network["Name"],
        "driver": network["Driver"],
        "scope": network["Scope"],
        "internal": network.get("Internal", False),
        "attachable": network.get("Attachable", False),
        "enable_ipv6": network.get("EnableIPv6", False),
        "ipam": _ipam(network),
        "labels": network.get("Labels") or {},
        "created_at": docker_time(network.get("Created")),
    }


def _address(cidr: str | None) -> str | None:
    return cidr.split("/", 1)[0] if cidr else None


def detail(network: Mapping[str, Any]) -> dict[str, Any]:
    """`GET /networks/{id}` from inspect: the summary's fields and the containers attached, with their addresses
    (as the engine gives them, without the prefix length)."""
    attached = [
        {
            "id": container_id,
            "name": endpoint.get("Name"),
            "ipv4_address": _address(endpoint.get("IPv4Address")),
            "ipv6_address": _address(endpoint.get("IPv6Address")),
            "mac_address": endpoint.get("MacAddress") or None,
        }
        for container_id, endpoint in sorted((network.get("Containers") or {}).items())
    ]
    return {**summary(network), "containers": attached}


class IpamConfigSchema(Schema):
    subnet = fields.String(required=True, allow_none=True)
    gateway = fields.String(required=True, allow_none=True)
    ip_range = fields.String(required=True, allow_none=True)


class NetworkSummarySchema(Schema):
    """One item of `GET /networks`: the contract `summary` fulfils."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    driver = fields.String(required=True)
    scope = fields.String(required=True)
    internal = fields.Boolean(required=True)
    attachable = fields.Boolean(required=True)
    enable_ipv6 = fields.Boolean(required=True)
    ipam = fields.List(fields.Nested(IpamConfigSchema), required=True)
    labels = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    created_at = fields.DateTime(required=True, allow_none=True)


class AttachedSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True, allow_none=True)
    ipv4_address = fields.String(required=True, allow_none=True)
    ipv6_address = fields.String(required=True, allow_none=True)
    mac_address = fields.String(required=True, allow_none=True)


class NetworkDetailSchema(NetworkSummarySchema):
    containers = fields.List(fields.Nested(AttachedSchema), required=True)
