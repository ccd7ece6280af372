"""Scopes: label selectors in Kubernetes' syntax and meaning, name globs, and how a key's scope reaches its
tokens, the config and the API. A scope that admits too much lets a key see another team's containers, so the
meaning is checked against a reference written here rather than against the parser's own output."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import jwt
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.access.keys import hash_key
from moorage.access.tokens import ALGORITHM, TokenIssuer
from moorage.config.loader import key_toml, settings_from_mapping
from moorage.errors import ConfigError, Unauthorized
from moorage.selectors import Operator, Requirement, Scope, SelectorError, check_glob, parse_selector
from moorage.settings import ApiKey, Role

from ..helpers import app_client, key_headers

SHA = "0" * 64

# --- the parser ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("app=web", "app=web"),
        ("app==web", "app=web"),
        ("app = web", "app=web"),
        ("app == web", "app=web"),
        ("app!=web", "app!=web"),
        ("  app  !=  web  ", "app!=web"),
        ("x=", "x="),
        ("x==", "x="),
        ("x!=,y", "x!=,y"),
        ("env in (prod,stage)", "env in (prod,stage)"),
        ("env in ( stage , prod )", "env in (prod,stage)"),
        ("env in(prod)", "env in (prod)"),
        ("env notin (a,b)", "env notin (a,b)"),
        ("team", "team"),
        ("!legacy", "!legacy"),
        ("! legacy", "!legacy"),
        ("com.docker.compose.project=shop", "com.docker.compose.project=shop"),
        ("x.y/z=a.b-c_d", "x.y/z=a.b-c_d"),
        ("a = b ,  c in ( x , y ) , !d , e != f, g", "a=b,c in (x,y),!d,e!=f,g"),
        ("", None),
        ("   ", None),
    ],
)
def test_a_valid_selector_reads_as_its_canonical_text(text: str, canonical: str | None) -> None:
    assert Scope.of(text, None).selector == canonical


@pytest.mark.parametrize(
    "text",
    [
        "a,",
        "a=b,",
        ",a",
        "a,,b",
        "a, ",
        "a b",
        "a in ()",
        "a in ( )",
        "a in (b",
        "a in (b,)",
        "a in (,b)",
        "a notin ()",
        "a>3",
        "=b",
        "a b=c",
        "a=b=c",
        "a=-b",
        "-a=b",
        "a/=b",
        "!a=b",
        "a in b",
    ],
)
def test_an_invalid_selector_is_a_selector_error(text: str) -> None:
    with pytest.raises(SelectorError):
        Scope.of(text, None)


# --- the meaning, against a reference -------------------------------------------------------------------------

KEYS = ["app", "tier", "env", "x.y/z"]
VALUES = ["", "web", "db", "a.b", "x-1"]
FILLED = [value for value in VALUES if value]
SPACE = st.sampled_from(["", " ", "  "])
SOME_SPACE = st.sampled_from([" ", "  "])
# A requirement as data: (key, operator as written, values). Operators as written include "==".
Spec = tuple[str, str, tuple[str, ...]]


@st.composite
def requirement_specs(draw: st.DrawFn) -> Spec:
    key = draw(st.sampled_from(KEYS))
    op = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!"]))
    if op in ("=", "==", "!="):
        return key, op, (draw(st.sampled_from(VALUES)),)
    if op in ("in", "notin"):
        return key, op, tuple(draw(st.lists(st.sampled_from(FILLED), min_size=1, max_size=4)))
    return key, op, ()


def render(spec: Spec, draw: st.DrawFn) -> str:
    """One requirement as a user might type it, with spaces wherever the grammar allows them."""
    key, op, values = spec
    if op == "exists":
        return key
    if op == "!":
        return f"!{draw(SPACE)}{key}"
    if op in ("in", "notin"):
        inner = ",".join(f"{draw(SPACE)}{value}{draw(SPACE)}" for value in values)
        return f"{key}{draw(SOME_SPACE)}{op}{draw(SPACE)}({inner})"
    return f"{key}{draw(SPACE)}{op}{draw(SPACE)}{values[0]}"


@st.composite
def selectors(draw: st.DrawFn) -> tuple[list[Spec], str]:
    """Requirements as data and a selector text that says them."""
    specs = draw(st.lists(requirement_specs(), max_size=5))
    text = ",".join(f"{draw(SPACE)}{render(spec, draw)}{draw(SPACE)}" for spec in specs)
    return specs, text


def reference_holds(spec: Spec, labels: Mapping[str, str]) -> bool:
    """Kubernetes' meaning of one requirement, written without the module under test."""
    key, op, values = spec
    if op in ("=", "=="):
        return key in labels and labels[key] == values[0]
    if op == "!=":
        return key not in labels or labels[key] != values[0]
    if op == "in":
        return key in labels and labels[key] in values
    if op == "notin":
        return key not in labels or labels[key] not in values
    if op == "exists":
        return key in labels
    return key not in labels


