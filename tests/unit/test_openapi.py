"""The OpenAPI document: served to viewers, valid OpenAPI 3, and describing exactly the routes the router has."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from marshmallow import Schema, ValidationError

from moorage.app import create_app
from moorage.schemas.containers import ContainerListQuery
from moorage.schemas.create import ContainerCreateSchema
from moorage.schemas.lifecycle import KillQuery
from moorage.schemas.logs import LogQuery
from moorage.settings import Permission, least_role
from moorage.web.openapi import build_document, openapi_path
from moorage.web.operations import documented
from moorage.web.roles import AUTHENTICATED, declared_permission, requires

from ..helpers import SERVER_KWARGS, make_settings, plain_key

DOCUMENT = "/api/v1/openapi.json"
METHODS = {"get", "post", "put", "patch", "delete"}
Operations = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[web.Application, bytes]:
    """An app, and its document as a viewer fetches it: made once for the module, since every test here only
    reads them and building the two took a tenth of a second a test."""
    app = create_app(make_settings(tmp_path_factory.mktemp("openapi"), {"viewer-key": "viewer"}))

    async def fetch() -> bytes:
        server = TestServer(app, **SERVER_KWARGS)
        async with TestClient(server, headers={"X-API-Key": plain_key("viewer-key")}) as viewer:
            resp = await viewer.get(DOCUMENT)
            assert resp.status == 200 and resp.content_type == "application/json"
            return await resp.read()

    return app, asyncio.run(fetch())


@pytest.fixture
def app(served: tuple[web.Application, bytes]) -> web.Application:
    """The app that served `document`."""
    return served[0]


@pytest.fixture
def document(served: tuple[web.Application, bytes]) -> dict[str, Any]:
    """The document as a viewer fetches it, read anew for each test."""
    body: dict[str, Any] = json.loads(served[1])
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


def test_every_route_is_documented_and_nothing_else(app: web.Application, document: dict[str, Any]) -> None:
    routed = set(routes(app))
    assert len(routed) > 20
    assert set(operations(document)) == routed
    assert ("GET", DOCUMENT) in routed


def test_a_route_without_documentation_stops_the_build() -> None:
    app = web.Application()

    @requires(Permission.CONTAINERS_READ)
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
    assert set(listing) == {"status", "health", "name", "label", "limit", "offset"}
    assert set(listing["health"]["schema"]["enum"]) == {"healthy", "unhealthy", "starting", "none"}
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
        assert any(200 <= s < 300 for s in statuses) or path.endswith("/ws"), f"{method} {path}"
        for status in statuses - {101, 200, 201}:
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
            assert {408, 413, 415} <= statuses, f"{method} {path}"


def test_success_is_wrapped_in_the_envelope_and_streams_are_described(document: dict[str, Any]) -> None:
    ops = operations(document)
    detail = ops["GET", "/api/v1/containers/{container_id}"]["responses"]["200"]["content"]["application/json"]
    envelope, data = detail["schema"]["allOf"]
    assert envelope == {"$ref": "#/components/schemas/Envelope"}
    assert data["properties"]["data"] == {"$ref": "#/components/schemas/ContainerDetail"}
    logs = ops["GET", "/api/v1/containers/{container_id}/logs"]["responses"]["200"]["content"]
    assert set(logs) == {"application/json", "text/plain", "application/x-ndjson", "text/event-stream"}
    events = ops["GET", "/api/v1/events"]["responses"]["200"]["content"]
    assert set(events) == {"application/x-ndjson", "text/event-stream"}
    lines = [{"$ref": f"#/components/schemas/{name}"} for name in ("Event", "Heartbeat", "StreamEnd")]
    assert events["application/x-ndjson"]["x-itemSchema"] == {"anyOf": lines}
    pull = ops["POST", "/api/v1/images/pull"]["responses"]["200"]["content"]
    assert set(pull) == {"application/json", "application/x-ndjson"}
    assert set(ops["GET", "/metrics"]["responses"]["200"]["content"]) == {"text/plain"}
    assert ops["POST", "/api/v1/containers"]["responses"].keys() >= {"201", "403", "404", "409"}


def test_the_session_is_documented_as_a_websocket_upgrade(document: dict[str, Any]) -> None:
    """Its success is the 101, with frames after it rather than the envelope; a GET without the upgrade is 426."""
    session = operations(document)["GET", "/api/v1/containers/{container_id}/exec/ws"]
    assert session["responses"]["101"]["content"] == {}
    assert {"400", "404", "409", "426", "429"} <= set(session["responses"])
    assert {p["name"]: p["required"] for p in session["parameters"] if p["in"] == "query"} == {
        "command": True,
        "tty": False,
        "user": False,
        "working_dir": False,
    }


def test_success_envelopes_require_their_data(document: dict[str, Any]) -> None:
    """A generator reads `required` per part of an allOf: the envelope's data is required where it is typed."""
    enveloped = 0
    for (method, path), op in operations(document).items():
        for status, response in op["responses"].items():
            schema = response["content"].get("application/json", {}).get("schema", {})
            if "allOf" in schema:
                envelope, data = schema["allOf"]
                assert envelope == {"$ref": "#/components/schemas/Envelope"}, (method, path, status)
                assert data["required"] == ["data"] and "data" in data["properties"], (method, path, status)
                enveloped += 1
    assert enveloped > 20


