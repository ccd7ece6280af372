"""Alerts: what fires now and what fired lately, the webhook deliveries, and a test notification."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from moorage.alerts.notifications import Notification
from moorage.alerts.outbox import Outbox
from moorage.api.paths import API_PREFIX
from moorage.errors import NotFound
from moorage.schemas.alerts import AlertRef, AlertStateSchema, DeliveriesQuery, DeliverySchema, TestSentSchema
from moorage.selectors import Scope
from moorage.settings import Permission
from moorage.web.operations import documented, listing, shape
from moorage.web.requests import load_path, load_query
from moorage.web.responses import ok
from moorage.web.roles import requires
from moorage.web.scoping import check_scoped_host_wide, scope_of
from moorage.web.state import ALERTS, AUDIT_DETAIL, live

routes = web.RouteTableDef()
_STATE = AlertStateSchema()
_DELIVERY = DeliverySchema()


def _seen(scope: Scope, entry: dict[str, Any]) -> bool:
    """A scoped caller sees the alerts of its containers only: the host's tell of the whole host."""
    container = entry["details"].get("container")
    return scope.unscoped or (container is not None and scope.admits(entry["labels"], container["name"]))


@routes.get(f"{API_PREFIX}/alerts")
@requires(Permission.ALERTS_READ)
@documented(
    "What fires now, and what fired lately",
    tag="alerts",
    data=shape(active=listing(AlertStateSchema), recent=listing(AlertStateSchema)),
)
async def list_alerts(request: web.Request) -> web.Response:
    """`active`: each rule's conditions that hold now, pending (for the rule's `for`) or firing; `recent`: the
    latest firings and resolutions, newest first (the last 500)."""
    conditions, scope = request.config_dict[ALERTS].conditions, scope_of(request)
    active = [entry for entry in (held.now() for held in conditions.active()) if _seen(scope, entry)]
    recent = [entry for entry in conditions.history if _seen(scope, entry)]
    return ok({"active": _STATE.dump(active, many=True), "recent": _STATE.dump(recent, many=True)})


@routes.get(f"{API_PREFIX}/alerts/deliveries")
@requires(Permission.ALERTS_READ)
@documented(
    "The webhook deliveries of late", tag="alerts", query=DeliveriesQuery, data=shape(items=listing(DeliverySchema)),
    errors=(403,),
)  # fmt: skip
async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first, with their state, attempts and the last error; a webhook's and a state's only when given.
    Not for a scoped caller: they tell of every container's alerts."""
    query = load_query(request, DeliveriesQuery)
    check_scoped_host_wide(request, "the webhook deliveries")
    outbox = request.config_dict[ALERTS].deliverer.outbox
    found = await outbox.call(Outbox.recent, query["limit"], query["webhook"], query["state"])
    return ok({"items": _DELIVERY.dump(found, many=True)})


@routes.post(f"{API_PREFIX}/alerts/{{name}}/test")
@requires(Permission.ALERTS_TEST)
@documented("Send a test notification", tag="alerts", path=AlertRef, data=TestSentSchema, errors=(403, 404))
async def test_alert(request: web.Request) -> web.Response:
    """A notification of status `test` to each of the rule's webhooks, through the outbox as any other: answered once
    it is queued on disk (200); `GET /alerts/deliveries` tells how it went."""
    name = load_path(request, AlertRef)["name"]
    check_scoped_host_wide(request, "a test notification")  # the rules and their receivers serve every container
    rule = next((rule for rule in live(request).alerts if rule.name == name), None)
    if rule is None:
        raise NotFound(f"no alert is named {name!r} in [[alerts]]")
    now = time.time()
    notification = Notification(alert=name, status="test", severity=rule.severity,
                                summary=f"a test of alert {name}", started_at=now, at=now)  # fmt: skip
    watcher = request.config_dict[ALERTS]
    await watcher.sync()  # a webhook a reload has just added is known to the deliverer
    ids = await watcher.deliverer.notify(notification, rule.webhooks)
    request[AUDIT_DETAIL] = {**request.get(AUDIT_DETAIL, {}), "deliveries": ids}
    return ok(TestSentSchema().dump({"alert": name, "deliveries": ids}))
