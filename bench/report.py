"""The result rows: each puts moorage beside its baseline as a ratio and says whether the target is met."""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass
from typing import Any

_OPERATORS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


@dataclass
class Row:
    """One comparison. `headline` names the figure the ratio is taken on (p50_ms, lines_per_s, ...)."""

    scenario: str
    baseline: str
    moorage: dict[str, Any]
    reference: dict[str, Any]
    headline: str
    target: str  # an operator and a bound for moorage/baseline, such as "<= 1.25"
    also_required: bool = True  # a condition beside the ratio (every line arrived, ...)
    subject: str = "moorage"  # what the "moorage" column measures: moorage, or a floor shown for comparison

    @property
    def ratio(self) -> float:
        return round(self.moorage[self.headline] / self.reference[self.headline], 4)

    @property
    def met(self) -> bool | None:
        """None for a row that shows a floor rather than moorage: it has no target of its own."""
        if self.subject != "moorage":
            return None
        symbol, bound = self.target.split()
        return self.also_required and _OPERATORS[symbol](self.ratio, float(bound))

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def figure(figures: dict[str, Any]) -> str:
    """A cell: p50/p99 for latencies, p50/max for operations of seconds (a few rounds), the rate for throughputs."""
    if "p50_ms" in figures:
        return f"{figures['p50_ms']:.2f} / {figures['p99_ms']:.2f} ms"
    if "p50_s" in figures:
        cell = f"{figures['p50_s']:.3f} / {figures['max_s']:.3f} s"
        return f"{cell}, {figures['lines_per_s']:,.0f} lines/s" if "lines_per_s" in figures else cell
    for key, unit in (("lines_per_s", "lines/s"), ("requests_per_s", "req/s"), ("rss_mb", "MB")):
        if key in figures:
            return f"{figures[key]:,.0f} {unit}" if figures[key] >= 100 else f"{figures[key]:,.1f} {unit}"
    raise ValueError(f"no figure in {figures}")


def ratio_cell(row: Row) -> str:
    def shown(ratio: float) -> str:
        return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.4f}"

    if row.headline == "p50_ms":
        return f"{shown(row.ratio)} (p99 {shown(row.moorage['p99_ms'] / row.reference['p99_ms'])})"
    if row.headline == "p50_s":
        return f"{shown(row.ratio)} (max {shown(row.moorage['max_s'] / row.reference['max_s'])})"
    return shown(row.ratio)


def markdown(rows: list[Row]) -> str:
    lines = [
        "| scenario | moorage | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.met is None:
            measured, target, met = f"{row.subject}: {figure(row.moorage)}", "-", "-"
        else:
            measured, target, met = figure(row.moorage), row.target, "yes" if row.met else "**no**"
        cells = (row.scenario, measured, f"{row.baseline}: {figure(row.reference)}", ratio_cell(row), target, met)
        # A pipe inside a cell (a shell pipeline named as a baseline) would end the cell: markdown escapes it.
        escaped = [cell.replace("|", "\\|") for cell in cells]
        lines.append(f"| {' | '.join(escaped)} |")
    return "\n".join(lines)
