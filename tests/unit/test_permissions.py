"""Permissions: each role is a bundle that gives exactly the routes it gave before permissions existed; a key's
own list and expiry are checked at load; a token only narrows its key; whoami says what the caller may do."""

from __future__ import annotations

import json
import time
import tomllib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.access.keys import hash_key
from moorage.access.tokens import ALGORITHM, TokenIssuer
from moorage.app import create_app
from moorage.config.loader import key_toml, settings_from_mapping
from moorage.errors import ConfigError, Forbidden, Unauthorized
from moorage.selectors import Scope
from moorage.settings import BUNDLES, ApiKey, Permission, Role, least_role
from moorage.web.openapi import openapi_path
from moorage.web.roles import AUTHENTICATED, declared_permission, is_public

from ..helpers import ROLES, app_client, key_headers, make_settings

# The least role of every route as main declared it before permissions (generated once from its router): the
# bundles must give each role exactly these routes.
ROLE_BEFORE = {
    ("POST", "/api/v1/auth/tokens"): "viewer",
    ("DELETE", "/api/v1/auth/tokens/{jti}"): "admin",
    ("GET", "/api/v1/audit"): "admin",
    ("GET", "/api/v1/policy"): "admin",
    ("GET", "/api/v1/containers"): "viewer",
    ("POST", "/api/v1/containers"): "admin",
    ("POST", "/api/v1/containers/prune"): "admin",
    ("DELETE", "/api/v1/containers/{container_id}"): "admin",
    ("GET", "/api/v1/containers/{container_id}"): "viewer",
    ("PATCH", "/api/v1/containers/{container_id}"): "admin",
    ("POST", "/api/v1/containers/{container_id}/exec"): "admin",
    ("GET", "/api/v1/containers/{container_id}/exec/ws"): "admin",
    ("GET", "/api/v1/containers/{container_id}/files"): "admin",
    ("PUT", "/api/v1/containers/{container_id}/files"): "admin",
    ("GET", "/api/v1/containers/{container_id}/image-update"): "viewer",
    ("POST", "/api/v1/containers/{container_id}/kill"): "operator",
    ("GET", "/api/v1/containers/{container_id}/logs"): "viewer",
    ("POST", "/api/v1/containers/{container_id}/pause"): "operator",
    ("POST", "/api/v1/containers/{container_id}/recreate"): "admin",
    ("POST", "/api/v1/containers/{container_id}/rename"): "admin",
    ("POST", "/api/v1/containers/{container_id}/restart"): "operator",
    ("POST", "/api/v1/containers/{container_id}/start"): "operator",
    ("POST", "/api/v1/containers/{container_id}/stop"): "operator",
    ("POST", "/api/v1/containers/{container_id}/unpause"): "operator",
    ("POST", "/api/v1/containers/{container_id}/wait"): "viewer",
    ("GET", "/api/v1/events"): "viewer",
    ("GET", "/api/v1/logs"): "viewer",
    ("POST", "/api/v1/hooks/{name}"): "public",
    ("GET", "/api/v1/image-updates"): "viewer",
    ("GET", "/api/v1/images"): "viewer",
    ("POST", "/api/v1/images/prune"): "admin",
    ("POST", "/api/v1/images/pull"): "admin",
    ("DELETE", "/api/v1/images/{image_id}"): "admin",
    ("GET", "/api/v1/metrics/containers"): "viewer",
    ("GET", "/api/v1/metrics/containers/{container_id}"): "viewer",
    ("GET", "/api/v1/metrics/containers/history"): "viewer",
    ("GET", "/api/v1/metrics/containers/{container_id}/history"): "viewer",
    ("GET", "/api/v1/metrics/resources"): "viewer",
    ("GET", "/api/v1/metrics/resources/history"): "viewer",
    ("GET", "/api/v1/networks"): "viewer",
    ("POST", "/api/v1/networks"): "admin",
    ("POST", "/api/v1/networks/prune"): "admin",
    ("DELETE", "/api/v1/networks/{network_id}"): "admin",
    ("GET", "/api/v1/networks/{network_id}"): "viewer",
    ("POST", "/api/v1/networks/{network_id}/connect"): "operator",
    ("POST", "/api/v1/networks/{network_id}/disconnect"): "operator",
    ("GET", "/api/v1/openapi.json"): "viewer",
    ("GET", "/api/v1/system/df"): "viewer",
    ("POST", "/api/v1/system/prune"): "admin",
    ("GET", "/api/v1/volumes"): "viewer",
    ("POST", "/api/v1/volumes"): "admin",
    ("POST", "/api/v1/volumes/prune"): "admin",
    ("DELETE", "/api/v1/volumes/{name}"): "admin",
    ("GET", "/api/v1/volumes/{name}"): "viewer",
    ("GET", "/healthz"): "public",
    ("GET", "/metrics"): "viewer",
    ("GET", "/api/v1/alerts"): "viewer",
    ("GET", "/api/v1/alerts/deliveries"): "viewer",
    ("POST", "/api/v1/alerts/{name}/test"): "admin",
    ("GET", "/readyz"): "public",
}
# Routes added with permissions: any valid credential may call them.
NEW_FOR_ANY_KEY = {("GET", "/api/v1/auth/whoami")}
SHA = "0" * 64


