"""The PromQL a Grafana dashboard runs: panel targets, annotation queries and `label_values` variables,
with Grafana's template variables replaced by values Prometheus can evaluate."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GRAFANA_VARIABLES", "DashboardQuery", "dashboard_queries", "variable_queries"]

# Grafana's built-in variables, as a 1 h dashboard would set them over a 1 s-scrape Prometheus.
GRAFANA_VARIABLES: Mapping[str, str] = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<metric>[^,]+),\s*)?(?P<label>\w+)\)$")


@dataclass(frozen=True, slots=True)
class DashboardQuery:
    """One query of one dashboard: where it is (for error messages) and its expression, ready to run."""

    dashboard: str
    where: str
    expr: str


def _substitute(expr: str, values: Mapping[str, str], where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"{where}: unknown template variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each dashboard variable at its "All" value (the default selection), and Grafana's built-ins."""
    values = dict(GRAFANA_VARIABLES)
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            values[variable["name"]] = variable["allValue"]
        elif variable["type"] == "datasource":
            values[variable["name"]] = variable["current"]["value"]
    return values


def dashboard_queries(path: Path) -> list[DashboardQuery]:
    """Every panel target and annotation query of a dashboard file, variables substituted."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    values = _variable_values(dashboard)
    title = dashboard["title"]
    queries = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            where = f"{path.name}: panel {panel['title']!r} target {target['refId']}"
            queries.append(DashboardQuery(title, where, _substitute(target["expr"], values, where)))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            where = f"{path.name}: annotation {annotation['name']!r}"
            queries.append(DashboardQuery(title, where, _substitute(annotation["expr"], values, where)))
    return queries


def variable_queries(path: Path) -> list[tuple[str, str, str]]:
    """(where, metric, label) of each `label_values(metric, label)` query variable of a dashboard."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = _LABEL_VALUES.match(query.strip())
        where = f"{path.name}: variable ${variable['name']}"
        if match is None or not match.group("metric"):
            raise ValueError(f"{where}: expected label_values(metric, label), got {query!r}")
        found.append((where, match.group("metric").strip(), match.group("label")))
    return found
