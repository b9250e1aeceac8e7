"""The monitoring files agree across setups: one `component` label for compose and the
Prometheus Operator, Kubernetes' PrometheusRule and dashboard ConfigMap generated from the
sources (a test fails on drift), and the alerts fire when they should (promtool test rules)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import deployfiles as files
from tests.deploy.test_static import k8s_documents, tool


def generator(*args: str, root: Path = files.ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(files.GENERATOR), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_up_selects_the_component_label_both_setups_set() -> None:
    """`up{job=...}` broke under the Prometheus Operator, which names the job after the
    Service (one job for workers and orchestrators): every `up` selects `component`, set by
    prometheus.yml per job and by the ServiceMonitor from the pods' component label."""
    ups = [e for e in files.promql_expressions() if re.search(r"\bup\b", e)]
    assert ups, "no up{} panel or alert"
    for expr in ups:
        for selector in re.findall(r"\bup\{([^}]*)\}", expr):
            assert 'component="' in selector, expr
            assert "job=" not in selector, expr
    config = yaml.safe_load(files.PROMETHEUS.read_text())
    compose_components = set()
    for job in config["scrape_configs"]:
        (relabel,) = [r for r in job["relabel_configs"] if r["target_label"] == "component"]
        compose_components.add(relabel["replacement"])
    assert compose_components == {"worker", "orchestrator"}
    docs = k8s_documents()
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    (endpoint,) = monitor["spec"]["endpoints"]  # type: ignore[index]
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
        "targetLabel": "component",
    } in endpoint["relabelings"]
    pod_components = {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]  # type: ignore[index]
        for d in docs
        if d["kind"] == "Deployment"
    }
    assert pod_components == compose_components


def test_kubernetes_rules_and_dashboards_are_the_sources_exactly() -> None:
    """The PrometheusRule's spec is alerts.yml and the ConfigMap carries every dashboard
    byte for byte, labelled for Grafana's sidecar; the generator agrees (--check)."""
    result = generator("--check")
    assert result.returncode == 0, result.stderr
    (rule,) = yaml.safe_load_all(files.PROMETHEUS_RULE.read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(files.ALERTS.read_text())
    (configmap,) = yaml.safe_load_all(files.DASHBOARD_CONFIGMAP.read_text())
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"] == {"grafana_dashboard": "1"}
    sources = {p.name: p.read_text() for p in files.DASHBOARDS.glob("*.json")}
    assert configmap["data"] == sources
    kustomized = yaml.safe_load((files.K8S / "kustomization.yaml").read_text())["resources"]
    assert {files.PROMETHEUS_RULE.name, files.DASHBOARD_CONFIGMAP.name} <= set(kustomized)


def test_promtool_accepts_the_prometheus_rules_rules(tmp_path: Path) -> None:
    (rule,) = yaml.safe_load_all(files.PROMETHEUS_RULE.read_text())
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    result = promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(files.alert_rules())} rules found" in result.stdout


def test_the_generator_check_fails_on_drift(tmp_path: Path) -> None:
    for rel in ("deploy/prometheus", "grafana/dashboards", "deploy/k8s"):
        shutil.copytree(files.ROOT / rel, tmp_path / rel)
    assert generator("--check", root=tmp_path).returncode == 0
    board = tmp_path / "grafana/dashboards/queuectl-workers.json"
    board.write_text(board.read_text().replace("Utilisation", "Utilization"))
    alerts = tmp_path / "deploy/prometheus/alerts.yml"
    alerts.write_text(alerts.read_text().replace("for: 15m", "for: 20m"))
    stale = generator("--check", root=tmp_path)
    assert stale.returncode == 1
    assert stale.stderr.startswith("error: stale: deploy/k8s/prometheusrule.yaml, ")
    assert "deploy/k8s/grafana-dashboards.yaml" in stale.stderr
    assert "Utilization" not in (tmp_path / "deploy/k8s/grafana-dashboards.yaml").read_text()
    rewritten = generator(root=tmp_path)
    assert rewritten.returncode == 0, rewritten.stderr
    assert generator("--check", root=tmp_path).returncode == 0
    assert "Utilization" in (tmp_path / "deploy/k8s/grafana-dashboards.yaml").read_text()


