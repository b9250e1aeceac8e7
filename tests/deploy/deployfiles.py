"""Reading the shipped deployment files the way Docker Compose and Prometheus would."""

from __future__ import annotations

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


def promql_expressions() -> list[str]:
    """Every PromQL expression in the alert rules and the Grafana dashboards."""
    exprs = [r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    import json

    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            exprs += [t["expr"] for t in panel["targets"]]
        exprs += [v["query"] for v in dashboard.get("templating", {}).get("list", [])]
    return exprs
