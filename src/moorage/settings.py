"""The settings every layer reads: frozen dataclasses, one per section of config.toml, and nothing else.

Nearly a leaf: it imports only the keys' scopes (selectors.py), so that any module can be given its slice of the
settings without importing the file loader (config/), which needs the schemas, which need the domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass, replace
from dataclasses import fields as fields_of
from datetime import UTC, datetime
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from moorage.selectors import Scope

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


class Permission(StrEnum):
    """What a route needs: a resource and a verb. Each route declares one beside it (web/roles.py)."""

    CONTAINERS_READ = "containers:read"
    CONTAINERS_LOGS = "containers:logs"
    CONTAINERS_LIFECYCLE = "containers:lifecycle"
    CONTAINERS_EXEC = "containers:exec"
    CONTAINERS_FILES = "containers:files"
    CONTAINERS_CREATE = "containers:create"
    CONTAINERS_UPDATE = "containers:update"
    CONTAINERS_DELETE = "containers:delete"
    CONTAINERS_SECRETS = "containers:secrets"
    IMAGES_READ = "images:read"
    IMAGES_PULL = "images:pull"
    IMAGES_DELETE = "images:delete"
    VOLUMES_READ = "volumes:read"
    VOLUMES_WRITE = "volumes:write"
    NETWORKS_READ = "networks:read"
    NETWORKS_WRITE = "networks:write"
    # Attaching a container to a network and detaching it: an operator's today, unlike networks:write.
    NETWORKS_CONNECT = "networks:connect"
    SYSTEM_READ = "system:read"
    SYSTEM_PRUNE = "system:prune"
    METRICS_READ = "metrics:read"
    EVENTS_READ = "events:read"
    TOKENS_ISSUE = "tokens:issue"
    # Revoking any key's token: an admin's, where issuing one's own is a viewer's.
    TOKENS_REVOKE = "tokens:revoke"
    AUDIT_READ = "audit:read"
    # GET /policy: what a create may get away with, an admin's to read.
    POLICY_READ = "policy:read"
    ALERTS_READ = "alerts:read"
    # A test notification: it reaches the webhooks' receivers (a pager among them), an admin's to send.
    ALERTS_TEST = "alerts:test"


_VIEWER = frozenset(
    {
        Permission.CONTAINERS_READ,
        Permission.CONTAINERS_LOGS,
        Permission.IMAGES_READ,
        Permission.VOLUMES_READ,
        Permission.NETWORKS_READ,
        Permission.SYSTEM_READ,
        Permission.METRICS_READ,
        Permission.EVENTS_READ,
        Permission.TOKENS_ISSUE,
        Permission.ALERTS_READ,
    }
)
_OPERATOR = _VIEWER | {Permission.CONTAINERS_LIFECYCLE, Permission.NETWORKS_CONNECT}
# The one table of what each role may do (README, Security, shows it): a role is the name of its bundle.
BUNDLES: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.OPERATOR: _OPERATOR,
    Role.ADMIN: frozenset(Permission),
}


def least_role(permission: Permission) -> Role:
    """The lowest role whose bundle holds `permission` (the document's `x-moorage-role`)."""
    return next(role for role in Role if permission in BUNDLES[role])


@dataclass(frozen=True)
class ApiKey:
    """A key as configured. A principal is one too: a token's is its key with the token's role, permissions
    and expiry (access/tokens.py)."""

    name: str
    role: Role | None  # None: a key given only `permissions`
    sha256: str = field(repr=False)
    disabled: bool = False
    # The key's own list: replaces the bundle of a key without a role, and narrows its role's (never more, checked
    # at load). None: the role's bundle.
    permissions: frozenset[Permission] | None = None
    expires_at: datetime | None = None
    # What it may see and touch: its selector and name globs (a token's: narrowed by the token's own).
    scope: Scope = field(default_factory=Scope)

    @property
    def granted(self) -> frozenset[Permission]:
        """What the key may do."""
        if self.permissions is not None:
            return self.permissions
        return BUNDLES[self.role] if self.role is not None else frozenset()

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))


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
    # How long a merged log that is followed holds a line back for a container that may still send an earlier one.
    merge_window_ms: int = 250


@dataclass(frozen=True)
class MetricsSettings:
    interval: float = 1.0
    history_seconds: float = 900.0
    disk_paths: tuple[str, ...] = ("/", "/var/lib/docker")
    public_prometheus: bool = False
    # Container labels that become `container_label_<key>` on each container series (cAdvisor's names): opt-in,
    # since every label value is a series of its own.
    label_allowlist: tuple[str, ...] = ()
    # Container history: (step, span) in seconds of each tier, finest first.
    history_tiers: tuple[tuple[float, float], ...] = ((1.0, 900.0), (60.0, 86400.0), (600.0, 604800.0))


