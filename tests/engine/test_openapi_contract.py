"""The published OpenAPI document as the tools that read it see it: a client generated from the live document with
openapi-python-client drives a live daemon and the real engine; openapi-spec-validator and redocly's recommended
rules find no error in it.

The client is generated once per module (about a second) from what a `moorage serve` answers, into a directory
of the module's own, and imported from there.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from ..helpers import ROOT, TEST_IMAGE, TEST_LABEL, Daemon, docker_cli

# Installed by scripts/setup.sh (its `tools` step), pinned there.
REDOCLY = ROOT / ".venv" / "node" / "node_modules" / ".bin" / "redocly"
# What redocly's recommended rules still warn about, and why each stays:
# - operation-4xx-response: /healthz and /readyz read nothing from the request, so no 4xx is theirs to answer;
# - no-unused-components: the NDJSON line schemas (Event, Heartbeat, StreamEnd, PullProgress) are referenced from
#   the streams' `x-itemSchema`, an extension redocly does not follow; generated clients get them as models;
# - operation-2xx-response: the exec session (exec/ws) succeeds with a WebSocket upgrade, 101, and frames after it.
ACCEPTED_WARNINGS = {"operation-4xx-response", "no-unused-components", "operation-2xx-response"}
# openapi-python-client has no reader for NDJSON: told to read it as the text the document says it is, it
# answers a stream's lines as one string (the document describes the stream as a string, each line beside it).
# Nor for a tar, which it sends and reads as bytes when told to (the README's client.yml says both).
GENERATOR_CONFIG = (
    "post_hooks: []\ncontent_type_overrides:\n  application/x-ndjson: text/plain\n"
    "  application/x-tar: application/octet-stream\n"
)
PACKAGE = "moorage_client"


@pytest.fixture(scope="module")
def document(live: tuple[Daemon, str]) -> dict[str, Any]:
    daemon, key = live
    resp = httpx.get(f"{daemon.url}/api/v1/openapi.json", headers={"X-API-Key": key}, timeout=30)
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json()
    return body


@pytest.fixture(scope="module")
def document_file(document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture(scope="module")
def generation(document_file: Path) -> Iterator[tuple[ModuleType, str]]:
    """The generated package, imported, and what the generator said while generating it."""
    out = document_file.parent
    (out / "config.yml").write_text(GENERATOR_CONFIG)
    generator = Path(sys.executable).parent / "openapi-python-client"
    where = ["--path", str(document_file), "--config", str(out / "config.yml"), "--output-path", str(out / PACKAGE)]
    done = subprocess.run(
        [str(generator), "generate", "--meta", "none", *where],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE), done.stdout + done.stderr
    finally:
        sys.path.remove(str(out))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def generated(generation: tuple[ModuleType, str]) -> ModuleType:
    return generation[0]


def api(package: ModuleType, tag: str, operation: str) -> Any:
    """A generated operation's module: `api/<tag>/<operationId>.py`."""
    return importlib.import_module(f"{package.__name__}.api.{tag}.{operation}")


def model(package: ModuleType, name: str) -> Any:
    return getattr(importlib.import_module(f"{package.__name__}.models"), name)


@pytest.fixture
def session(live: tuple[Daemon, str], generated: ModuleType) -> Iterator[Any]:
    """The generated client, authenticating with the daemon's admin key as a bearer token."""
    daemon, key = live
    with generated.AuthenticatedClient(base_url=daemon.url, token=key, timeout=httpx.Timeout(60)) as client:
        yield client


def test_the_generator_reads_every_operation_without_a_warning(
    document: dict[str, Any], generation: tuple[ModuleType, str]
) -> None:
    package, said = generation
    assert "Warning" not in said and "WARNING" not in said, said
    for item in document["paths"].values():
        for op in item.values():
            [tag] = op["tags"]
            assert callable(api(package, tag, op["operationId"]).sync_detailed), op["operationId"]


