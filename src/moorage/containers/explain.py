"""Dry runs: what the policy decides of a request, and what moorage would send the engine, with nothing changed.

A dry run takes the real call's steps up to its first write: the same decisions (policy.py), the same engine
look-ups (reads only: volumes, binds, networks), the same 404s and 400s for what does not exist. It never pulls:
what depends on an image that is not here is "unknown". So its `allowed` is the real call's (a 403 or not),
short of an unknown decision, and its denials name the same fields and rules as the real call's 403.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import aiodocker

from moorage.containers.model import CreateRequest, PullPolicy
from moorage.containers.ownership import policy_mark
from moorage.containers.policy import Decision, Verdict, decide, denials, image_healthcheck_decisions
from moorage.containers.provision import engine_decisions, local_image, resolved_networks
from moorage.containers.spec import engine_create_body
from moorage.settings import Settings


def merged(*groups: Iterable[Decision]) -> list[Decision]:
    """One decision per field and rule, in order: a later denial replaces an earlier allowance by the same rule
    (a network allowed by its name, found by its id to be the host's), nothing else replaces one."""
    kept: dict[tuple[str, str], Decision] = {}
    for decision in (decision for group in groups for decision in group):
        key = (decision.field, decision.rule)
        if key not in kept or (decision.decision is Verdict.DENIED and kept[key].decision is not Verdict.DENIED):
            kept[key] = decision
    return list(kept.values())


def answer(decisions: list[Decision], engine_request: dict[str, Any] | None) -> dict[str, Any]:
    """A dry run's answer: `engine_request` only when allowed, since a refused call sends nothing."""
    allowed = not denials(decisions)
    return {
        "allowed": allowed,
        "decisions": [asdict(decision) for decision in decisions],
        "engine_request": engine_request if allowed else None,
    }


async def dry_run_create(docker: aiodocker.Docker, req: CreateRequest, settings: Settings) -> dict[str, Any]:
    """POST /containers?dry_run=true: every decision, and the create's name and body as the engine would get them
    (with a create id of its own, as each create has)."""
    policy = settings.policy
    decisions = merged(decide(req, policy), await engine_decisions(docker, req, policy))
    if denials(decisions):
        return answer(decisions, None)  # the real call is a 403 before it looks for networks or the image
    req = await resolved_networks(docker, req)
    # A pull of always would replace the image here with the registry's: its healthcheck is not known either.
    image = None if req.pull is PullPolicy.ALWAYS else await local_image(docker, req.image, req.pull)
    decisions = merged(decisions, image_healthcheck_decisions(req, image, policy))
    mark = policy_mark(settings.server.state_dir)
    body = engine_create_body(req, policy, mark=mark, create_id=uuid.uuid4().hex)
    return answer(decisions, {"name": req.name, "body": body})


def audited(answer: dict[str, Any]) -> dict[str, Any]:
    """A dry run's audit detail: marked as one (it changed nothing, but it shows the policy to its caller), with
    its outcome and the rules that denied it."""
    denied = sorted({d["rule"] for d in answer["decisions"] if d["decision"] == Verdict.DENIED})
    return {"dry_run": True, "allowed": answer["allowed"], "denied": denied}