def expected_requirement(spec: Spec) -> Requirement:
    key, op, values = spec
    return Requirement(key, cast("Operator", "=" if op == "==" else op), frozenset(values))


LABELS = st.dictionaries(st.sampled_from([*KEYS, "other"]), st.sampled_from([*VALUES, "prod"]), max_size=5)
NAMES = st.sampled_from(["web-1", "/web-1", "web-2", "api", "api-1", "db-2", "/db-x"])
GLOBS = st.sampled_from(["web-*", "*-1", "api", "db-?", "*", "[ad]*"])


@settings(max_examples=200, deadline=None)
@given(selector=selectors(), labels=LABELS)
def test_a_selector_admits_exactly_what_kubernetes_would(
    selector: tuple[list[Spec], str], labels: dict[str, str]
) -> None:
    specs, text = selector
    scope = Scope.of(text, None)
    assert scope.requirements == tuple(expected_requirement(spec) for spec in specs), text
    assert scope.admits(labels) == all(reference_holds(spec, labels) for spec in specs), (text, labels)
    assert scope.unmet(labels) == [expected_requirement(s) for s in specs if not reference_holds(s, labels)]


@settings(max_examples=200, deadline=None)
@given(selector=selectors())
def test_the_canonical_text_reads_back_as_the_same_requirements(selector: tuple[list[Spec], str]) -> None:
    scope = Scope.of(selector[1], None)
    again = Scope.of(scope.selector, None)
    assert again.requirements == scope.requirements
    assert again.selector == scope.selector
    assert parse_selector(scope.selector or "") == scope.requirements


# --- name globs ---------------------------------------------------------------------------------------------


def test_a_glob_matches_the_name_with_or_without_the_engines_slash() -> None:
    scope = Scope.of(None, ["web-*"])
    assert scope.admits({}, "web-1") and scope.admits({}, "/web-1")
    assert not scope.admits({}, "api") and not scope.admits({}, "/api")
    assert not scope.admits({}, "Web-1"), "globs are case-sensitive"
    assert scope.admits({}, None), "an object without a name (an image, a volume) is judged by its labels only"


def test_a_name_must_match_a_glob_of_every_set() -> None:
    both = Scope.of(None, ["web-*"]).narrowed(Scope.of(None, ["*-1"]))
    assert [name for name in ("web-1", "web-2", "api-1", "/web-1") if both.name_admits(name)] == ["web-1", "/web-1"]
    either = Scope.of(None, ["web-*", "*-1"])
    assert [name for name in ("web-1", "web-2", "api-1", "db") if either.name_admits(name)] == [
        "web-1",
        "web-2",
        "api-1",
    ]


@pytest.mark.parametrize("glob", ["a b", "../x", "a/b", "", "x" * 256, "web-*\n", 'a"b'])
def test_a_glob_that_is_not_a_container_name_pattern_is_refused(glob: str) -> None:
    with pytest.raises(SelectorError):
        check_glob(glob)
    with pytest.raises(SelectorError):
        Scope.of(None, [glob])


def test_a_glob_of_255_characters_is_taken() -> None:
    assert check_glob("x" * 254 + "*") == "x" * 254 + "*"


# --- narrowing and stamping -----------------------------------------------------------------------------------


@st.composite
def scopes(draw: st.DrawFn) -> Scope:
    """A scope as a key or a token of a key would have it: a selector and up to two sets of globs."""
    scope = Scope.of(draw(selectors())[1], draw(st.lists(GLOBS, max_size=3)))
    if draw(st.booleans()):
        scope = scope.narrowed(Scope.of(None, draw(st.lists(GLOBS, min_size=1, max_size=3))))
    return scope


@settings(max_examples=200, deadline=None)
@given(a=scopes(), b=scopes(), labels=LABELS, name=st.none() | NAMES)
def test_narrowing_admits_what_both_admit_and_nothing_more(
    a: Scope, b: Scope, labels: dict[str, str], name: str | None
) -> None:
    assert a.narrowed(b).admits(labels, name) == (a.admits(labels, name) and b.admits(labels, name))


def test_narrowing_by_nothing_changes_nothing_and_the_empty_scope_is_unscoped() -> None:
    key = Scope.of("app=shop", ["shop-*"])
    assert key.narrowed(Scope()) == key
    assert Scope().narrowed(key) == key
    assert Scope.of(None, None).unscoped and Scope.of("", []).unscoped
    assert not key.unscoped and not Scope.of(None, ["x"]).unscoped
    assert Scope().admits(None, "anything")