@dataclass(frozen=True)
class AuthSettings:
    api_keys: tuple[ApiKey, ...] = ()
    token_secret_file: Path | None = None  # default: state_dir/token-secret, made on first start
    token_ttl: int = 3600
    token_max_ttl: int = 86400
    failed_limit: int = 10  # failed authentications per address in failed_window before a 429
    failed_window: float = 60.0
    # Labels whose values are secrets (names, or globs with *): shown, as environment values are, only to a key
    # that may read secrets.
    secret_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpdatesSettings:
    # How long GET /image-updates keeps a registry's digest for a reference before it asks again.
    cache_seconds: float = 300.0
    concurrency: int = 4  # registry lookups at once, for the whole list


@dataclass(frozen=True)
class ExecSettings:
    max_timeout: int = 3600  # seconds a one-shot exec may ask to run
    max_output: int = 16 * 1024 * 1024  # bytes of stdout and stderr a one-shot exec's answer may ask to hold
    idle_timeout: int = 600  # seconds an interactive session may go without a byte either way


@dataclass(frozen=True)
class FilesSettings:
    max_upload: int = 64 * 1024 * 1024  # bytes of a PUT /files body
    # Paths in the container that GET and PUT /files may reach, as the engine resolves them.
    allowed_paths: tuple[str, ...] = ("/",)
    denied_paths: tuple[str, ...] = ("/proc", "/sys")


@dataclass(frozen=True)
class AuditSettings:
    path: Path | None = None  # default: state_dir/audit.log
    # Refusals from one client within this many seconds of one written in full: one summary line; 0: none folded.
    fold_seconds: float = 60.0
    # A line that would take the file past this many bytes first rotates it (audit.log.1, ...); 0: never rotated.
    max_bytes: int = 10 * 1024 * 1024
    keep: int = 5  # rotated files kept; the oldest past them is dropped


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
    # POST /volumes: the drivers it may name, and whether it may pass driver options at all.
    allowed_volume_drivers: frozenset[str] = frozenset({"local"})
    allow_volume_driver_opts: bool = False
    # The drivers POST /networks may use: macvlan and ipvlan put containers on the host's LAN.
    allowed_network_drivers: frozenset[str] = frozenset({"bridge"})
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
class Hook:
    """A `[[hooks]]` entry: POST /hooks/{name}, signed with `secret`, recreates `container`. repr hides the secret."""

    name: str
    container: str
    secret: bytes = field(repr=False)
    pull: str = "always"
    wait: str = "running"
    timeout: int = 60


@dataclass(frozen=True)
class Webhook:
    """A `[[webhooks]]` entry: where notifications go, and how. repr hides the secret."""

    name: str
    url: str
    secret: bytes | None = field(default=None, repr=False)  # read from secret_file; signs each body
    format: str = "json"  # json, slack, discord, ntfy or gotify
    timeout: float = 10.0  # seconds for one attempt
    max_age: float = 86400.0  # seconds a notification is retried before it expires
    backoff_initial: float = 1.0  # seconds before the first retry; doubled each time, with jitter
    backoff_max: float = 300.0


@dataclass(frozen=True)
class AlertRule:
    """An `[[alerts]]` entry: what fires it (an event, a threshold held, a log line), over which containers, and
    whom it tells. A rule fires once per container (or once for the host) and is resolved when it no longer holds."""

    name: str
    kind: str  # event, threshold or log
    webhooks: tuple[str, ...]
    severity: str = "warning"
    scope: Scope = field(default_factory=Scope)  # the containers it watches: a label selector and name globs
    for_seconds: float = 0.0  # how long a threshold must be crossed before it fires
    event: str = ""  # die (a non-zero exit), oom, unhealthy or restart_loop
    restarts: int = 3  # restart_loop: this many starts within `within`
    within: float = 300.0
    metric: str = ""  # container_cpu, container_memory (percent of the limit), host_cpu, host_memory, host_disk, load1
    above: float = 0.0
    path: str = "/"  # host_disk: the disk path, among [metrics] disk_paths
    pattern: str = ""  # log: RE2
    ignore_case: bool = False
    quiet: float = 300.0  # log: a match fires, and no match for this long resolves; no more than one notice meanwhile


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    docker: DockerSettings = field(default_factory=DockerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    logs: LogsSettings = field(default_factory=LogsSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    updates: UpdatesSettings = field(default_factory=UpdatesSettings)
    exec: ExecSettings = field(default_factory=ExecSettings)
    files: FilesSettings = field(default_factory=FilesSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    registries: tuple[Registry, ...] = ()
    hooks: tuple[Hook, ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    alerts: tuple[AlertRule, ...] = ()

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
        "hooks",
        "webhooks",
        "alerts",
        "logs",
        "exec",
        "files",
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