def roles_allowed(needed: Permission | str | None) -> set[str]:
    if needed == AUTHENTICATED:
        return set(Role)
    return {role.value for role in Role if needed in BUNDLES[role]}


def test_each_role_gives_exactly_the_routes_it_gave_before(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ROLES)
    app = create_app(settings)
    seen = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        key = (route.method, openapi_path(route.resource))
        seen.add(key)
        needed = declared_permission(route.handler)
        if key in NEW_FOR_ANY_KEY:
            assert needed == AUTHENTICATED, key
            continue
        before = ROLE_BEFORE[key]
        if before == "public":
            assert is_public(route.handler, settings), key
            continue
        assert isinstance(needed, Permission) or needed == AUTHENTICATED, key
        assert roles_allowed(needed) == {role.value for role in Role if role.allows(Role(before))}, key
    assert seen == set(ROLE_BEFORE) | NEW_FOR_ANY_KEY


def test_the_bundles_nest_and_admin_holds_every_permission() -> None:
    assert BUNDLES[Role.VIEWER] < BUNDLES[Role.OPERATOR] < BUNDLES[Role.ADMIN] == frozenset(Permission)
    assert BUNDLES[Role.OPERATOR] - BUNDLES[Role.VIEWER] == {
        Permission.CONTAINERS_LIFECYCLE,
        Permission.NETWORKS_CONNECT,
    }
    assert least_role(Permission.CONTAINERS_LOGS) is Role.VIEWER
    assert least_role(Permission.CONTAINERS_LIFECYCLE) is Role.OPERATOR
    assert least_role(Permission.CONTAINERS_SECRETS) is Role.ADMIN


