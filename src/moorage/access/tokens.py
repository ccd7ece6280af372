"""Bearer tokens: short-lived JWTs (HS256, PyJWT) issued to API keys, revocable, tied to their key.

A token carries its key's name (`sub`), a role no higher than the key's, `iat`, `exp` and a `jti`.
It is honoured only while its key is configured and enabled, and never above the key's role now;
revoked `jti`s are kept in the state directory until the tokens would have expired anyway.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt

from moorage.errors import Unauthorized
from moorage.settings import ApiKey, Role

ALGORITHM = "HS256"
_REQUIRED = ["exp", "iat", "jti", "sub", "role", "kid"]
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


class TokenIssuer:
    def __init__(self, secret: bytes, revoked_path: Path) -> None:
        self._secret = secret
        self._revoked_path = revoked_path
        self._revoked: dict[str, float] = {}
        if revoked_path.exists():
            self._revoked = {str(k): float(v) for k, v in json.loads(revoked_path.read_text()).items()}

    def issue(self, key: ApiKey, role: Role, ttl: int) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "sub": key.name,
            "kid": _key_id(key),
            "role": role.value,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        return {**claims, "token": jwt.encode(claims, self._secret, algorithm=ALGORITHM)}

    def verify(self, token: str, keys: Iterable[ApiKey]) -> ApiKey:
        """The principal a token stands for; 401 saying expired, revoked or invalid, and nothing more."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={"require": _REQUIRED})
            role = Role(claims["role"])
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
        return replace(key, role=role if key.role.allows(role) else key.role)

    def revoke(self, jti: str) -> None:
        now = time.time()
        until = now + REVOCATION_KEPT
        self._revoked = {k: v for k, v in self._revoked.items() if v > now}
        self._revoked[jti] = until
        tmp = self._revoked_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._revoked))
        os.chmod(tmp, 0o600)
        tmp.replace(self._revoked_path)
