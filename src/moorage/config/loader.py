"""Settings: config.toml read with tomllib, validated by marshmallow, frozen into dataclasses.

A bad file must stop start-up with a message naming the key and the file, so every section
raises on unknown keys and the CLI turns `ConfigError` into exit status `EXIT_CONFIG`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from moorage.config.alerts import AlertSchema, WebhookSchema, check_alerts
from moorage.config.defaults import defaults_from
from moorage.config.hooks import HookSchema
from moorage.config.policy import PolicySchema
from moorage.config.registries import RegistrySchema
from moorage.errors import ConfigError, flatten_errors
from moorage.schemas.common import StrictSchema
from moorage.schemas.fields import ABSOLUTE_PATH, matches, name_glob, selector_text
from moorage.selectors import Scope
from moorage.settings import (
    BUNDLES,
    HEADERS,
    ApiKey,
    AuditSettings,
    AuthSettings,
    DockerSettings,
    ExecSettings,
    FilesSettings,
    IPNetwork,
    LogsSettings,
    MetricsSettings,
    Permission,
    Role,
    ServerSettings,
    Settings,
    UpdatesSettings,
)

EXIT_CONFIG = 2
# The most of max_streams that the default [server] admin_reserved_streams keeps for admins.
RESERVE_SHARE = 0.5
DEFAULT_PATHS = (Path("/etc/moorage/config.toml"), Path("config.toml"))


def default_state_dir() -> str:
    # systemd's StateDirectory= sets this; it may hold several colon-separated paths.
    from_systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return from_systemd or str(ServerSettings.state_dir)


class _Section(StrictSchema):
    """A section of the file: strict, as every key must be known."""


class Network(fields.Field[IPNetwork]):
    """A network in CIDR notation ("10.0.0.0/8", "::1/128"), or one address."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> IPNetwork:
        if not isinstance(value, str):
            raise ValidationError('a network as a string, such as "10.0.0.0/8"')
        try:
            return ip_network(value)
        except ValueError as err:
            raise ValidationError(f"not a network in CIDR notation: {err}") from None


@defaults_from(ServerSettings)
class ServerSchema(_Section):
    host = fields.String(validate=validate.Length(min=1))
    port = fields.Integer(strict=True, validate=validate.Range(1, 65535))
    state_dir = fields.String(load_default=default_state_dir, validate=validate.Length(min=1))
    max_body_size = fields.Integer(strict=True, validate=validate.Range(1024, 64 * 1024 * 1024))
    max_streams = fields.Integer(strict=True, validate=validate.Range(1, 10000))
    max_streams_per_key = fields.Integer(strict=True, validate=validate.Range(1, 10000))
    admin_reserved_streams = fields.Integer(strict=True, load_default=None, validate=validate.Range(0, 10000))
    heartbeat_seconds = fields.Float(validate=validate.Range(0.1, 3600))
    shutdown_timeout = fields.Float(validate=validate.Range(0, 600))
    keepalive_timeout = fields.Float(validate=validate.Range(0.1, 3600))
    body_timeout = fields.Float(validate=validate.Range(0.1, 3600))
    max_line_size = fields.Integer(strict=True, validate=validate.Range(1024, 1024 * 1024))
    max_field_size = fields.Integer(strict=True, validate=validate.Range(1024, 1024 * 1024))
    max_headers = fields.Integer(strict=True, validate=validate.Range(8, 1024))
    log_format = fields.String(validate=validate.OneOf(("text", "json")))
    access_log = fields.Boolean()
    trusted_proxies = fields.List(Network())
    forwarded_header = fields.String(validate=validate.OneOf(HEADERS))

    @validates_schema
    def reserve_within_streams(self, data: dict[str, Any], **_: Any) -> None:
        """A reserve of every stream would refuse each key that is not admin with nothing open: one given is
        refused rather than cut down, so that the file says what a small max_streams leaves the other keys."""
        reserved = data.get("admin_reserved_streams")
        if reserved is not None and reserved >= data["max_streams"]:
            raise ValidationError(
                f"must be less than max_streams ({data['max_streams']}): the rest is what keys that are not admin"
                " may stream",
                "admin_reserved_streams",
            )

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> ServerSettings:
        reserved = data["admin_reserved_streams"]
        if reserved is None:  # the default, but never more than a share of a small max_streams
            reserved = min(ServerSettings.admin_reserved_streams, int(data["max_streams"] * RESERVE_SHARE))
        return ServerSettings(
            **{
                **data,
                "state_dir": Path(data["state_dir"]),
                "trusted_proxies": tuple(data["trusted_proxies"]),
                "admin_reserved_streams": reserved,
            }
        )


