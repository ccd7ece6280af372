"""The engine's `filters` query parameter, built from a list query moorage has already validated."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def engine_filters(query: Mapping[str, Any], *names: str) -> str:
    """Each of `names` the query holds, as the engine's filter of that name; the engine filters, moorage pages
    (Docker's limit is not a page).

    The engine reads `name` as a regular expression; the queries admit only [a-zA-Z0-9_.-] there, so "." is all
    there is to escape for it to match a part of the name, as `docker ps --filter name=` users expect.
    """
    filters: dict[str, list[str]] = {}
    for name in names:
        value = query.get(name)
        if value is None or value == []:
            continue
        if isinstance(value, bool):
            filters[name] = ["true" if value else "false"]
        elif isinstance(value, list):
            filters[name] = [str(item) for item in value]
        elif name == "name":
            filters[name] = [str(value).replace(".", r"\.")]
        else:
            filters[name] = [str(value)]
    return json.dumps(filters)