def load_key(**entry: Any) -> ApiKey:
    settings = settings_from_mapping({"auth": {"api_keys": [{"name": "ci", "sha256": SHA, **entry}]}}, "cfg.toml")
    [key] = settings.auth.api_keys
    return key


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ({"permissions": ["containers:read", "containers:exex"]}, "permissions.1", "'containers:exex'"),
        ({"role": "viewer", "permissions": ["containers:exec"]}, "permissions", "containers:exec"),
        ({}, "role", "give a role, permissions or both"),
        ({"role": "admin", "permissions": []}, "permissions", "lists no permission"),
        ({"role": "admin", "expires_at": "next year"}, "expires_at", "'next year'"),
        ({"role": "admin", "expires_at": "2027-02-30T00:00:00Z"}, "expires_at", "2027-02-30"),
        ({"role": "admin", "expires_at": "2027-01-30T00:00:00"}, "expires_at", "RFC 3339 time with its offset"),
        ({"role": "admin", "expires_at": datetime(2027, 1, 30)}, "expires_at", "RFC 3339 time with its offset"),
    ],
    ids=["unknown", "beyond-role", "neither", "empty", "words", "no-such-day", "no-offset", "toml-local-time"],
)
def test_a_bad_key_entry_stops_the_load_naming_the_key_and_the_value(
    entry: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_key(**entry)
    message = str(caught.value)
    assert message.startswith(f"cfg.toml: auth.api_keys.0.{field}: "), message
    assert words in message and "(key 'ci')" in message


def test_a_key_has_its_roles_bundle_its_own_list_or_the_list_within_its_role() -> None:
    assert load_key(role="operator").granted == BUNDLES[Role.OPERATOR]
    only = load_key(permissions=["containers:exec"])
    assert (only.role, only.granted) == (None, {Permission.CONTAINERS_EXEC})
    both = load_key(role="operator", permissions=["containers:read", "containers:lifecycle"])
    assert (both.role, both.granted) == (Role.OPERATOR, {Permission.CONTAINERS_READ, Permission.CONTAINERS_LIFECYCLE})
    expiring = load_key(role="viewer", expires_at="2027-01-30T01:00:00+01:00")
    assert expiring.expires_at == datetime(2027, 1, 30, tzinfo=UTC)
    assert load_key(role="viewer", expires_at=datetime(2027, 1, 30, tzinfo=UTC)).expires_at == expiring.expires_at


def test_the_toml_of_a_key_loads_as_the_same_key() -> None:
    for key in (
        load_key(role="admin"),
        load_key(permissions=["containers:read", "images:read"], expires_at="2030-01-01T00:00:00Z"),
    ):
        data = tomllib.loads(key_toml(key))
        assert settings_from_mapping({"auth": data["auth"]}).auth.api_keys == (key,)


def test_an_expired_key_is_expired_and_one_without_expiry_never() -> None:
    now = datetime.now(UTC)
    assert ApiKey("a", Role.ADMIN, SHA, expires_at=now - timedelta(seconds=1)).expired()
    assert not ApiKey("a", Role.ADMIN, SHA, expires_at=now + timedelta(hours=1)).expired()
    assert not ApiKey("a", Role.ADMIN, SHA).expired()


PERMISSION_SETS = st.frozensets(st.sampled_from(list(Permission)))
ROLES_OR_NONE = st.none() | st.sampled_from(list(Role))


def a_key(role: Role | None, listed: frozenset[Permission] | None) -> ApiKey:
    """A key as the loader would accept it: a list within its role's bundle, and a role or a list."""
    if role is not None and listed is not None:
        listed &= BUNDLES[role]
    if role is None and listed is None:
        listed = frozenset()
    return ApiKey("k", role, hash_key("mrg_k"), permissions=listed)


@settings(max_examples=300, deadline=None)
@given(
    key_role=ROLES_OR_NONE,
    key_list=st.none() | PERMISSION_SETS,
    asked_role=ROLES_OR_NONE,
    asked=st.none() | PERMISSION_SETS,
    later=st.none() | PERMISSION_SETS,
)
def test_a_token_never_does_more_than_its_key(
    tmp_path_factory: pytest.TempPathFactory,
    key_role: Role | None,
    key_list: frozenset[Permission] | None,
    asked_role: Role | None,
    asked: frozenset[Permission] | None,
    later: frozenset[Permission] | None,
) -> None:
    issuer = TokenIssuer(b"s" * 32, tmp_path_factory.mktemp("tokens") / "revoked.json")
    key = a_key(key_role, key_list)
    role = asked_role if asked_role is not None else key.role
    available = key.granted & BUNDLES[role] if role is not None else key.granted
    role_allowed = role is None or (key.role is not None and key.role.allows(role))
    try:
        issued = issuer.issue(key, role, asked, 60, Scope())
    except Forbidden:
        assert not role_allowed or (asked is not None and not asked <= available)
        return
    assert role_allowed and (asked is None or asked <= available)
    principal, jti = issuer.verify(issued["token"], [key])
    assert jti == issued["jti"]
    assert principal.granted == issued["granted"] == (asked if asked is not None else available)
    assert principal.granted <= key.granted
    # The key cut down after the token was made: the token is cut with it.
    if later is not None:
        cut = replace(key, permissions=later & key.granted)
        assert issuer.verify(issued["token"], [cut])[0].granted <= cut.granted


def test_a_token_made_before_permissions_verifies_with_its_roles_bundle(tmp_path: Path) -> None:
    secret = b"s" * 32
    issuer = TokenIssuer(secret, tmp_path / "revoked.json")
    key = ApiKey("k", Role.OPERATOR, hash_key("mrg_k"))
    now = int(time.time())
    old = {"sub": "k", "kid": key.sha256[:16], "role": "viewer", "iat": now, "exp": now + 60, "jti": "a" * 32}
    principal, jti = issuer.verify(jwt.encode(old, secret, algorithm=ALGORITHM), [key])
    assert (principal.role, principal.granted, jti) == (Role.VIEWER, BUNDLES[Role.VIEWER], "a" * 32)


def test_a_token_is_cut_to_its_keys_expiry(tmp_path: Path) -> None:
    issuer = TokenIssuer(b"s" * 32, tmp_path / "revoked.json")
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    key = ApiKey("k", Role.VIEWER, hash_key("mrg_k"), expires_at=soon)
    issued = issuer.issue(key, None, None, 3600, Scope())
    assert issued["exp"] == int(soon.timestamp())
    assert issuer.verify(issued["token"], [key])[0].expires_at == soon


def test_the_tokens_of_a_key_that_has_expired_say_so(tmp_path: Path) -> None:
    issuer = TokenIssuer(b"s" * 32, tmp_path / "revoked.json")
    key = ApiKey("k", Role.VIEWER, hash_key("mrg_k"))
    issued = issuer.issue(key, None, None, 3600, Scope())
    lapsed = replace(key, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(Unauthorized, match="key expired"):
        issuer.verify(issued["token"], [lapsed])


KEYS = {
    "admin-key": "admin",
    "reader": {"permissions": ["containers:read", "tokens:issue"]},
    "lapsed": {"role": "admin", "expires_at": "2020-01-01T00:00:00Z"},
    "soon": {"role": "viewer", "expires_at": "2999-01-01T00:00:00Z"},
}


@pytest.fixture
async def keyed(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path, keys=KEYS)


async def whoami(client: TestClient, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/api/v1/auth/whoami", headers=headers)
    return resp.status, await resp.json()


async def test_whoami_says_what_a_key_may_do(keyed: TestClient) -> None:
    assert await whoami(keyed, key_headers("reader")) == (
        200,
        {
            "code": 200,
            "message": "success",
            "data": {
                "key": "reader",
                "token_id": None,
                "role": None,
                "permissions": ["containers:read", "tokens:issue"],
                "selector": None,
                "names": [],
                "expires_at": None,
            },
        },
    )
    _, body = await whoami(keyed, key_headers("soon"))
    assert body["data"]["role"] == "viewer" and body["data"]["expires_at"] == "2999-01-01T00:00:00Z"
    assert body["data"]["permissions"] == sorted(BUNDLES[Role.VIEWER])


async def test_whoami_of_a_token_names_it_and_its_narrowed_permissions(keyed: TestClient) -> None:
    resp = await keyed.post(
        "/api/v1/auth/tokens", json={"permissions": ["containers:read"], "ttl": 60}, headers=key_headers("admin-key")
    )
    assert resp.status == 201
    issued = (await resp.json())["data"]
    assert (issued["role"], issued["permissions"]) == ("admin", ["containers:read"])
    status, body = await whoami(keyed, {"Authorization": f"Bearer {issued['token']}"})
    assert status == 200
    assert body["data"] == {
        "key": "admin-key",
        "token_id": issued["jti"],
        "role": "admin",
        "permissions": ["containers:read"],
        "selector": None,
        "names": [],
        "expires_at": issued["expires_at"],
    }


async def test_an_expired_key_is_a_401_saying_so(keyed: TestClient) -> None:
    status, body = await whoami(keyed, key_headers("lapsed"))
    assert (status, body["message"]) == (401, "key expired")
    assert body["errors"] == [{"field": "X-API-Key", "message": "expired"}]


@pytest.mark.parametrize(
    ("body", "status", "fields", "words"),
    [
        ({"permissions": ["containers:read", "containers:exec"]}, 403, ["permissions"], "containers:exec"),
        ({"permissions": ["containers:read", "nope"]}, 400, ["permissions.1"], ""),
        ({"permissions": []}, 400, ["permissions"], ""),
        ({"role": "viewer"}, 403, [], "has no role"),
    ],
    ids=["more-than-the-key", "unknown-name", "empty", "a-role-the-key-lacks"],
)
async def test_a_token_asking_for_more_or_for_no_such_permission_is_refused_naming_the_field(
    keyed: TestClient, body: dict[str, Any], status: int, fields: list[str], words: str
) -> None:
    resp = await keyed.post("/api/v1/auth/tokens", json=body, headers=key_headers("reader"))
    answer = await resp.json()
    assert resp.status == status, answer
    assert [error["field"] for error in answer["errors"]] == fields
    assert words in answer["message"]


async def test_the_audit_line_names_the_key_the_token_and_the_permission_needed(
    keyed: TestClient, tmp_path: Path
) -> None:
    resp = await keyed.post(
        "/api/v1/auth/tokens", json={"permissions": ["containers:read"]}, headers=key_headers("admin-key")
    )
    jti, token = (await resp.json())["data"]["jti"], (await resp.json())["data"]["token"]
    start = await keyed.post("/api/v1/containers/x1/start", headers={"Authorization": f"Bearer {token}"})
    assert start.status == 403
    assert (await start.json())["errors"] == [{"field": "permission", "message": "needs containers:lifecycle"}]
    lines = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
    assert [(line["key"], line["token_id"], line["permission"], line["result"]) for line in lines] == [
        ("admin-key", None, "tokens:issue", 201),
        ("admin-key", jti, "containers:lifecycle", 403),
    ]