@defaults_from(DockerSettings)
class DockerSchema(_Section):
    url = fields.String(
        validate=matches(r"(unix|tcp|http|https)://.+", "must be a unix://, tcp:// or http(s):// URL"),
    )
    timeout = fields.Float(validate=validate.Range(min=0, min_inclusive=False))

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> DockerSettings:
        return DockerSettings(**data)


# Match with `fullmatch` (or `matches`): `re.match` and a `$` would take a trailing newline.
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
KEY_NAME_RULE = "letters, digits, _ . @ - (at most 64, starting with a letter or digit)"


# RFC 3339 with its offset: what `expires_at` takes as a string (TOML's own offset date-time is taken too).
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
_MOMENT_RULE = "an RFC 3339 time with its offset, such as 2027-01-31T00:00:00Z"


class Moment(fields.Field[datetime]):
    """A moment: TOML's offset date-time, or a string in RFC 3339. A time without an offset is refused, as it
    would mean another moment on a host in another zone."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str) and _RFC3339.fullmatch(value):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise ValidationError(f"{value!r} is not {_MOMENT_RULE}") from None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValidationError(f"{value!r} is not {_MOMENT_RULE}")
        return value


_PERMISSION_NAMES = sorted(Permission)


@defaults_from(ApiKey)
class ApiKeySchema(_Section):
    """A key has a role (a bundle of permissions), a list of permissions instead, or both: then the list narrows
    the role's bundle and may not go beyond it."""

    name = fields.String(required=True, validate=matches(KEY_NAME, KEY_NAME_RULE))
    role = fields.Enum(Role, by_value=True, load_default=None)
    sha256 = fields.String(
        required=True, validate=matches(r"[0-9a-fA-F]{64}", "must be the 64 hex digits of a SHA-256")
    )
    disabled = fields.Boolean()
    permissions = fields.List(
        fields.String(validate=validate.OneOf(_PERMISSION_NAMES, error="{input!r} is not a permission")),
        load_default=None,
        validate=validate.Length(min=1, error="lists no permission: leave it out for the role's bundle"),
    )
    expires_at = Moment(load_default=None)
    # Its scope: a label selector (Kubernetes' syntax) and container-name globs; left out, the whole host.
    selector = fields.String(load_default=None, validate=selector_text)
    names = fields.List(
        fields.String(validate=name_glob),
        load_default=None,
        validate=validate.Length(min=1, error="lists no glob: leave it out for every name"),
    )

    @validates_schema
    def within_role(self, data: dict[str, Any], **_: Any) -> None:
        role, listed = data.get("role"), data.get("permissions")
        if role is None and listed is None:
            raise ValidationError("give a role, permissions or both", "role")
        beyond = sorted(set(listed or ()) - BUNDLES[role]) if role is not None else []
        if beyond:
            raise ValidationError(f"more than role {role.value} holds: {', '.join(beyond)}", "permissions")

    def handle_error(self, error: ValidationError, data: Any, **kwargs: Any) -> None:
        """Name the key in each of its errors, as the index alone does not say which key a file means."""
        name = data.get("name") if isinstance(data, Mapping) else None
        if not isinstance(name, str) or not KEY_NAME.fullmatch(name):
            raise error
        raise ValidationError(_named(error.messages, f" (key {name!r})")) from None

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> ApiKey:
        listed = data["permissions"]
        return ApiKey(
            name=data["name"],
            role=data["role"],
            sha256=data["sha256"].lower(),
            disabled=data["disabled"],
            permissions=frozenset(Permission(p) for p in listed) if listed is not None else None,
            expires_at=data["expires_at"],
            scope=Scope.of(data["selector"], data["names"]),
        )


def _named(messages: Any, suffix: str) -> Any:
    """marshmallow's error messages, `suffix` after each string of them."""
    if isinstance(messages, Mapping):
        return {key: _named(sub, suffix) for key, sub in messages.items()}
    if isinstance(messages, list):
        return [_named(sub, suffix) for sub in messages]
    return f"{messages}{suffix}"


@defaults_from(AuthSettings)
class AuthSchema(_Section):
    api_keys = fields.List(fields.Nested(ApiKeySchema))
    token_secret_file = fields.String(validate=ABSOLUTE_PATH)
    token_ttl = fields.Integer(strict=True, validate=validate.Range(1, 10**7))
    token_max_ttl = fields.Integer(strict=True, validate=validate.Range(1, 10**7))
    failed_limit = fields.Integer(strict=True, validate=validate.Range(1, 10**6))
    failed_window = fields.Float(validate=validate.Range(1, 86400))
    secret_labels = fields.List(
        fields.String(validate=validate.Length(min=1, max=256)), validate=validate.Length(max=256)
    )

    @validates_schema
    def distinct(self, data: dict[str, Any], **_: Any) -> None:
        keys: list[ApiKey] = data.get("api_keys", [])
        for attr in ("name", "sha256"):
            values = [getattr(key, attr) for key in keys]
            if len(values) != len(set(values)):
                raise ValidationError(f"two keys have the same {attr}", "api_keys")

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> AuthSettings:
        secret = data.get("token_secret_file")
        return AuthSettings(
            **{
                **data,
                "api_keys": tuple(data["api_keys"]),
                "token_secret_file": Path(secret) if secret else None,
                "secret_labels": tuple(data["secret_labels"]),
            }
        )


