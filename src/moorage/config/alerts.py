"""`[[webhooks]]` and `[[alerts]]` of config.toml: where notifications go, and the rules that send them.

A rule's kind is what it names: `event`, `metric` (a threshold) or `pattern` (a log line), exactly one.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from moorage.alerts.formats import FORMATS
from moorage.config.secrets import secret_from_file
from moorage.logs.grep import LineGrep, PatternError
from moorage.schemas.alerts import ALERT_NAME, ALERT_NAME_RULE
from moorage.schemas.common import StrictSchema
from moorage.schemas.fields import Duration, matches, name_glob, selector_text
from moorage.selectors import Scope
from moorage.settings import AlertRule, Webhook

EVENTS = ("die", "oom", "unhealthy", "restart_loop")
METRICS = ("container_cpu", "container_memory", "host_cpu", "host_memory", "host_disk", "load1")
SEVERITIES = ("info", "warning", "critical")


def _seconds(**kwargs: Any) -> fields.Function:
    """A duration ("30s", "5m") or seconds, as seconds."""
    return fields.Function(deserialize=lambda value: Duration().deserialize(value) / 1e9, **kwargs)


class WebhookSchema(StrictSchema):
    name = fields.String(required=True, validate=matches(ALERT_NAME, ALERT_NAME_RULE))
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False)
    secret_file = fields.String(load_default=None)
    format = fields.String(load_default="json", validate=validate.OneOf(FORMATS))
    timeout = _seconds(load_default=10.0, validate=validate.Range(0.1, 300))
    max_age = _seconds(load_default=86400.0, validate=validate.Range(1, 30 * 86400))
    backoff_initial = _seconds(load_default=1.0, validate=validate.Range(0.01, 3600))
    backoff_max = _seconds(load_default=300.0, validate=validate.Range(0.01, 86400))

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> Webhook:
        path = data.pop("secret_file")
        if data["backoff_initial"] > data["backoff_max"]:
            raise ValidationError("must not be more than backoff_max", "backoff_initial")
        return Webhook(secret=None if path is None else secret_from_file(path), **data)


class AlertSchema(StrictSchema):
    name = fields.String(required=True, validate=matches(ALERT_NAME, ALERT_NAME_RULE))
    webhooks = fields.List(fields.String(validate=matches(ALERT_NAME, ALERT_NAME_RULE)), required=True,
                           validate=validate.Length(min=1, max=16))  # fmt: skip
    severity = fields.String(load_default="warning", validate=validate.OneOf(SEVERITIES))
    selector = fields.String(load_default=None, validate=selector_text)
    names = fields.List(fields.String(validate=name_glob), load_default=None, validate=validate.Length(min=1))
    for_ = _seconds(data_key="for", attribute="for_seconds", load_default=0.0, validate=validate.Range(0, 86400))
    event = fields.String(load_default="", validate=validate.OneOf(EVENTS))
    restarts = fields.Integer(strict=True, load_default=3, validate=validate.Range(2, 1000))
    within = _seconds(load_default=300.0, validate=validate.Range(1, 86400))
    metric = fields.String(load_default="", validate=validate.OneOf(METRICS))
    above = fields.Float(load_default=None, validate=validate.Range(0, 10**6))
    path = fields.String(load_default="/")
    pattern = fields.String(load_default="", validate=validate.Length(max=4096))
    ignore_case = fields.Boolean(load_default=False)
    quiet = _seconds(load_default=300.0, validate=validate.Range(1, 86400))

    @validates_schema
    def one_kind(self, data: dict[str, Any], **_: Any) -> None:
        given = [key for key in ("event", "metric", "pattern") if data.get(key)]
        if len(given) != 1:
            raise ValidationError("give exactly one of event, metric and pattern", "event")
        if data.get("metric") and data.get("above") is None:
            raise ValidationError("a metric rule needs the threshold it fires above", "above")
        if data.get("pattern"):
            try:
                LineGrep.of(data["pattern"], ignore_case=data["ignore_case"], invert=False, stamped=False, tty=False)
            except PatternError as err:
                raise ValidationError(f"not an RE2 pattern: {err}", "pattern") from None

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> AlertRule:
        kind = "event" if data["event"] else "threshold" if data["metric"] else "log"
        scope = Scope.of(data.pop("selector"), data.pop("names"))
        data["above"] = data["above"] or 0.0
        return AlertRule(kind=kind, scope=scope, **{**data, "webhooks": tuple(data["webhooks"])})


def check_alerts(alerts: list[AlertRule], webhooks: list[Webhook], disk_paths: tuple[str, ...]) -> None:
    """What one rule cannot judge alone: names unique, webhooks that exist, disks that are sampled."""
    known = {webhook.name for webhook in webhooks}
    if len(known) != len(webhooks):
        raise ValidationError("two webhooks have one name", "webhooks")
    if len({rule.name for rule in alerts}) != len(alerts):
        raise ValidationError("two alerts have one name", "alerts")
    for n, rule in enumerate(alerts):
        if missing := sorted(set(rule.webhooks) - known):
            raise ValidationError(f"no [[webhooks]] entry is named {', '.join(missing)}", f"alerts.{n}.webhooks")
        if rule.metric == "host_disk" and rule.path not in disk_paths:
            raise ValidationError("must be one of [metrics] disk_paths, which are sampled", f"alerts.{n}.path")
