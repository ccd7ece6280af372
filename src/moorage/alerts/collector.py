"""The alerts' series: what fires per rule, and how the webhook deliveries went."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from moorage.alerts.watcher import AlertWatcher


class AlertsCollector(Collector):
    def __init__(self, watcher: AlertWatcher) -> None:
        self._watcher = watcher

    def collect(self) -> Iterator[Metric]:
        firing = Counter(held.rule.name for held in self._watcher.conditions.active() if held.fired_at is not None)
        family = GaugeMetricFamily("moorage_alerts_firing", "Subjects each alert fires for now", labels=["alert"])
        for rule in self._watcher.rules():
            family.add_metric([rule.name], firing[rule.name])
        yield family
        deliverer = self._watcher.deliverer
        deliveries = CounterMetricFamily("moorage_webhook_deliveries", "Webhook deliveries by how they ended",
                                         labels=["webhook", "outcome"])  # fmt: skip
        attempts = CounterMetricFamily("moorage_webhook_failed_attempts", "Webhook attempts that failed (retried)",
                                       labels=["webhook"])  # fmt: skip
        for webhook in self._watcher.webhooks():
            deliveries.add_metric([webhook.name, "delivered"], deliverer.delivered[webhook.name])
            deliveries.add_metric([webhook.name, "expired"], deliverer.expired[webhook.name])
            attempts.add_metric([webhook.name], deliverer.failed[webhook.name])
        yield deliveries
        yield attempts
