"""The settings every layer reads: frozen dataclasses, one per section of config.toml, and nothing else.

A leaf: it imports nothing of moorage, so that any module can be given its slice of the settings without
importing the file loader (config/), which needs the schemas, which need the domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass, replace
from dataclasses import fields as fields_of
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

IPNetwork = IPv4Network | IPv6Network

# The forwarding headers a trusted proxy may write ([server] forwarded_header).
X_FORWARDED_FOR = "X-Forwarded-For"
FORWARDED = "Forwarded"
HEADERS = (X_FORWARDED_FOR, FORWARDED)


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        return _ROLE_RANK[self] >= _ROLE_RANK[needed]


_ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: Role
    sha256: str = field(repr=False)
    disabled: bool = False


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    state_dir: Path = Path("/var/lib/moorage")
    max_body_size: int = 1024 * 1024
    max_streams: int = 256
    max_streams_per_key: int = 32  # one key (its tokens included) holding every stream would starve the others
    # Streams only admin keys may open: a viewer's script cannot take the last slot from the admin who stops it.
    # Left out of the file, at most half of max_streams (RESERVE_SHARE); given, less than max_streams.
    admin_reserved_streams: int = 16
    # An NDJSON stream with nothing to send writes a heartbeat line this often, so that a proxy's read timeout
    # (nginx: 60 s) does not cut a quiet follow or event stream.
    heartbeat_seconds: float = 15.0
    shutdown_timeout: float = 10.0
    # aiohttp (3.14) arms this at connection start and after each response, and closes a connection still
    # waiting for a complete request head when it fires: it bounds slow heads as well as idle connections.
    keepalive_timeout: float = 15.0
    body_timeout: float = 30.0
    max_line_size: int = 8190  # bytes of the request line (method, path and query)
    max_field_size: int = 8190  # bytes of one header, name and value
    max_headers: int = 128
    log_format: str = "text"
    # A line per request. Off by default, as dockerd's: the audit log has every change and every denial,
    # /metrics counts the rest, and a script polling once a second would put 86,400 lines a day in the journal.
    access_log: bool = False
    # Reverse proxies whose forwarding header names the client (for the limiter and the audit); none by default.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    forwarded_header: str = X_FORWARDED_FOR  # the one header those proxies write: X-Forwarded-For or Forwarded


@dataclass(frozen=True)
class DockerSettings:
    url: str = "unix:///var/run/docker.sock"
    timeout: float = 30.0


@dataclass(frozen=True)
class LogsSettings:
    max_lines: int = 10_000
    # Bytes of the lines of a format=json page, as the engine sends them: the page is held whole before it goes.
    max_page_bytes: int = 4 * 1024 * 1024
    # Bytes of one line in every format; the rest of a longer line is dropped, and the line marked as cut.
    max_line_bytes: int = 256 * 1024


@dataclass(frozen=True)
class MetricsSettings:
    interval: float = 1.0
    history_seconds: float = 900.0
    disk_paths: tuple[str, ...] = ("/", "/var/lib/docker")
    public_prometheus: bool = False


@dataclass(frozen=True)
class AuthSettings:
    api_keys: tuple[ApiKey, ...] = ()
    token_secret_file: Path | None = None  # default: state_dir/token-secret, made on first start
    token_ttl: int = 3600
    token_max_ttl: int = 86400
    failed_limit: int = 10  # failed authentications per address in failed_window before a 429
    failed_window: float = 60.0


@dataclass(frozen=True)
class UpdatesSettings:
    # How long GET /image-updates keeps a registry's digest for a reference before it asks again.
    cache_seconds: float = 300.0
    concurrency: int = 4  # registry lookups at once, for the whole list


@dataclass(frozen=True)
class AuditSettings:
    path: Path | None = None  # default: state_dir/audit.log
    # Refusals from one client within this many seconds of one written in full: one summary line; 0: none folded.
    fold_seconds: float = 60.0


@dataclass(frozen=True)
class PolicySettings:
    """`[policy]` in config.toml."""

    allowed_host_paths: tuple[str, ...] = ()
    allow_privileged: bool = False
    allowed_capabilities: frozenset[str] = frozenset()
    allow_host_network: bool = False
    allow_host_pid: bool = False
    allow_host_ipc: bool = False
    allow_host_uts: bool = False
    allow_host_userns: bool = False
    allow_devices: bool = False
    allowed_sysctls: frozenset[str] = frozenset()
    allowed_runtimes: frozenset[str] = frozenset({"runc"})
    default_memory: int | None = None
    max_memory: int | None = None
    default_pids_limit: int | None = None
    max_pids_limit: int | None = None
    default_cpus: float | None = None
    max_cpus: float | None = None
    # Nanoseconds, as the engine takes durations; 0 sets no minimum.
    min_healthcheck_interval: int = 10**9
    # Empty: any address. 0.0.0.0 also allows a binding that omits host_ip (every address, :: included).
    allowed_host_ips: frozenset[str] = frozenset()
    allow_privileged_ports: bool = False
    protected_paths: tuple[str, ...] = ()  # not read from [policy]: Settings derives it


@dataclass(frozen=True)
class Registry:
    """A `[[registries]]` entry: repr hides the password, so that a logged settings object does not show it."""

    host: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    docker: DockerSettings = field(default_factory=DockerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    logs: LogsSettings = field(default_factory=LogsSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    updates: UpdatesSettings = field(default_factory=UpdatesSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    registries: tuple[Registry, ...] = ()

    def __post_init__(self) -> None:
        # moorage's own state and the engine's socket are never bind-mountable, wherever they are: derived here,
        # where every Settings is made (the loader's, a test's, a reload's), rather than read from [policy].
        protected = [str(self.server.state_dir)]
        if self.docker.url.startswith("unix://"):
            protected.append(self.docker.url.removeprefix("unix://"))
        object.__setattr__(self, "policy", replace(self.policy, protected_paths=tuple(protected)))

    def with_keys(self, keys: tuple[ApiKey, ...]) -> Settings:
        return replace(self, auth=replace(self.auth, api_keys=keys))


@dataclass
class LiveSettings:
    """The settings requests read, replaced whole when SIGHUP reloads the config. What is fixed at start
    (addresses, the engine's URL, pools, intervals) is read from the Settings the app was built with."""

    current: Settings


# What SIGHUP changes at once: requests read these from LiveSettings. The rest is fixed at start.
RELOADED = frozenset(
    {
        "auth.api_keys",
        "auth.token_ttl",
        "auth.token_max_ttl",
        "policy",
        "registries",
        "logs",
        "server.body_timeout",
        "metrics.public_prometheus",
    }
)


def fixed_at_start(running: Settings, loaded: Settings) -> list[str]:
    """The keys whose new values a reload cannot apply (addresses, pools, the engine's URL...): a restart can."""
    changed = []
    for section in fields_of(running):
        old, new = getattr(running, section.name), getattr(loaded, section.name)
        if section.name in RELOADED or old == new:
            continue
        if not is_dataclass(old):
            changed.append(section.name)
            continue
        for key in fields_of(old):
            name = f"{section.name}.{key.name}"
            if name not in RELOADED and getattr(old, key.name) != getattr(new, key.name):
                changed.append(name)
    return changed
