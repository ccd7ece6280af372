"""Which containers are moorage's own: the labels it sets on every container it creates.

A container also inherits the labels of its image, so a label's presence proves nothing: an image built
with `LABEL moorage.policy=1` would make every container made from it, outside moorage too, look like one
of moorage's (followed by the bind watch, killed, its restart policy rewritten). So POLICY_LABEL's value
is a random mark of this daemon, made on its first start and kept in the state dir (mode 0600): no image
author can know it in advance. Containers moorage made before the mark existed carry "1": one of those is
taken as moorage's only if its image does not carry that label itself (an image inspect, for those only).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError

# Set on every container moorage creates, to this daemon's mark: its binds passed the policy, and must still at
# each start.
POLICY_LABEL = "moorage.policy"
# Set on every container moorage creates, to a value of its own: a create that timed out is found by it.
CREATE_LABEL = "moorage.create"
MARK_FILE = "policy-mark"
LEGACY_MARK = "1"  # what moorage set before it had a mark of its own
_MARK = re.compile(r"[0-9a-f]{32}")


@functools.cache
def policy_mark(state_dir: Path) -> str:
    """This daemon's mark, read from state_dir, or made there (0600) on the first call; once per daemon (the app
    asks at start, so that a file that is not a mark stops start-up rather than a create).

    Written whole to a file of its own and linked into place, so that no reader, not even another daemon on the
    same state dir, ever reads a half-written mark: an empty one would match any image's `moorage.policy=`."""
    path = state_dir / MARK_FILE
    if not path.exists():
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, written = tempfile.mkstemp(dir=state_dir, prefix=f".{MARK_FILE}.")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(16) + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another daemon made it meanwhile: theirs holds
                os.link(written, path)
        finally:
            os.unlink(written)
    mark = path.read_text().strip()
    if not _MARK.fullmatch(mark):
        raise ValueError(f"{path} does not hold a mark of 32 hex digits: remove it to make a new one")
    return mark


async def is_moorages(docker: aiodocker.Docker, inspected: Mapping[str, Any], mark: str) -> bool:
    """Whether an inspected container was created by this daemon (or by moorage before it had a mark)."""
    value = (inspected["Config"].get("Labels") or {}).get(POLICY_LABEL)
    if value == mark:
        return True
    if value != LEGACY_MARK:
        return False
    try:
        image = await docker.images.inspect(inspected["Image"])
    except DockerError as err:
        if err.status != 404:
            raise
        return True  # its image is gone (removed by force): the label is the container's own
    return ((image.get("Config") or {}).get("Labels") or {}).get(POLICY_LABEL) != LEGACY_MARK
