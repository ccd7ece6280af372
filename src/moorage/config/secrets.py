"""A secret read from its file, as the deploy hooks' and the webhooks' are: never from config.toml itself."""

from __future__ import annotations

from pathlib import Path

from marshmallow import ValidationError

# GitHub's and Gitea's advice: a secret long enough that its HMAC cannot be guessed.
MIN_SECRET_BYTES = 16


def secret_from_file(path: str) -> bytes:
    """The file's bytes without a trailing newline; a ValidationError naming `secret_file` if it cannot be read or
    is too short."""
    try:
        secret = Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as err:
        raise ValidationError(f"cannot read: {err.strerror}", "secret_file") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ValidationError(f"the secret must be at least {MIN_SECRET_BYTES} bytes", "secret_file")
    return secret