def test_a_generated_client_creates_starts_reads_and_removes_a_container(session: Any, generated: ModuleType) -> None:
    list_containers = api(generated, "containers", "list_containers")
    create_container = api(generated, "containers", "create_container")
    start_container = api(generated, "containers", "start_container")
    delete_container = api(generated, "containers", "delete_container")
    get_container = api(generated, "containers", "get_container")
    get_container_logs = api(generated, "logs", "get_container_logs")
    error = model(generated, "Error")
    case = f"contract-{uuid.uuid4().hex[:10]}"
    label = f"{TEST_LABEL}={case}"

    listed = list_containers.sync_detailed(client=session, label=[label])
    assert listed.status_code == 200 and listed.parsed.data.total == 0 and listed.parsed.data.items == []

    body = model(generated, "ContainerCreate")(
        image=TEST_IMAGE,
        name=case,
        command=["sh", "-c", "echo hello; echo oops >&2; exec sleep 600"],
        labels=model(generated, "ContainerCreateLabels").from_dict({TEST_LABEL: case}),
        network="none",
    )
    created = create_container.sync_detailed(client=session, body=body)
    assert created.status_code == 201, created.content
    container_id = created.parsed.data.id
    try:
        assert created.parsed.data.name == case and created.parsed.data.state.running is False
        assert created.headers["Location"] == f"/api/v1/containers/{container_id}"

        started = start_container.sync_detailed(container_id=container_id, client=session)
        assert started.status_code == 200 and started.parsed.data.state.running is True

        listed = list_containers.sync_detailed(client=session, label=[label])
        assert listed.parsed.data.total == 1 and [c.id for c in listed.parsed.data.items] == [container_id]

        # The echoes are written as the container starts: read until both are there.
        logs = get_container_logs.sync_detailed(container_id=container_id, client=session)
        for _ in range(50):
            if len(logs.parsed.data.items) == 2:
                break
            time.sleep(0.2)
            logs = get_container_logs.sync_detailed(container_id=container_id, client=session)
        assert logs.status_code == 200 and logs.parsed.data.truncated is False
        assert sorted((line.stream, line.line) for line in logs.parsed.data.items) == [
            ("stderr", "oops"),
            ("stdout", "hello"),
        ]
        # openapi-python-client reads one media type per status, the first (JSON): text is read as text through
        # the generated client's own httpx client, which carries its base URL and credentials.
        text = session.get_httpx_client().get(f"/api/v1/containers/{container_id}/logs", params={"format": "text"})
        assert text.status_code == 200 and text.headers["Content-Type"].startswith("text/plain")
        assert sorted(text.text.splitlines()) == ["hello", "oops"]

        refused = delete_container.sync_detailed(container_id=container_id, client=session)
        assert refused.status_code == 409 and isinstance(refused.parsed, error) and refused.parsed.code == 409

        deleted = delete_container.sync_detailed(container_id=container_id, client=session, force=True)
        assert deleted.status_code == 200 and deleted.parsed.data.id == container_id
    finally:
        subprocess.run(["docker", "rm", "-f", container_id], capture_output=True, check=False)

    missing = get_container.sync_detailed(container_id=container_id, client=session)
    assert missing.status_code == 404 and isinstance(missing.parsed, error) and missing.parsed.code == 404
    assert missing.parsed.message
    gone = start_container.sync(container_id=container_id, client=session)
    assert isinstance(gone, error) and gone.code == 404
    assert docker_cli("ps", "-aq", "--filter", f"label={label}") == ""


def test_a_generated_client_reads_a_stream_as_text_and_its_lines_with_the_line_models(
    session: Any, generated: ModuleType
) -> None:
    stream_events = api(generated, "events", "stream_events")
    answered = stream_events.sync_detailed(client=session, since="1s", until="0s")
    assert answered.status_code == 200 and answered.headers["Content-Type"].startswith("application/x-ndjson")
    assert isinstance(answered.parsed, str)
    *events, last = [json.loads(line) for line in answered.parsed.splitlines()]
    end = model(generated, "StreamEnd").from_dict(last)
    assert end.end.value == "done"
    assert all(model(generated, "Event").from_dict(event).action for event in events)


def test_the_document_passes_openapi_spec_validator(document: dict[str, Any]) -> None:
    validate(document)


def test_redocly_recommended_rules_find_no_error(document_file: Path) -> None:
    if not REDOCLY.exists():
        pytest.fail(f"{REDOCLY} is missing: scripts/setup.sh installs it")
    env = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"}
    done = subprocess.run(
        [str(REDOCLY), "lint", "--extends=recommended", "--format=json", str(document_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    report = json.loads(done.stdout)
    problems = [(p["severity"], p["ruleId"], p["message"]) for p in report["problems"]]
    assert report["totals"]["errors"] == 0, problems
    assert {rule for severity, rule, _ in problems if severity == "warn"} <= ACCEPTED_WARNINGS, problems
