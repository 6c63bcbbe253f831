"""The operations kit against a real Prometheus scraping the real daemon on the simulator: every
dashboard query, every recording rule and every metric the alerting rules read returns data."""

from __future__ import annotations

import asyncio
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.grafana_queries import dashboard_queries, variable_queries
from tests.ops_stack import ROOT, OpsStack

DASHBOARDS = sorted((ROOT / "config" / "grafana" / "dashboards").glob("*.json"))
RULES = ROOT / "config" / "prometheus"
_METRIC = re.compile(r"\b(?:tthc|probe)_[a-z0-9_]+\b|\bup(?=\{)")
DATA_WAIT = 30.0


def _rules(kind: str) -> list[dict[str, Any]]:
    rules = []
    for path in sorted(RULES.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(rule for rule in group["rules"] if kind in rule)
    return rules


def _has_finite_value(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def _checks() -> list[tuple[str, str]]:
    """(where, expr) of everything that must return data."""
    checks = [(query.where, query.expr) for path in DASHBOARDS for query in dashboard_queries(path)]
    for rule in _rules("record"):
        checks.append((f"recording rule {rule['record']} (expression)", rule["expr"]))
        checks.append((f"recording rule {rule['record']} (recorded series)", rule["record"]))
    for rule in _rules("alert"):
        for metric in sorted(set(_METRIC.findall(rule["expr"]))):
            checks.append((f"alert {rule['alert']} reads {metric}", f'count({{__name__="{metric}"}})'))
    return checks


async def _missing(stack: OpsStack, checks: list[tuple[str, str]]) -> list[str]:
    missing = []
    for where, expr in checks:
        if not _has_finite_value(await stack.query(expr)):
            missing.append(f"{where}: {expr}")
    return missing


@pytest.mark.slow
async def test_every_dashboard_query_and_rule_returns_data_from_the_running_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an outage, returns and failed alerts, every query of the kit has data in Prometheus."""
    assert len(DASHBOARDS) == 3, DASHBOARDS
    checks = _checks()
    started = time.monotonic()
    async with OpsStack(tmp_path, monkeypatch) as stack:
        # Counters must be seen before their increase: returned dossiers first, then ten days of them.
        await stack.until_prometheus_has("tthc_dossiers_finished_total", "returned dossiers in Prometheus")
        await stack.catch_up()
        await stack.outage()
        code = stack.dossier_due_in(2)
        await stack.until_prometheus_has(
            "tthc_dossiers_overdue_during_outage_total", f"{code} overdue during the outage, in Prometheus"
        )
        missing = await _missing(stack, checks)
        deadline = time.monotonic() + DATA_WAIT
        while missing and time.monotonic() < deadline:
            await asyncio.sleep(1)
            missing = await _missing(stack, checks)
        assert not missing, "no data for:\n" + "\n".join(missing)

        assert stack.prometheus is not None and stack.session is not None
        for path in DASHBOARDS:
            for where, metric, label in variable_queries(path):
                values = await stack.prometheus.api(
                    stack.session, f"label/{label}/values", **{"match[]": metric}
                )
                assert values, f"{where}: label_values({metric}, {label}) is empty"
        groups = (await stack.prometheus.api(stack.session, "rules"))["groups"]
        loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
        assert set(loaded) == {rule.get("record") or rule["alert"] for rule in _rules("expr")}
        broken = {name: rule.get("lastError") for name, rule in loaded.items() if rule["health"] == "err"}
        assert not broken, broken
        # The outage itself is what the alert rules are for: the portal's DOWN shows as pending or firing.
        alerts = (await stack.prometheus.api(stack.session, "alerts"))["alerts"]
        assert any(
            alert["labels"]["alertname"] == "TthcDossierSystemTargetDown"
            and alert["labels"].get("target") == "portal"
            for alert in alerts
        ), alerts
    assert time.monotonic() - started < 60, "the whole stack ran in under a minute"