def test_streams_are_text_to_a_generator_with_each_line_described(document: dict[str, Any]) -> None:
    """A generator that reads NDJSON as JSON would wait for the end of an endless stream and fail on its second
    line: a stream is a string, the schema of its lines is beside it."""
    streams = events = 0
    for (method, path), op in operations(document).items():
        for media_type, media in op["responses"].get("200", {}).get("content", {}).items():
            if media_type == "application/x-ndjson":
                assert media["schema"]["type"] == "string", (method, path)
                assert media["x-itemSchema"]["anyOf"], (method, path)
                streams += 1
            elif media_type == "text/event-stream":
                assert set(media["schema"]["required"]) == {"event", "data"}, (method, path)
                assert media["x-itemSchema"]["anyOf"], (method, path)
                events += 1
            elif media_type.startswith("text/"):
                assert media["schema"] == {"type": "string"}, (method, path)
    assert streams == 6  # logs, merged logs, events, pull, recreate, exec
    assert events == 3  # logs, merged logs, events


# The operationIds are what generated clients call their functions: verbs on the resource, unique.
OPERATION_IDS = {
    ("GET", "/healthz"): "get_liveness",
    ("GET", "/readyz"): "get_readiness",
    ("POST", "/api/v1/auth/tokens"): "issue_token",
    ("DELETE", "/api/v1/auth/tokens/{jti}"): "revoke_token",
    ("GET", "/api/v1/auth/whoami"): "get_whoami",
    ("GET", "/api/v1/audit"): "list_audit_lines",
    ("GET", "/api/v1/containers"): "list_containers",
    ("POST", "/api/v1/containers"): "create_container",
    ("GET", "/api/v1/containers/{container_id}"): "get_container",
    ("DELETE", "/api/v1/containers/{container_id}"): "delete_container",
    ("PATCH", "/api/v1/containers/{container_id}"): "update_container",
    ("POST", "/api/v1/containers/{container_id}/rename"): "rename_container",
    ("POST", "/api/v1/containers/{container_id}/recreate"): "recreate_container",
    ("GET", "/api/v1/containers/{container_id}/exec/ws"): "open_exec_session",
    ("POST", "/api/v1/hooks/{name}"): "run_hook",
    ("POST", "/api/v1/containers/{container_id}/exec"): "exec_in_container",
    ("POST", "/api/v1/containers/{container_id}/wait"): "wait_container",
    ("GET", "/api/v1/containers/{container_id}/image-update"): "check_image_update",
    ("GET", "/api/v1/image-updates"): "list_image_updates",
    **{
        ("POST", f"/api/v1/containers/{{container_id}}/{action}"): f"{action}_container"
        for action in ("start", "stop", "restart", "pause", "unpause", "kill")
    },
    ("GET", "/api/v1/containers/{container_id}/logs"): "get_container_logs",
    ("GET", "/api/v1/containers/{container_id}/files"): "get_container_files",
    ("PUT", "/api/v1/containers/{container_id}/files"): "put_container_files",
    ("GET", "/api/v1/events"): "stream_events",
    ("GET", "/api/v1/logs"): "get_merged_logs",
    ("GET", "/api/v1/images"): "list_images",
    ("POST", "/api/v1/images/pull"): "pull_image",
    ("DELETE", "/api/v1/images/{image_id}"): "delete_image",
    ("GET", "/api/v1/volumes"): "list_volumes",
    ("POST", "/api/v1/volumes"): "create_volume",
    ("GET", "/api/v1/volumes/{name}"): "get_volume",
    ("DELETE", "/api/v1/volumes/{name}"): "delete_volume",
    ("GET", "/api/v1/metrics/resources"): "get_host_resources",
    ("GET", "/api/v1/metrics/resources/history"): "get_host_resources_history",
    ("GET", "/api/v1/metrics/containers"): "list_container_metrics",
    ("GET", "/api/v1/metrics/containers/{container_id}"): "get_container_metrics",
    ("GET", "/api/v1/metrics/containers/history"): "list_container_history",
    ("GET", "/api/v1/metrics/containers/{container_id}/history"): "get_container_history",
    ("GET", "/api/v1/networks"): "list_networks",
    ("POST", "/api/v1/networks"): "create_network",
    ("GET", "/api/v1/networks/{network_id}"): "get_network",
    ("DELETE", "/api/v1/networks/{network_id}"): "delete_network",
    ("POST", "/api/v1/networks/{network_id}/connect"): "connect_network",
    ("POST", "/api/v1/networks/{network_id}/disconnect"): "disconnect_network",
    ("GET", "/api/v1/system/df"): "get_disk_usage",
    ("POST", "/api/v1/containers/prune"): "prune_containers",
    ("POST", "/api/v1/images/prune"): "prune_images",
    ("POST", "/api/v1/volumes/prune"): "prune_volumes",
    ("POST", "/api/v1/networks/prune"): "prune_networks",
    ("POST", "/api/v1/system/prune"): "prune_system",
    ("GET", "/api/v1/policy"): "get_policy",
    ("GET", "/metrics"): "get_prometheus_metrics",
    ("GET", "/api/v1/alerts"): "list_alerts",
    ("GET", "/api/v1/alerts/deliveries"): "list_deliveries",
    ("POST", "/api/v1/alerts/{name}/test"): "test_alert",
    ("GET", DOCUMENT): "get_openapi_document",
}