@defaults_from(UpdatesSettings)
class UpdatesSchema(_Section):
    cache_seconds = fields.Float(validate=validate.Range(0, 86400))
    concurrency = fields.Integer(strict=True, validate=validate.Range(1, 64))

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> UpdatesSettings:
        return UpdatesSettings(**data)


@defaults_from(ExecSettings)
class ExecSchema(_Section):
    max_timeout = fields.Integer(strict=True, validate=validate.Range(1, 86400))
    max_output = fields.Integer(strict=True, validate=validate.Range(1024, 1024**3))
    idle_timeout = fields.Integer(strict=True, validate=validate.Range(1, 86400))

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> ExecSettings:
        return ExecSettings(**data)


def _container_paths() -> fields.List:
    return fields.List(fields.String(validate=ABSOLUTE_PATH))


@defaults_from(FilesSettings)
class FilesSchema(_Section):
    max_upload = fields.Integer(strict=True, validate=validate.Range(1, 64 * 1024**3))
    allowed_paths = _container_paths()
    denied_paths = _container_paths()

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> FilesSettings:
        paths = {key: tuple(data[key]) for key in ("allowed_paths", "denied_paths")}
        return FilesSettings(**{**data, **paths})


_MIN_AUDIT_BYTES = 1024


@defaults_from(AuditSettings)
class AuditSchema(_Section):
    path = fields.String(validate=ABSOLUTE_PATH)
    fold_seconds = fields.Float(validate=validate.Range(0, 86400))
    max_bytes = fields.Integer(strict=True, validate=validate.Range(0, 1024**3))
    keep = fields.Integer(strict=True, validate=validate.Range(1, 100))

    @validates_schema
    def rotated_files_hold_lines(self, data: dict[str, Any], **_: Any) -> None:
        """A file of a few lines at least: below that, each line would be a rotation of its own."""
        if 0 < data["max_bytes"] < _MIN_AUDIT_BYTES:
            raise ValidationError(f"0 (never rotated) or at least {_MIN_AUDIT_BYTES}", "max_bytes")

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> AuditSettings:
        return AuditSettings(**{**data, "path": Path(data["path"]) if data["path"] else None})


@defaults_from(LogsSettings)
class LogsSchema(_Section):
    max_lines = fields.Integer(strict=True, validate=validate.Range(1, 1_000_000))
    max_page_bytes = fields.Integer(strict=True, validate=validate.Range(1024, 256 * 1024 * 1024))
    max_line_bytes = fields.Integer(strict=True, validate=validate.Range(1024, 64 * 1024 * 1024))
    merge_window_ms = fields.Integer(strict=True, validate=validate.Range(0, 10_000))

    @validates_schema
    def line_fits_page(self, data: dict[str, Any], **_: Any) -> None:
        """So that a page of one line, the least a page holds, is within max_page_bytes too."""
        if data["max_line_bytes"] > data["max_page_bytes"]:
            raise ValidationError("must not be more than max_page_bytes", "max_line_bytes")

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> LogsSettings:
        return LogsSettings(**data)


@defaults_from(MetricsSettings)
class MetricsSchema(_Section):
    interval = fields.Float(validate=validate.Range(0.1, 60))
    history_seconds = fields.Float(validate=validate.Range(1, 86400))
    disk_paths = fields.List(
        fields.String(validate=ABSOLUTE_PATH),
    )
    public_prometheus = fields.Boolean()
    label_allowlist = fields.List(
        fields.String(validate=validate.Length(min=1, max=256)), validate=validate.Length(max=64)
    )
    # [[step, span], ...] in seconds, finest first; a tier of more than 100,000 buckets is refused (memory).
    history_tiers = fields.List(
        fields.Tuple(
            (fields.Float(validate=validate.Range(1, 86400)), fields.Float(validate=validate.Range(1, 10**8)))
        ),
        validate=validate.Length(min=1, max=6),
    )

    @validates_schema
    def tiers_grow(self, data: dict[str, Any], **_: Any) -> None:
        tiers = data["history_tiers"]
        for n, (step, span) in enumerate(tiers):
            if not step < span <= step * 100_000:
                raise ValidationError(
                    "a tier's span must be more than its step and at most 100,000 steps", f"history_tiers.{n}"
                )
            if n and (step <= tiers[n - 1][0] or span <= tiers[n - 1][1]):
                raise ValidationError(
                    "each tier's step and span must be more than the one before's", f"history_tiers.{n}"
                )

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> MetricsSettings:
        return MetricsSettings(
            **{
                **data,
                "disk_paths": tuple(data["disk_paths"]),
                "label_allowlist": tuple(data["label_allowlist"]),
                "history_tiers": tuple((float(step), float(span)) for step, span in data["history_tiers"]),
            }
        )