def test_a_create_is_stamped_with_the_labels_the_selector_fixes() -> None:
    assert Scope.of("app=web,env in (prod),tier!=db,team", None).stamped() == {"app": "web", "env": "prod"}
    assert Scope.of("env in (prod,stage),!legacy,x notin (a)", None).stamped() == {}
    assert Scope.of("x=", None).stamped() == {"x": ""}


@settings(max_examples=200, deadline=None)
@given(scope=scopes(), labels=LABELS)
def test_stamped_labels_meet_the_equalities_and_every_admitted_object_carries_them(
    scope: Scope, labels: dict[str, str]
) -> None:
    stamped = scope.stamped()
    fixed = [r for r in scope.requirements if r.operator in ("=", "in") and len(r.values) == 1]
    if len({(r.key, *r.values) for r in fixed}) == len({r.key for r in fixed}):  # no key fixed to two values
        assert all(r.holds(stamped) for r in fixed), (scope.selector, stamped)
    if scope.admits(labels):
        assert stamped.items() <= labels.items(), (scope.selector, labels)


def test_only_what_the_engines_label_filter_can_say_is_pushed_down() -> None:
    scope = Scope.of("app=web,team,tier!=db,env in (a,b),x=,!legacy,y in (c)", None)
    assert scope.engine_label_filters() == ["app=web", "team"]
    assert Scope().engine_label_filters() == []


# --- the config -----------------------------------------------------------------------------------------------


def load_key(**entry: Any) -> ApiKey:
    data = {"auth": {"api_keys": [{"name": "ci", "role": "viewer", "sha256": SHA, **entry}]}}
    [key] = settings_from_mapping(data, "cfg.toml").auth.api_keys
    return key


