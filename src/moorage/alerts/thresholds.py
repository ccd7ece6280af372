"""Rules on figures held above a threshold, judged from the latest readings (no engine call): a container's CPU (as
`docker stats` shows it, 100 per busy core; of its `--cpus` when it has them) or memory (percent of its limit, or of
the host's RAM without one), and the host's CPU, memory, a disk's use and the 1-minute load."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from moorage.alerts.conditions import HOST, Conditions
from moorage.metrics.containers import ContainerStats
from moorage.metrics.host import HostSampler
from moorage.settings import AlertRule

_WHAT = {"container_cpu": "CPU", "container_memory": "memory", "host_cpu": "CPU", "host_memory": "memory",
         "host_disk": "disk", "load1": "load"}  # fmt: skip


def host_figure(metric: str, sample: dict[str, Any], path: str) -> float | None:
    try:
        if metric == "host_cpu":
            return float(sample["cpu"]["percent"])
        if metric == "host_memory":
            return float(sample["memory"]["percent"])
        if metric == "host_disk":
            return float(sample["disks"][path]["percent"])
        return float(sample["load_average"][0])
    except (KeyError, IndexError, TypeError):
        return None  # a part the sampler could not read this time: no judgement either way


async def judge(rules: Sequence[AlertRule], stats: ContainerStats, sampler: HostSampler, conditions: Conditions,
                now: float) -> None:  # fmt: skip
    for rule in rules:
        if rule.kind != "threshold":
            continue
        if rule.metric.startswith("container_"):
            if stats.connected:  # else no reading is known: nothing is judged, either way
                await _containers(rule, stats, conditions, now)
        elif (sample := sampler.latest) is not None and (
            value := host_figure(rule.metric, sample, rule.path)
        ) is not None:
            await _one(rule, conditions, HOST, "the host", value, {"host": True}, {}, now)


async def _containers(rule: AlertRule, stats: ContainerStats, conditions: Conditions, now: float) -> None:
    seen = set()
    for reading, spec in stats.specified(rule.scope):
        seen.add(reading["id"])
        if rule.metric == "container_cpu":
            cores = spec.cpu_quota / spec.cpu_period if spec.cpu_quota else 1.0
            value = reading["cpu_percent"] / cores
        else:
            value = reading["memory"]["percent"]
        tag = {"container": {"id": reading["id"], "name": reading["name"]}}
        await _one(rule, conditions, reading["id"], reading["name"], value, tag, spec.labels, now)
    for held in conditions.active():  # a container that stopped uses nothing; one between two readings is not judged
        if held.rule.name == rule.name and held.subject not in seen and not stats.watched(held.subject):
            name = held.details["container"]["name"]
            await conditions.clear(rule.name, held.subject, f"{name} is not running", now)


async def _one(rule: AlertRule, conditions: Conditions, subject: str, name: str, value: float,
               tag: dict[str, Any], labels: Mapping[str, str], now: float) -> None:  # fmt: skip
    what = _WHAT[rule.metric]
    unit = "" if rule.metric == "load1" else "%"
    details = {**tag, "metric": rule.metric, "value": round(value, 2), "threshold": rule.above}
    if value > rule.above:
        summary = f"{name}: {what} {value:.1f}{unit}, above {rule.above:g}{unit} for {rule.for_seconds:g} s"
        await conditions.hold(rule, subject, summary, details, labels, now)
    elif conditions.is_held(rule, subject) is not None:
        await conditions.clear(rule.name, subject, f"{name}: {what} {value:.1f}{unit}, below {rule.above:g}{unit}",
                               now)  # fmt: skip
