"""Static checks of the container, Prometheus, Grafana and Kubernetes files (no Docker here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from queuectl import models
from queuectl.backends import open_backend
from queuectl.metrics import Metrics
from tests.deploy import deployfiles as files


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def run_help(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "queuectl", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, (args, result.stderr)


def test_compose_file_is_valid_for_docker_compose() -> None:
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(files.COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=files.ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_compose_has_every_service_and_orders_the_start() -> None:
    services = files.compose()["services"]
    assert set(services) == {
        "postgres",
        "pgbouncer",
        "migrate",
        "orchestrator",
        "worker",
        "dashboard",
        "prometheus",
        "grafana",
    }
    # PgBouncer starts only with its profile; without it nothing points at it
    assert services["pgbouncer"]["profiles"] == ["pgbouncer"]
    assert [n for n, s in services.items() if "profiles" in s] == ["pgbouncer"]
    assert services["postgres"]["healthcheck"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("orchestrator", "worker", "dashboard"):
        wait = services[name]["depends_on"]["migrate"]["condition"]
        assert wait == "service_completed_successfully"
    assert services["orchestrator"]["deploy"]["replicas"] == 2
    assert "stop_grace_period" in services["worker"]
    assert "QUEUECTL_DASHBOARD_TOKEN" in services["dashboard"]["environment"]


def test_compose_is_safe_by_default() -> None:
    """Host ports on 127.0.0.1, an init as PID 1 for every queuectl process, no healthcheck
    on the one-shot migrate, a dashboard that stops retrying, no known Grafana password and
    no known dashboard token in .env.example."""
    services = files.compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert files.interpolate(port).startswith("127.0.0.1:"), (name, port)
    for name in files.queuectl_services():
        assert services[name]["init"] is True, name
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert services["dashboard"]["restart"].startswith("on-failure:")
    grafana = services["grafana"]["environment"]
    assert files.interpolate(grafana["GF_SECURITY_ADMIN_PASSWORD"]) == ""
    assert files.interpolate(grafana["GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION"]) == "true"
    example = dict(
        line.split("=", 1)
        for line in (files.ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert example["QUEUECTL_DASHBOARD_TOKEN"] == "" and example["GRAFANA_ADMIN_PASSWORD"] == ""


def test_every_compose_command_is_a_real_queuectl_command() -> None:
    services = files.queuectl_services()
    assert set(services) == {"migrate", "orchestrator", "worker", "dashboard"}
    for service in services.values():
        run_help(service["command"])
        url = service["environment"]["QUEUECTL_DATABASE_URL"]
        assert url == "postgresql://queuectl@postgres:5432/queuectl"
        assert service["environment"]["PGPASSWORD"] == "queuectl"
        assert service["environment"]["QUEUECTL_DATABASE_POOLER"] == "none"
        assert service["environment"].get("QUEUECTL_LISTEN_URL", "") == ""
    assert services["worker"]["command"][:4] == ["worker", "start", "--count", "4"]


def test_the_pgbouncer_profile_points_all_but_migrate_at_pgbouncer() -> None:
    """The lines docker-compose.yml's header gives for the profile: workers, orchestrators
    and the dashboard go through PgBouncer and LISTEN direct; migrate stays direct."""
    header = files.COMPOSE.read_text().split("services:", 1)[0]
    settings = dict(
        line.removeprefix("#").strip().split("=", 1)
        for line in header.splitlines()
        if re.match(r"#\s+[A-Z_]+=", line)
    )
    assert settings["COMPOSE_PROFILES"] == "pgbouncer"
    services = files.compose()["services"]

    def env(name: str) -> dict[str, str]:
        raw = services[name]["environment"].items()
        return {k: files.interpolate(str(v), settings) for k, v in raw}

    for name in ("orchestrator", "worker", "dashboard"):
        assert env(name)["QUEUECTL_DATABASE_URL"] == "postgresql://queuectl@pgbouncer:6432/queuectl"
        assert env(name)["QUEUECTL_DATABASE_POOLER"] == "pgbouncer"
        assert env(name)["QUEUECTL_LISTEN_URL"] == "postgresql://queuectl@postgres:5432/queuectl"
    assert env("migrate")["QUEUECTL_DATABASE_URL"] == "postgresql://queuectl@postgres:5432/queuectl"
    assert env("migrate")["QUEUECTL_DATABASE_POOLER"] == "none"
    pgbouncer = services["pgbouncer"]
    assert pgbouncer["build"] == "deploy/pgbouncer"
    assert (files.ROOT / "deploy" / "pgbouncer" / "Dockerfile").is_file()
    entrypoint = files.ROOT / "deploy" / "pgbouncer" / "entrypoint.sh"
    assert subprocess.run(["sh", "-n", str(entrypoint)], check=False).returncode == 0
    assert "pool_mode = transaction" in entrypoint.read_text()


def test_dockerfile_is_slim_multi_stage_and_non_root() -> None:
    text = (files.ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=python:3.11-slim$", text, re.MULTILINE)
    assert text.count("FROM ${BASE}") == 2  # the test suite builds it on a Debian-made base
    assert "-r constraints.txt" in text  # pinned dependencies
    assert "/wheels" not in text  # no wheel files copied into a layer and deleted in the next
    assert re.search(r"^USER queuectl$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["queuectl"]' in text
    assert "HEALTHCHECK" in text
    assert "org.opencontainers.image.title" in text
    ignored = (files.ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_promtool_accepts_the_config_and_the_rules() -> None:
    promtool = tool("promtool")
    for args in (["check", "config", str(files.PROMETHEUS)], ["check", "rules", str(files.ALERTS)]):
        result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_discovers_replicas_by_dns() -> None:
    config = yaml.safe_load(files.PROMETHEUS.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["queuectl-worker"]["dns_sd_configs"][0]["names"] == ["worker"]
    assert jobs["queuectl-orchestrator"]["dns_sd_configs"][0]["names"] == ["orchestrator"]
    assert all("static_configs" not in j for j in jobs.values())


def test_alert_rules_cover_the_failure_modes() -> None:
    names = {
        r["alert"] for g in yaml.safe_load(files.ALERTS.read_text())["groups"] for r in g["rules"]
    }
    assert {
        "QueuectlBacklogAging",
        "QueuectlHighFailureRate",
        "QueuectlNoCapacity",
        "QueuectlJobsRecovered",
        "QueuectlWorkerDown",
        "QueuectlOrchestratorDown",
        "QueuectlDatabaseUnreachable",
        "QueuectlQueueHeld",
        "QueuectlDeadLetterGrowing",
    } <= names


def exported_metric_names(tmp_path: Path) -> set[str]:
    """Every series name the code can export: a worker's and an orchestrator's families
    with their suffixes (no `_created`: disabled), and the queue collector run against a
    real database."""
    metrics = Metrics("worker")
    metrics.add_orchestrator_metrics()  # a SQLite worker carries both
    backend = open_backend(f"sqlite:///{tmp_path}/m.db")
    backend.enqueue([models.JobSpec(command="true")])
    metrics.add_queue_collector(backend, lease_ttl_s=10)
    names = set()
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_count", "_sum"],
        "info": ["_info"],
        "gauge": [""],
        "unknown": [""],
    }
    for family in metrics.registry.collect():
        names |= {family.name + s for s in suffixes.get(family.type, [""])}
        assert not [s for s in family.samples if s.name.endswith("_created")], family.name
    backend.close()
    return names


def test_every_metric_in_dashboards_and_alerts_is_exported(tmp_path: Path) -> None:
    exported = exported_metric_names(tmp_path)
    used = {
        name
        for expr in files.promql_expressions()
        for name in re.findall(r"\bqueuectl_[a-z_]+\b", expr)
    }
    assert used, "no queries found"
    assert used <= exported, sorted(used - exported)
    expected = {
        "queuectl_queue_jobs",
        "queuectl_jobs_completed_total",
        "queuectl_job_run_duration_seconds_bucket",
        "queuectl_worker_busy_slots",
        "queuectl_orchestrator_leader",
        "queuectl_sweep_runs_total",
        "queuectl_queue_paused",
        "queuectl_queue_concurrency_limit",
        "queuectl_queue_rate_limit",
    }
    assert expected <= used


def test_grafana_dashboards_pick_their_data_source_from_a_variable() -> None:
    """Every panel and query reads `${datasource}`, a data source variable of type
    prometheus: the dashboards import into any Grafana (the Kubernetes sidecar's too), and
    the provisioned data source's uid appears in none of them."""
    datasource = yaml.safe_load(
        (files.ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    wanted = {"type": "prometheus", "uid": "${datasource}"}
    titles = set()
    for name, dashboard in files.dashboards().items():
        titles.add(dashboard["title"])
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", name
        assert variables["datasource"]["query"] == "prometheus", name
        for variable in variables.values():
            if variable["type"] == "query":
                assert variable["datasource"] == wanted, (name, variable["name"])
        for panel in dashboard["panels"]:
            assert panel["datasource"] == wanted, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == wanted, (name, panel["title"])
    assert titles == {"queuectl: queues", "queuectl: workers", "queuectl: orchestrator"}
    for path in [*files.DASHBOARDS.glob("*.json"), files.DASHBOARD_CONFIGMAP]:
        assert datasource["uid"] not in path.read_text(), path


# what Grafana 11 draws; a typo here renders as "Panel plugin not found"
PANEL_TYPES = {
    "timeseries",
    "stat",
    "table",
    "gauge",
    "bargauge",
    "piechart",
    "text",
    "row",
    "state-timeline",
}


def test_grafana_dashboards_follow_the_dashboard_model(tmp_path: Path) -> None:
    """Without a Grafana server: each dashboard has the model's required keys, unique panel
    ids on the grid, known panel types, a unit and a description on every panel, template
    variables that its queries use and that some panel uses, and every query (panels' and
    variables') is valid PromQL by promtool (as recording rules, with Grafana's variables
    replaced)."""
    rules: list[dict[str, str]] = []

    def check(expr: str, where: object, variables: set[str]) -> set[str]:
        used = set(re.findall(r"\$(\w+)", expr)) - {"__rate_interval", "__interval"}
        assert used <= variables, (where, used - variables)
        for name in used:
            expr = expr.replace(f"${name}", ".*")
        expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
        rules.append({"record": f"check:{len(rules)}", "expr": expr})
        return used

    for name, dashboard in files.dashboards().items():
        for key in ("uid", "title", "panels", "schemaVersion", "time", "refresh"):
            assert key in dashboard, (name, key)
        listed = dashboard.get("templating", {}).get("list", [])
        variables = {v["name"] for v in listed}
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        used_by_panels: set[str] = set()
        for panel in dashboard["panels"]:
            where = (name, panel.get("title"))
            assert panel["type"] in PANEL_TYPES, where
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), where
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, where
            assert panel["fieldConfig"]["defaults"].get("unit"), where
            assert len(panel.get("description", "")) >= 20, where  # says what it shows
            for target in panel["targets"]:
                used_by_panels |= check(target["expr"], where, variables)
        for variable in listed:
            if (selector := files.variable_selector(variable)) is not None:
                check(selector, (name, variable["name"]), variables)
        # a variable no panel reads is a control that does nothing
        assert variables - {"datasource"} <= used_by_panels, (name, variables - used_by_panels)
    assert rules
    checked = tmp_path / "dashboard_queries.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(checked)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def k8s_documents() -> list[dict[str, object]]:
    kustomization = yaml.safe_load((files.K8S / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((files.K8S / resource).read_text()) if d]
    return docs


def k8s_expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in container args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def test_kubernetes_manifests_parse_and_run_real_commands() -> None:
    docs = k8s_documents()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}  # type: ignore[index]
    assert {
        ("Deployment", "queuectl-worker"),
        ("Deployment", "queuectl-orchestrator"),
        ("Job", "queuectl-migrate"),
        ("Secret", "queuectl-db"),
        ("Service", "queuectl-metrics"),
        ("ServiceMonitor", "queuectl"),
        ("ScaledObject", "queuectl-worker"),
        ("PrometheusRule", "queuectl"),
        ("ConfigMap", "queuectl-grafana-dashboards"),
    } <= kinds
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            spec = doc["spec"]["template"]["spec"]  # type: ignore[index]
            for container in spec["containers"]:
                env = {e["name"]: e["value"] for e in container.get("env", [])}
                run_help([k8s_expand(a, env) for a in container["args"]])
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "queuectl-orchestrator":  # type: ignore[index]
            assert doc["spec"]["replicas"] == 2  # type: ignore[index]


@pytest.mark.integration
def test_keda_query_is_valid_sql_against_the_real_schema(pg_url: str) -> None:
    import psycopg

    (scaled,) = [d for d in k8s_documents() if d["kind"] == "ScaledObject"]
    trigger = scaled["spec"]["triggers"][0]  # type: ignore[index]
    assert trigger["type"] == "postgresql"
    backend = open_backend(pg_url)
    backend.enqueue([models.JobSpec(command="true") for _ in range(3)])
    backend.close()
    with psycopg.connect(pg_url) as conn:
        (count,) = conn.execute(trigger["metadata"]["query"]).fetchone()  # type: ignore[misc]
    assert count == 3


def test_kubernetes_resources_match_the_api_schema() -> None:
    """Built-in kinds against the Kubernetes 1.30 OpenAPI schema, strictly (a misspelt field
    fails); the CRDs (ServiceMonitor, ScaledObject, PrometheusRule) are checked by the tests
    above and in test_monitoring.py."""
    import kubernetes_validate

    checked = 0
    for doc in k8s_documents():
        if doc["kind"] in ("ServiceMonitor", "ScaledObject", "PrometheusRule"):
            continue
        kubernetes_validate.validate(doc, "1.30", strict=True)
        checked += 1
    assert checked == 7  # with the dashboards' ConfigMap
    broken = next(d for d in k8s_documents() if d["kind"] == "Deployment")
    broken = {**broken, "spec": {**broken["spec"], "replcas": 2}}  # type: ignore[dict-item]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30", strict=True)


def test_a_password_with_url_characters_reaches_libpq_intact() -> None:
    """POSTGRES_PASSWORD `Zx9@k/3#q` pasted into the URL made libpq look for host `k`; the
    password now travels in PGPASSWORD, and the URL parses to the `postgres` host."""
    from psycopg.conninfo import conninfo_to_dict

    password = "Zx9@k/3#q"
    compose = files.compose()
    env = compose["x-queuectl"]["environment"]
    values = {"POSTGRES_PASSWORD": password}
    url = files.interpolate(str(env["QUEUECTL_DATABASE_URL"]), values)
    assert password not in url
    parsed = conninfo_to_dict(url)
    assert (parsed["host"], parsed["dbname"], parsed["user"]) == (
        "postgres",
        "queuectl",
        "queuectl",
    )
    assert files.interpolate(str(env["PGPASSWORD"]), values) == password
    server = compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert files.interpolate(str(server), values) == password