def test_kustomize_builds_the_rule_and_the_dashboards() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # not installed by .ci/run: the checks above hold without it
        pytest.skip("kubectl is not installed")
    built = subprocess.run(
        [kubectl, "kustomize", str(files.K8S)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(built.stdout) if d}
    assert docs["PrometheusRule"]["spec"] == yaml.safe_load(files.ALERTS.read_text())
    configmap = docs["ConfigMap"]
    assert configmap["metadata"]["namespace"] == "queuectl"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {p.name: p.read_text() for p in files.DASHBOARDS.glob("*.json")}


def alert_test(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    """`promtool test rules` of the shipped alerts.yml against made-up series."""
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(
        yaml.safe_dump(
            {"rule_files": [str(files.ALERTS)], "evaluation_interval": "1m", "tests": tests}
        )
    )
    result = promtool("test", "rules", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dead_letter_growth_alerts_after_5_minutes_and_resolves(tmp_path: Path) -> None:
    """A job dead at minute 10: pending until 15, firing from 15, resolved when the
    15-minute window has passed it (minute 26). Dead jobs that were there all along, or a
    DLQ that shrinks (`dlq retry`, `purge`), never alert. Two scraped orchestrators export
    the same count: one alert per queue."""
    dead = 'queuectl_queue_jobs{{queue="{q}",state="dead",instance="{i}"}}'
    alerting = {"alertname": "QueuectlDeadLetterGrowing"}
    summary = "queue mail: the dead letter queue grew by 1 in 15 minutes"
    firing = [
        {
            "exp_labels": {"severity": "warning", "queue": "mail"},
            "exp_annotations": {"summary": summary},
        }
    ]
    alert_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    {"series": dead.format(q="mail", i="o1:9100"), "values": "0x9 1x30"},
                    {"series": dead.format(q="mail", i="o2:9100"), "values": "0x9 1x30"},
                    {"series": dead.format(q="old", i="o1:9100"), "values": "7x40"},
                    {"series": dead.format(q="purged", i="o1:9100"), "values": "5x9 0x30"},
                ],
                "alert_rule_test": [
                    {**alerting, "eval_time": "9m", "exp_alerts": []},
                    {**alerting, "eval_time": "14m", "exp_alerts": []},  # pending
                    {**alerting, "eval_time": "16m", "exp_alerts": firing},
                    {**alerting, "eval_time": "24m", "exp_alerts": firing},
                    {**alerting, "eval_time": "27m", "exp_alerts": []},
                ],
            }
        ],
    )


def test_orchestrator_down_works_with_the_operators_job_name(tmp_path: Path) -> None:
    """Under the Prometheus Operator every target's job is `queuectl-metrics`: a down
    orchestrator still alerts (and a live one, or a live worker alone, does not hide it)."""
    up = 'up{{job="queuectl-metrics",component="{c}",instance="{i}"}}'
    alerting = {"alertname": "QueuectlOrchestratorDown"}
    down = "no orchestrator is answering scrapes: no cron, no expiry, no retention"
    alert_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": up.format(c="orchestrator", i="10.0.0.1:9100"),
                        "values": "1x4 0x10",
                    },
                    {"series": up.format(c="worker", i="10.0.0.2:9100"), "values": "1x15"},
                ],
                "alert_rule_test": [
                    {**alerting, "eval_time": "4m", "exp_alerts": []},
                    {**alerting, "eval_time": "6m", "exp_alerts": []},  # pending (for: 2m)
                    {
                        **alerting,
                        "eval_time": "8m",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical"},
                                "exp_annotations": {"summary": down},
                            }
                        ],
                    },
                ],
            }
        ],
    )
