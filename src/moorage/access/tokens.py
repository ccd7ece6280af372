"""Bearer tokens: short-lived JWTs (HS256, PyJWT) issued to API keys, revocable, tied to their key.

A token carries its key's name (`sub`), a role no higher than the key's and/or a list of permissions, `iat`,
`exp` and a `jti`. It is honoured only while its key is configured, enabled and not expired, and never with more
than the key may do now: what it may do is the key's permissions now, cut to the role's bundle and to the list
(tokens made before lists existed carry a role only), and its scope is the key's narrowed by the token's own
`selector` and `names`: a token sees no more than its key. Revoked `jti`s are kept in the state directory until the
tokens would have expired anyway.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from moorage.errors import Forbidden, Unauthorized
from moorage.selectors import Scope, SelectorError
from moorage.settings import BUNDLES, ApiKey, Permission, Role

ALGORITHM = "HS256"
_REQUIRED = ["exp", "iat", "jti", "sub", "kid"]  # and a role, a list of permissions or both
# Revocations are kept this long: longer than any token can live (the largest ttl the config accepts).
REVOCATION_KEPT = 10**7


def _key_id(key: ApiKey) -> str:
    """Which key, not just which name: a key replaced under the same name does not keep the old one's tokens."""
    return key.sha256[:16]


def load_or_make_secret(path: Path) -> bytes:
    """The signing secret; made (32 random bytes, mode 0600) when the file does not exist yet."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def grant(key: ApiKey, role: Role | None, asked: frozenset[Permission] | None) -> frozenset[Permission]:
    """What a token of `key` asking for `role` and `asked` may do: the key's permissions, cut to the role's bundle
    and to `asked`. 403 for a role above the key's, or a permission the key (at that role) does not have."""
    if role is not None and (key.role is None or not key.role.allows(role)):
        held = f"role {key.role.value}" if key.role else "no role"
        raise Forbidden(f"key {key.name!r} has {held}: it cannot issue a {role.value} token")
    available = key.granted & BUNDLES[role] if role is not None else key.granted
    if asked is None:
        return available
    if not asked <= available:
        missing = ", ".join(sorted(asked - available))
        raise Forbidden(
            f"key {key.name!r} cannot give a token what it does not have: {missing}",
            errors=[{"field": "permissions", "message": f"not the key's: {missing}"}],
        )
    return asked


def narrowed(
    key: ApiKey, role: Role | None, listed: frozenset[Permission] | None, expires: datetime, scope: Scope
) -> ApiKey:
    """The principal of a token of `key` with `role`, `listed` and `scope`: never more than the key may do and
    see now, whatever the key had when the token was made (its role may have been lowered since, its list cut,
    its selector narrowed)."""
    granted = key.granted
    if role is not None:
        granted &= BUNDLES[role]
    if listed is not None:
        granted &= listed
    acting = role if role is not None and key.role is not None and key.role.allows(role) else key.role
    return replace(key, role=acting, permissions=granted, expires_at=expires, scope=key.scope.narrowed(scope))


def _scope(claims: dict[str, Any]) -> Scope:
    """The token's own selector and globs (ValueError when they do not parse: an invalid token)."""
    selector, names = claims.get("selector"), claims.get("names")
    if not isinstance(selector, str | None) or not isinstance(names, list | None):
        raise ValueError("selector or names of the wrong type")
    try:
        return Scope.of(selector, [str(name) for name in names or ()])
    except SelectorError as err:
        raise ValueError(str(err)) from None


def _listed(claims: dict[str, Any]) -> frozenset[Permission] | None:
    """The token's list of permissions, if it has one; a name this version does not know is dropped (a token can
    only lose by it). A token with neither a role nor a list is invalid."""
    if "permissions" not in claims:
        if "role" not in claims:
            raise ValueError("neither a role nor permissions")
        return None
    names = claims["permissions"]
    if not isinstance(names, list):
        raise ValueError("permissions is not a list")
    known = {str(p) for p in Permission}
    return frozenset(Permission(name) for name in names if name in known)


class TokenIssuer:
    def __init__(self, secret: bytes, revoked_path: Path) -> None:
        self._secret = secret
        self._revoked_path = revoked_path
        self._revoked: dict[str, float] = {}
        if revoked_path.exists():
            self._revoked = {str(k): float(v) for k, v in json.loads(revoked_path.read_text()).items()}

    def issue(
        self, key: ApiKey, role: Role | None, permissions: frozenset[Permission] | None, ttl: int, scope: Scope
    ) -> dict[str, Any]:
        """A token of `key` (403 when it asks for more than the key has: `grant`), living `ttl` seconds and never
        past the key's own expiry, seeing what `scope` and the key's own both admit. A key without a role gets its
        list: a token carries one or both. The answer has the claims, `granted`, `scope` and the token."""
        granted = grant(key, role, permissions)
        now = int(time.time())
        exp = now + ttl
        if key.expires_at is not None:
            exp = min(exp, int(key.expires_at.timestamp()))
        if role is None and permissions is None:
            permissions = granted
        claims: dict[str, Any] = {"sub": key.name, "kid": _key_id(key), "iat": now, "exp": exp, "jti": uuid.uuid4().hex}
        if role is not None:
            claims["role"] = role.value
        if permissions is not None:
            claims["permissions"] = sorted(permissions)
        if scope.selector is not None:
            claims["selector"] = scope.selector
        if scope.name_globs:
            claims["names"] = sorted(scope.name_globs[0])
        effective = key.scope.narrowed(scope)
        return {
            **claims,
            "granted": granted,
            "scope": effective,
            "token": jwt.encode(claims, self._secret, algorithm=ALGORITHM),
        }

    def verify(self, token: str, keys: Iterable[ApiKey]) -> tuple[ApiKey, str]:
        """The principal a token stands for, and the token's id; 401 saying expired, revoked or invalid (or that
        its key expired), and nothing more."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={"require": _REQUIRED})
            role = Role(claims["role"]) if "role" in claims else None
            listed = _listed(claims)
            scope = _scope(claims)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired", errors=[{"field": "Authorization", "message": "expired"}]) from None
        except (jwt.InvalidTokenError, ValueError):
            raise Unauthorized("invalid token", errors=[{"field": "Authorization", "message": "invalid"}]) from None
        if claims["jti"] in self._revoked:
            raise Unauthorized("token revoked", errors=[{"field": "Authorization", "message": "revoked"}])
        key = next(
            (k for k in keys if k.name == claims["sub"] and _key_id(k) == claims["kid"] and not k.disabled), None
        )
        if key is None:  # its key was removed or disabled: so is the token
            raise Unauthorized("invalid token", errors=[{"field": "Authorization", "message": "invalid"}])
        if key.expired():
            raise Unauthorized("key expired", errors=[{"field": "Authorization", "message": "its key expired"}])
        return narrowed(key, role, listed, datetime.fromtimestamp(claims["exp"], UTC), scope), claims["jti"]

    def revoke(self, jti: str) -> None:
        now = time.time()
        until = now + REVOCATION_KEPT
        self._revoked = {k: v for k, v in self._revoked.items() if v > now}
        self._revoked[jti] = until
        tmp = self._revoked_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._revoked))
        os.chmod(tmp, 0o600)
        tmp.replace(self._revoked_path)
