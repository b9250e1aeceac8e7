"""Reading the shipped deployment files the way Docker Compose and Prometheus would."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
K8S = ROOT / "deploy" / "k8s"
DASHBOARDS = ROOT / "grafana" / "dashboards"
GENERATOR = ROOT / "scripts" / "gen_k8s_monitoring.py"
PROMETHEUS_RULE = K8S / "prometheusrule.yaml"
DASHBOARD_CONFIGMAP = K8S / "grafana-dashboards.yaml"

_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's `${VAR:-default}` substitution (`$$` is a literal `$`)."""
    env = env or {}
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value).replace("$$", "$")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def queuectl_services() -> dict[str, dict[str, Any]]:
    """Services that run the queuectl image, with their interpolated command and env."""
    out = {}
    for name, service in compose()["services"].items():
        if service.get("image") == "queuectl:latest":
            out[name] = {
                "command": [interpolate(str(c)) for c in service["command"]],
                "environment": {k: interpolate(str(v)) for k, v in service["environment"].items()},
                "replicas": service.get("deploy", {}).get("replicas", 1),
            }
    return out


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def dashboards() -> dict[str, dict[str, Any]]:
    """Each Grafana dashboard by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


_LABEL_VALUES = re.compile(r"label_values\((.+),\s*\w+\)")


def variable_selector(variable: dict[str, Any]) -> str | None:
    """The PromQL inside a query variable's `label_values(SELECTOR, label)`; None for a
    variable that runs no PromQL (the data source picker)."""
    if variable["type"] != "query":
        return None
    query = variable["query"]
    query = query["query"] if isinstance(query, dict) else query
    match = _LABEL_VALUES.fullmatch(query)
    assert match, f"variable {variable['name']}: not label_values(selector, label): {query}"
    return match.group(1)


def promql_expressions() -> list[str]:
    """Every PromQL expression in the alert rules and the Grafana dashboards (panels and
    query variables)."""
    exprs = [r["expr"] for r in alert_rules()]
    for dashboard in dashboards().values():
        for panel in dashboard["panels"]:
            exprs += [t["expr"] for t in panel["targets"]]
        for variable in dashboard.get("templating", {}).get("list", []):
            if (selector := variable_selector(variable)) is not None:
                exprs.append(selector)
    return exprs