def test_operation_ids_are_verbs_on_resources(document: dict[str, Any]) -> None:
    ids = {key: op["operationId"] for key, op in operations(document).items()}
    assert ids == OPERATION_IDS
    assert len(set(ids.values())) == len(ids)


def test_a_handler_name_that_is_no_verb_or_is_taken_stops_the_build() -> None:
    for names in (["containers"], ["list_things", "list_things"]):
        app = web.Application()
        for index, name in enumerate(names):

            @requires(Permission.CONTAINERS_READ)
            @documented("A thing", tag="meta")
            async def handler(request: web.Request) -> web.Response:
                return web.Response()

            handler.__name__ = name
            app.router.add_get(f"/api/v1/things/{index}", handler)
        with pytest.raises(RuntimeError, match=f"its handler's name '{names[-1]}' is not a new snake_case verb"):
            build_document(app.router)


def test_operations_are_tagged_by_resource(document: dict[str, Any]) -> None:
    tags = [tag["name"] for tag in document["tags"]]
    assert tags == [
        "containers",
        "logs",
        "events",
        "images",
        "volumes",
        "networks",
        "system",
        "policy",
        "metrics",
        "alerts",
        "auth",
        "audit",
        "hooks",
        "health",
        "meta",
    ]
    assert all(tag["description"] for tag in document["tags"])
    ops = operations(document)
    assert all(len(op["tags"]) == 1 and op["tags"][0] in tags for op in ops.values())
    assert {key for key, op in ops.items() if op["tags"] == ["containers"]} == {
        key for key in ops if key[1].startswith("/api/v1/containers") and not key[1].endswith("/logs")
    } | {("GET", "/api/v1/image-updates")}
    assert ops["GET", "/metrics"]["tags"] == ["metrics"] and ops["GET", DOCUMENT]["tags"] == ["meta"]
    with pytest.raises(ValueError, match="tag 'things' is not one of"):
        documented("A thing", tag="things")


