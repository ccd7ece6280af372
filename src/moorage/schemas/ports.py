"""Published ports in the create body: `{"80/tcp": 8080}`, keyed "PORT/PROTO" once loaded."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar

from marshmallow import ValidationError, fields

from moorage.containers.model import PortBinding
from moorage.schemas.common import KeyedDict
from moorage.schemas.fields import JsonSchema, Text, anchored, valid_text

MAX_PORTS = 256  # published container ports in one create
MAX_BINDINGS = 16  # host bindings of one port
_PORT_KEY = re.compile(r"([0-9]{1,5})(?:/(tcp|udp|sctp))?", re.IGNORECASE)
# What _host_binding takes as text, for the document: a port, or an address (IPv6 in brackets) and maybe a port.
_BINDING_TEXT = r"[0-9]{1,5}|(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|\[[0-9a-fA-F:.]+\]):(?:[0-9]{1,5})?"
_BINDING = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 65535},
        {"type": "string", "pattern": anchored(_BINDING_TEXT)},
    ]
}


class PortKey(Text):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        found = _PORT_KEY.fullmatch(valid_text(value))
        if not found or not 1 <= int(found[1]) <= 65535:
            raise ValidationError("must be PORT[/tcp|udp|sctp] with PORT from 1 to 65535")
        return f"{int(found[1])}/{(found[2] or 'tcp').lower()}"


def _host_port(value: Any) -> int:
    if isinstance(value, str) and re.fullmatch("[0-9]{1,5}", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValidationError("the host port must be from 1 to 65535")
    return value


def _host_binding(value: Any) -> PortBinding:
    """8080, "8080", "127.0.0.1:8080", "[::1]:8080", "127.0.0.1:" (a free port on that address) or null."""
    if value is None:
        return PortBinding()
    if not isinstance(value, str) or ":" not in value:
        return PortBinding(host_port=_host_port(value))
    host, _, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        # A zone ("%eth0") would pass text the engine never sees validated.
        address = None if "%" in host else ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        address = None
    if address is None or (address.version == 6) != bracketed:
        raise ValidationError('the host address must be an IPv4 address or an IPv6 one in brackets, "[::1]:8080"')
    return PortBinding(host_ip=str(address), host_port=_host_port(port) if port else None)


class HostBindings(fields.Field[tuple[PortBinding, ...]]):
    """A port's host side: one binding, a non-empty list of them, or null (a free port on every address)."""

    json_schema: ClassVar[JsonSchema] = {
        "anyOf": [_BINDING, {"type": "array", "items": _BINDING, "minItems": 1, "maxItems": MAX_BINDINGS}]
    }

    def __init__(self) -> None:
        super().__init__(allow_none=True)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[PortBinding, ...]:
        if not isinstance(value, list):
            return (_host_binding(value),)
        if not value:
            raise ValidationError("an empty list publishes nothing: give null for a free host port")
        if len(value) > MAX_BINDINGS:
            raise ValidationError(f"at most {MAX_BINDINGS} host bindings")
        bindings: list[PortBinding] = []
        problems: list[str] = []
        for index, item in enumerate(value):
            try:
                bindings.append(_host_binding(item))
            except ValidationError as err:
                problems.extend(f"item {index}: {message}" for message in err.messages)
        if problems:
            raise ValidationError(problems)
        return tuple(bindings)


class Ports(KeyedDict):
    """`{"80/tcp": 8080}`, keyed "PORT/PROTO" once loaded, so that "80" and "80/tcp" are one port."""

    def __init__(self) -> None:
        super().__init__(keys=PortKey(), values=HostBindings(), max_entries=MAX_PORTS)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        ports = super()._deserialize(value, attr, data, **kwargs)
        if len(ports) < len(value):
            raise ValidationError('two keys name the same port ("80" is "80/tcp")')
        return {key: bindings or (PortBinding(),) for key, bindings in ports.items()}