def test_a_key_in_the_config_has_the_scope_its_entry_says() -> None:
    key = load_key(selector="app=shop, tier in (web,api)", names=["shop-*", "legacy-shop"])
    assert key.scope == Scope.of("app=shop,tier in (api,web)", ["legacy-shop", "shop-*"])
    assert key.scope.admits({"app": "shop", "tier": "web"}, "/shop-web-1")
    assert key.scope.admits({"app": "shop", "tier": "api"}, "legacy-shop")
    assert not key.scope.admits({"app": "shop", "tier": "db"}, "shop-db")
    assert not key.scope.admits({"app": "blog", "tier": "web"}, "shop-web")
    assert not key.scope.admits({"app": "shop", "tier": "web"}, "blog-web")
    assert load_key().scope.unscoped


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ({"selector": "a in ()"}, "selector", "'a in ()'"),
        ({"selector": "app=shop,"}, "selector", "ends with a comma"),
        ({"names": ["a b"]}, "names.0", "'a b'"),
        ({"names": ["shop-*", "../x"]}, "names.1", "'../x'"),
        ({"names": []}, "names", "lists no glob"),
    ],
    ids=["empty-set", "trailing-comma", "space-in-glob", "path-in-glob", "no-glob"],
)
def test_a_bad_scope_in_the_config_stops_the_load_naming_the_field_and_the_key(
    entry: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_key(**entry)
    message = str(caught.value)
    assert message.startswith(f"cfg.toml: auth.api_keys.0.{field}: "), message
    assert words in message and "(key 'ci')" in message


def test_the_toml_of_a_scoped_key_loads_as_the_same_key() -> None:
    key = load_key(selector="app = shop, env in (stage, prod), !legacy, x.y/z=", names=["shop-*", "db-?"])
    data = tomllib.loads(key_toml(key))
    [again] = settings_from_mapping({"auth": data["auth"]}).auth.api_keys
    assert again == key and again.scope == key.scope


# --- tokens ---------------------------------------------------------------------------------------------------


@pytest.fixture
def issuer(tmp_path: Path) -> TokenIssuer:
    return TokenIssuer(b"s" * 32, tmp_path / "revoked.json")


SHOP_KEY = ApiKey("shop", Role.ADMIN, hash_key("mrg_shop"), scope=Scope.of("app=shop", None))


def test_a_tokens_scope_is_its_keys_and_its_own(issuer: TokenIssuer) -> None:
    issued = issuer.issue(SHOP_KEY, None, None, 60, Scope.of("tier=web", ["web-*"]))
    assert issued["scope"].described() == {"selector": "app=shop,tier=web", "names": [["web-*"]]}
    principal, _ = issuer.verify(issued["token"], [SHOP_KEY])
    assert principal.scope == issued["scope"]
    assert principal.scope.admits({"app": "shop", "tier": "web"}, "web-1")
    assert not principal.scope.admits({"app": "shop"}, "web-1")
    assert not principal.scope.admits({"tier": "web"}, "web-1")
    assert not principal.scope.admits({"app": "shop", "tier": "web"}, "api-1")


def test_a_token_asking_for_no_scope_keeps_its_keys(issuer: TokenIssuer) -> None:
    issued = issuer.issue(SHOP_KEY, None, None, 60, Scope())
    assert "selector" not in issued and "names" not in issued
    principal, _ = issuer.verify(issued["token"], [SHOP_KEY])
    assert principal.scope == SHOP_KEY.scope


def test_a_token_sees_its_keys_scope_as_it_is_now(issuer: TokenIssuer) -> None:
    """A key narrowed after its token was made narrows the token too: the token holds only its own part."""
    issued = issuer.issue(SHOP_KEY, None, None, 60, Scope.of("tier=web", None))
    now = ApiKey("shop", Role.ADMIN, SHOP_KEY.sha256, scope=Scope.of("app=shop,env=prod", ["shop-*"]))
    principal, _ = issuer.verify(issued["token"], [now])
    assert principal.scope == Scope.of("app=shop,env=prod,tier=web", ["shop-*"])


def forged(claims: dict[str, Any]) -> str:
    """A token signed with the issuer's secret, as a holder of the secret (or a bug in the issuer) might make."""
    now = int(time.time())
    base = {"sub": "shop", "kid": SHOP_KEY.sha256[:16], "role": "admin", "iat": now, "exp": now + 60, "jti": "a" * 32}
    return jwt.encode({**base, **claims}, b"s" * 32, algorithm=ALGORITHM)


def test_the_forged_token_itself_is_valid(issuer: TokenIssuer) -> None:
    """So that the tests below fail on their scope claim, not on the rest."""
    principal, _ = issuer.verify(forged({"selector": "tier=web", "names": ["web-*"]}), [SHOP_KEY])
    assert principal.scope == Scope.of("app=shop,tier=web", ["web-*"])


@pytest.mark.parametrize(
    "claims",
    [{"selector": "a in ()"}, {"selector": "tier=web,"}, {"selector": 5}, {"names": ["a b"]}, {"names": "web-*"}],
    ids=["empty-set", "trailing-comma", "not-a-string", "bad-glob", "not-a-list"],
)
def test_a_token_whose_scope_claim_does_not_parse_is_invalid(issuer: TokenIssuer, claims: dict[str, Any]) -> None:
    with pytest.raises(Unauthorized) as caught:
        issuer.verify(forged(claims), [SHOP_KEY])
    assert (caught.value.status, caught.value.message) == (401, "invalid token")


# --- the API --------------------------------------------------------------------------------------------------

SCOPED_KEYS = {"shop": {"role": "admin", "selector": "app=shop", "names": ["shop-*"]}}


@pytest.fixture
async def shop(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    return await app_client(aiohttp_client, tmp_path, keys=SCOPED_KEYS)


async def scope_seen(client: TestClient, headers: dict[str, str]) -> tuple[str | None, list[list[str]]]:
    resp = await client.get("/api/v1/auth/whoami", headers=headers)
    assert resp.status == 200, await resp.text()
    data = (await resp.json())["data"]
    return data["selector"], data["names"]


async def test_whoami_says_a_keys_scope(shop: TestClient) -> None:
    assert await scope_seen(shop, key_headers("shop")) == ("app=shop", [["shop-*"]])


async def test_a_token_asking_for_a_scope_answers_and_acts_with_both(shop: TestClient) -> None:
    resp = await shop.post(
        "/api/v1/auth/tokens", json={"selector": "tier=web", "names": ["shop-web-*"]}, headers=key_headers("shop")
    )
    assert resp.status == 201, await resp.text()
    issued = (await resp.json())["data"]
    assert (issued["selector"], issued["names"]) == ("app=shop,tier=web", [["shop-*"], ["shop-web-*"]])
    bearer = {"Authorization": f"Bearer {issued['token']}"}
    assert await scope_seen(shop, bearer) == ("app=shop,tier=web", [["shop-*"], ["shop-web-*"]])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"selector": "a in ()"}, "selector"),
        ({"selector": "tier=web,"}, "selector"),
        ({"names": ["a b"]}, "names.0"),
        ({"names": ["shop-*", "../x"]}, "names.1"),
        ({"names": []}, "names"),
    ],
    ids=["empty-set", "trailing-comma", "space-in-glob", "path-in-glob", "no-glob"],
)
async def test_a_token_asking_for_a_bad_scope_is_a_400_naming_the_field(
    shop: TestClient, body: dict[str, Any], field: str
) -> None:
    resp = await shop.post("/api/v1/auth/tokens", json=body, headers=key_headers("shop"))
    answer = await resp.json()
    assert resp.status == 400, answer
    assert [error["field"] for error in answer["errors"]] == [field]