def test_servers_and_license(document: dict[str, Any]) -> None:
    """The paths start at the daemon's root (/api/v1/..., /healthz): the server is that root, relative to
    wherever the document was fetched from."""
    assert [server["url"] for server in document["servers"]] == ["/"]
    assert document["info"]["license"] == {"name": "MIT", "identifier": "MIT"}


def any_of_options(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from any_of_options(item, f"{where}[{index}]")
    elif isinstance(node, dict):
        for index, option in enumerate(node.get("anyOf", [])):
            yield f"{where}.anyOf[{index}]", option
        for key, value in node.items():
            yield from any_of_options(value, f"{where}.{key}")


def test_every_any_of_option_is_typed(document: dict[str, Any]) -> None:
    """A generator types a value by its options: one without a type is `Any` to it."""
    options = list(any_of_options(document, "#"))
    assert len(options) > 40
    assert [where for where, option in options if not {"type", "$ref"} & set(option)] == []


def test_security_schemes_permissions_and_roles(app: web.Application, document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["Bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"ApiKey": []}, {"Bearer": []}]
    ops = operations(document)
    for key, handler in routes(app).items():
        needed = declared_permission(handler)
        if isinstance(needed, Permission):
            assert ops[key]["x-moorage-permission"] == needed.value and "security" not in ops[key], key
            assert ops[key]["x-moorage-role"] == least_role(needed).value, key
        elif needed == AUTHENTICATED:  # any valid credential
            assert ops[key]["x-moorage-role"] == "viewer" and "x-moorage-permission" not in ops[key], key
        else:
            assert ops[key]["security"] == [], key
    # A hook's call is signed with its secret instead.
    public = {"/healthz", "/readyz", "/api/v1/hooks/{name}"}
    assert {key[1] for key, op in ops.items() if op.get("security") == []} == public
    assert ops["DELETE", "/api/v1/containers/{container_id}"]["x-moorage-role"] == "admin"
    assert ops["POST", "/api/v1/containers/{container_id}/stop"]["x-moorage-role"] == "operator"
    assert ops["POST", "/api/v1/containers/{container_id}/exec"]["x-moorage-permission"] == "containers:exec"
    assert "x-moorage-permission" not in ops["GET", "/api/v1/auth/whoami"]


def subschemas(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema that stands for a value (a property, an item, a map's value, a parameter's, one option of
    several) in the document part `node`, with where it is."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from subschemas(item, f"{where}[{index}]")
        return
    if not isinstance(node, dict):
        return
    for name, value in node.get("properties", {}).items():
        yield f"{where}.{name}", value
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict) and node[key]:
            yield f"{where}.{key}", node[key]
    if "in" in node and "schema" in node:
        yield f"{where}({node['name']})", node["schema"]
    for key, value in node.items():
        yield from subschemas(value, f"{where}.{key}")


def test_every_property_and_parameter_has_a_type(document: dict[str, Any]) -> None:
    found = [*subschemas(document["components"], "components"), *subschemas(document["paths"], "paths")]
    assert len(found) > 200
    untyped = [where for where, schema in found if not {"type", "oneOf", "anyOf", "$ref"} & set(schema)]
    assert untyped == []
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs <= set(document["components"]["schemas"])


def published_patterns(document: dict[str, Any]) -> set[str]:
    patterns: set[str] = set()
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.add(node["pattern"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return patterns


# The regex syntax that Python's `re` and ECMA-262 (with the u flag, as JSON Schema asks) both read, and read
# alike: literals, classes, escapes of the syntax characters, \xHH and \uHHHH, groups, bounded and plain
# quantifiers, alternation; the anchors only around it all. Not `.`, `\s`, `\d` or `\w` (their sets differ), nor
# Python's own (?P, (?i), \Z.
_ESCAPE = r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|[tnrvf]|[\\^$.*+?()[\]{}|/])"
_COMMON_SYNTAX = re.compile(
    rf"(?:{_ESCAPE}|\[\^?(?:{_ESCAPE}|[^\]\\\[])+\]|\(\?:|\((?!\?)|\)|\||[*+?]|\{{[0-9]+(?:,[0-9]+)?\}}|[^\\.()[\]{{}}|*+?^$])*"
)


def test_published_patterns_are_anchored_and_mean_the_same_to_ecma_262(document: dict[str, Any]) -> None:
    patterns = published_patterns(document)
    assert len(patterns) > 15
    for pattern in patterns:
        assert pattern.startswith("^") and pattern.endswith("$"), pattern
        assert _COMMON_SYNTAX.fullmatch(pattern[1:-1]), pattern
        jsonschema_rs.validator_for({"pattern": pattern})  # refuses a pattern that is not a regex


def refused(schema: type[Schema], data: dict[str, Any], field: str) -> bool:
    try:
        schema().load(data)
    except ValidationError as err:
        return field in err.messages_dict
    return False


def property_schema(document: dict[str, Any], component: str, name: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][component]["properties"][name]
    return schema


def parameter_schema(document: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    [parameter] = [p for p in operations(document)[method, path]["parameters"] if p["name"] == name]
    schema: dict[str, Any] = parameter["schema"]
    return schema


CREATE = {"image": "busybox"}
AGREEMENT = [
    (
        lambda doc: property_schema(doc, "ContainerCreate", "name"),
        ContainerCreateSchema,
        CREATE,
        "name",
        ["web", "a.b-c_1", "9", "-web", ".web", "web\n", "", "we b", "wéb", "w" * 4096, "w" * 4097],
    ),
    (
        lambda doc: property_schema(doc, "ContainerCreate", "devices")["items"],
        ContainerCreateSchema,
        CREATE,
        "devices",
        ["/dev/fuse", "/dev/fuse:", "/dev/fuse:/dev/f", "/dev/fuse::rw", "/a:/b:", "dev/fuse", "/a:b", "/a:/b:rwx"],
    ),
    (
        lambda doc: property_schema(doc, "ContainerCreate", "restart_policy"),
        ContainerCreateSchema,
        CREATE,
        "restart_policy",
        ["no", "always", "unless-stopped", "on-failure", "on-failure:3", "on-failure:", "never", "no\n", "NO"],
    ),
    (
        lambda doc: property_schema(doc, "ContainerCreate", "memory"),
        ContainerCreateSchema,
        CREATE,
        "memory",
        ["512m", "1G", "64 MiB", "1.5g", 7 * 2**20, "512x", "m", 2**20, True, "1e9", "512m\n"],
    ),
    (
        lambda doc: parameter_schema(doc, "GET", "/api/v1/containers", "label")["items"],
        ContainerListQuery,
        {},
        "label",
        ["app", "app=web", "app=", "=web", " app", "\x1capp", "\ufeffapp", "app\n", "a\tb"],
    ),
    (
        lambda doc: parameter_schema(doc, "GET", "/api/v1/containers/{container_id}/logs", "tail"),
        LogQuery,
        {},
        "tail",
        ["all", "ALL", "0", "100", "999999999", "1000000000", "-1", "some", "²"],
    ),
    (
        lambda doc: parameter_schema(doc, "POST", "/api/v1/containers/{container_id}/kill", "signal"),
        KillQuery,
        {},
        "signal",
        [
            "KILL",
            "kill",
            "SigTerm",
            " HUP ",
            "SIGKILL",
            "9",
            "09",
            "64",
            "65",
            "0",
            "SIGFOO",
            "SIGSIGKILL",
            "²",
            "k ill",
        ],
    ),
]


@pytest.mark.parametrize(("published", "schema", "base", "field", "values"), AGREEMENT)
def test_published_schemas_accept_what_the_schema_accepts(
    document: dict[str, Any], published: Any, schema: type[Schema], base: dict[str, Any], field: str, values: list[Any]
) -> None:
    validator = jsonschema_rs.validator_for(published(document))
    for value in values:
        wrapped = [value] if field in ("devices", "label") else value
        assert validator.is_valid(value) is not refused(schema, {**base, field: wrapped}, field), repr(value)