@defaults_from(Settings)
class SettingsSchema(_Section):
    # A missing section is loaded from {} so that its defaults are computed like a present one's.
    server = fields.Nested(ServerSchema, load_default=lambda: ServerSchema().load({}))
    docker = fields.Nested(DockerSchema, load_default=lambda: DockerSchema().load({}))
    auth = fields.Nested(AuthSchema, load_default=lambda: AuthSchema().load({}))
    logs = fields.Nested(LogsSchema, load_default=lambda: LogsSchema().load({}))
    metrics = fields.Nested(MetricsSchema, load_default=lambda: MetricsSchema().load({}))
    audit = fields.Nested(AuditSchema, load_default=lambda: AuditSchema().load({}))
    updates = fields.Nested(UpdatesSchema, load_default=lambda: UpdatesSchema().load({}))
    exec = fields.Nested(ExecSchema, load_default=lambda: ExecSchema().load({}))
    files = fields.Nested(FilesSchema, load_default=lambda: FilesSchema().load({}))
    policy = fields.Nested(PolicySchema, load_default=lambda: PolicySchema().load({}))
    registries = fields.List(fields.Nested(RegistrySchema))
    hooks = fields.List(fields.Nested(HookSchema))
    webhooks = fields.List(fields.Nested(WebhookSchema))
    alerts = fields.List(fields.Nested(AlertSchema))

    @validates_schema
    def alerts_reach_webhooks(self, data: dict[str, Any], **_: Any) -> None:
        check_alerts(data.get("alerts", []), data.get("webhooks", []), data["metrics"].disk_paths)

    @validates_schema
    def no_secret_series(self, data: dict[str, Any], **_: Any) -> None:
        """A secret label's value would be in every viewer's /metrics: it is never a series' label."""
        secret = data["auth"].secret_labels
        for n, key in enumerate(data["metrics"].label_allowlist):
            if any(fnmatch.fnmatchcase(key, pattern) for pattern in secret):
                raise ValidationError("is one of [auth] secret_labels: its values are not for every viewer",
                                      f"metrics.label_allowlist.{n}")  # fmt: skip

    @validates_schema
    def hook_names_unique(self, data: dict[str, Any], **_: Any) -> None:
        names = [hook.name for hook in data.get("hooks", ())]
        if len(names) != len(set(names)):
            raise ValidationError("two hooks have one name", "hooks")

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> Settings:
        lists = ("registries", "hooks", "webhooks", "alerts")
        return Settings(**{**data, **{key: tuple(data[key]) for key in lists}})


def settings_from_mapping(data: Mapping[str, Any], source: str = "<settings>") -> Settings:
    try:
        settings: Settings = SettingsSchema().load(data)
    except ValidationError as err:
        problems = "; ".join(f"{e['field']}: {e['message']}" for e in flatten_errors(err.messages))
        raise ConfigError(f"{source}: {problems}") from None
    return settings


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def load_settings(path: Path) -> Settings:
    return settings_from_mapping(read_toml(path), str(path))


def resolve_config_path(cli_path: str | None, env: Mapping[str, str] = os.environ) -> Path:
    """--config, else $MOORAGE_CONFIG, else /etc/moorage/config.toml, else ./config.toml."""
    if cli_path:
        return Path(cli_path)
    if env.get("MOORAGE_CONFIG"):
        return Path(env["MOORAGE_CONFIG"])
    return next((path for path in DEFAULT_PATHS if path.exists()), DEFAULT_PATHS[-1])


def key_toml(key: ApiKey) -> str:
    """The `[[auth.api_keys]]` block for a key: what keygen prints and the generated-key file holds."""
    lines = [f'name = "{key.name}"']
    lines += [f'role = "{key.role.value}"'] if key.role is not None else []
    lines += [f'sha256 = "{key.sha256}"']
    if key.permissions is not None:
        lines.append("permissions = [" + ", ".join(f'"{p}"' for p in sorted(key.permissions)) + "]")
    if key.expires_at is not None:
        lines.append(f'expires_at = "{key.expires_at.isoformat()}"')
    if key.scope.selector is not None:
        lines.append(f"selector = {json.dumps(key.scope.selector)}")
    if key.scope.name_globs:
        lines.append("names = [" + ", ".join(f'"{glob}"' for glob in sorted(key.scope.name_globs[0])) + "]")
    return "[[auth.api_keys]]\n" + "".join(f"{line}\n" for line in lines)
