"""The OpenAPI document: served to viewers, valid OpenAPI 3, and describing exactly the routes the router has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient

from moorage.app import create_app
from moorage.auth import declared_role, requires
from moorage.config import Role
from moorage.openapi import build_document, openapi_path

from .conftest import SERVER_KWARGS, make_settings, plain_key

DOCUMENT = "/api/v1/openapi.json"
METHODS = {"get", "post", "put", "patch", "delete"}
Operations = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture
async def viewer(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    settings = make_settings(tmp_path, {"viewer-key": "viewer"})
    client: TestClient = await aiohttp_client(
        create_app(settings), server_kwargs=SERVER_KWARGS, headers={"X-API-Key": plain_key("viewer-key")}
    )
    return client


@pytest.fixture
async def document(viewer: TestClient) -> dict[str, Any]:
    """The document as a viewer fetches it."""
    resp = await viewer.get(DOCUMENT)
    assert resp.status == 200 and resp.content_type == "application/json"
    body: dict[str, Any] = await resp.json()
    return body


def operations(document: dict[str, Any]) -> Operations:
    return {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def routes(app: web.Application) -> dict[tuple[str, str], Any]:
    """(method, path as OpenAPI writes it) -> handler, for every route but aiohttp's implicit HEADs."""
    return {
        (route.method, openapi_path(route.resource)): route.handler
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def test_the_document_is_valid_openapi_3(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    loaded = schemathesis.openapi.from_dict(document)
    loaded.validate()
    problems = [str(result.err()) for result in loaded.get_all_operations() if not result.ok()]
    assert not problems


def test_every_route_is_documented_and_nothing_else(viewer: TestClient, document: dict[str, Any]) -> None:
    routed = set(routes(viewer.app))
    assert len(routed) > 20
    assert set(operations(document)) == routed
    assert ("GET", DOCUMENT) in routed


def test_a_route_without_documentation_stops_the_build() -> None:
    app = web.Application()

    @requires(Role.VIEWER)
    async def undocumented(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/v1/nothing/{thing}", undocumented)
    with pytest.raises(RuntimeError, match=r"GET /api/v1/nothing/\{thing\} is not @documented"):
        build_document(app.router)


def test_every_operation_documents_its_path_variables(document: dict[str, Any]) -> None:
    for (method, path), op in operations(document).items():
        variables = set(re.findall(r"\{([^}]+)\}", path))
        in_path = {p["name"] for p in op["parameters"] if p["in"] == "path"}
        assert in_path == variables, f"{method} {path}"
        assert all(p["required"] for p in op["parameters"] if p["in"] == "path"), f"{method} {path}"


def test_query_parameters_and_bodies_come_from_the_request_schemas(document: dict[str, Any]) -> None:
    ops = operations(document)
    listing = {p["name"]: p for p in ops["GET", "/api/v1/containers"]["parameters"]}
    assert set(listing) == {"status", "name", "label", "limit", "offset"}
    assert listing["limit"]["schema"] == {"type": "integer", "default": 100, "minimum": 1, "maximum": 1000}
    assert listing["label"]["schema"]["type"] == "array"  # repeatable
    assert "running" in listing["status"]["schema"]["enum"]
    kill = {p["name"]: p for p in ops["POST", "/api/v1/containers/{container_id}/kill"]["parameters"]}
    assert kill["signal"]["schema"]["default"] == "SIGKILL"
    create = ops["POST", "/api/v1/containers"]["requestBody"]["content"]["application/json"]["schema"]
    body = document["components"]["schemas"][create["$ref"].rsplit("/", 1)[1]]
    assert body["required"] == ["image"] and body["additionalProperties"] is False
    assert {"image", "ports", "volumes", "healthcheck", "start"} <= set(body["properties"])


def test_every_operation_documents_its_success_and_its_errors(document: dict[str, Any]) -> None:
    error = {"$ref": "#/components/schemas/Error"}
    assert set(document["components"]["schemas"]["Error"]["required"]) == {"code", "message", "errors"}
    for (method, path), op in operations(document).items():
        statuses = {int(status) for status in op["responses"]}
        assert any(200 <= s < 300 for s in statuses), f"{method} {path}"
        for status in statuses - {200, 201}:
            assert op["responses"][str(status)]["content"]["application/json"]["schema"] == error, (
                method,
                path,
                status,
            )
        if op.get("security") != []:
            assert {400, 401, 403, 429} <= statuses, f"{method} {path}"
        if method != "GET":
            assert 503 in statuses, f"{method} {path}: refused when the audit cannot be written"
        if "requestBody" in op:
            assert {413, 415} <= statuses, f"{method} {path}"


def test_success_is_wrapped_in_the_envelope_and_streams_are_described(document: dict[str, Any]) -> None:
    ops = operations(document)
    detail = ops["GET", "/api/v1/containers/{container_id}"]["responses"]["200"]["content"]["application/json"]
    envelope, data = detail["schema"]["allOf"]
    assert envelope == {"$ref": "#/components/schemas/Envelope"}
    assert data["properties"]["data"] == {"$ref": "#/components/schemas/ContainerDetail"}
    logs = ops["GET", "/api/v1/containers/{container_id}/logs"]["responses"]["200"]["content"]
    assert set(logs) == {"application/json", "text/plain", "application/x-ndjson"}
    events = ops["GET", "/api/v1/events"]["responses"]["200"]["content"]
    assert events == {"application/x-ndjson": {"schema": {"$ref": "#/components/schemas/Event"}}}
    pull = ops["POST", "/api/v1/images/pull"]["responses"]["200"]["content"]
    assert set(pull) == {"application/json", "application/x-ndjson"}
    assert set(ops["GET", "/metrics"]["responses"]["200"]["content"]) == {"text/plain"}
    assert ops["POST", "/api/v1/containers"]["responses"].keys() >= {"201", "403", "404", "409"}


def test_security_schemes_and_roles(viewer: TestClient, document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["Bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"ApiKey": []}, {"Bearer": []}]
    ops = operations(document)
    for key, handler in routes(viewer.app).items():
        role = declared_role(handler)
        if isinstance(role, Role):
            assert ops[key]["x-moorage-role"] == role.value and "security" not in ops[key], key
        else:
            assert ops[key]["security"] == [], key
    assert {key[1] for key, op in ops.items() if op.get("security") == []} == {"/healthz", "/readyz"}
    assert ops["DELETE", "/api/v1/containers/{container_id}"]["x-moorage-role"] == "admin"
    assert ops["POST", "/api/v1/containers/{container_id}/stop"]["x-moorage-role"] == "operator"
