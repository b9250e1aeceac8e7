"""A real Prometheus server (Debian's package) scrapes a worker and an orchestrator, and a
single-host SQLite worker alone, with the shipped alert rules loaded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.deploy import deployfiles
from tests.e2e.test_orchestrator_cli import free_port
from tests.e2e.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def query(port: int, promql: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(promql)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
    except OSError:
        return []
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def value(port: int, promql: str) -> float | None:
    result = query(port, promql)
    return float(result[0]["value"][1]) if result else None  # type: ignore[index]


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (.ci/run installs Debian's package)")
        pytest.skip("Debian's prometheus package is not installed")
    return binary


def start_prometheus(binary: str, config: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={config.parent / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def alerts(port: int) -> dict[str, str]:
    """Active alerts by name, with their state (pending or firing)."""
    url = f"http://127.0.0.1:{port}/api/v1/alerts"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
    except OSError:
        return {}
    return {a["labels"]["alertname"]: a["state"] for a in body["data"]["alerts"]}


def test_prometheus_scrapes_workers_and_orchestrator(tmp_path: Path) -> None:
    binary = prometheus_binary()
    cli = Cli(f"sqlite:///{tmp_path}/q.db", tmp_path)
    wport, oport, pport = free_port(), free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: queuectl\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{wport}', '127.0.0.1:{oport}']}}]\n"
    )
    worker = cli.popen("worker", "start", "--metrics-port", str(wport))
    orch = cli.popen("orchestrator", "run", "--metrics-port", str(oport))
    prom = start_prometheus(binary, config, pport)
    try:
        for _ in range(3):
            cli.enqueue({"command": "true", "queue": "mail"})
        wait_for(lambda: value(pport, 'sum(up{job="queuectl"})') == 2, timeout=60)
        wait_for(
            lambda: value(pport, 'sum(queuectl_jobs_completed_total{outcome="succeeded"})') == 3,
            timeout=60,
        )
        wait_for(lambda: value(pport, "max(queuectl_orchestrator_leader)") == 1, timeout=60)
        completed = 'max(queuectl_queue_jobs{queue="mail",state="completed"})'
        wait_for(lambda: value(pport, completed) == 3, timeout=60)
    finally:
        prom.send_signal(signal.SIGTERM)
        prom.wait(timeout=30)
        for proc in (worker, orch):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0


def test_prometheus_gets_queue_depth_from_a_lone_sqlite_worker(tmp_path: Path) -> None:
    """The single-host setup: one `worker start --metrics-port` on a SQLite file, nothing
    else, scraped with the shipped rules. Queue depth, oldest age, live workers and db up
    arrive, and a job reaching the DLQ sets QueuectlDeadLetterGrowing pending (it fires
    after 5 minutes, past this test)."""
    binary = prometheus_binary()
    cli = Cli(f"sqlite:///{tmp_path}/q.db", tmp_path)
    wport, pport = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{deployfiles.ALERTS}']\n"
        "scrape_configs:\n"
        "  - job_name: queuectl\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{wport}']}}]\n"
        "    relabel_configs: [{target_label: component, replacement: worker}]\n"
    )
    cli.enqueue({"command": "true", "queue": "mail"})
    worker = cli.popen("worker", "start", "--count", "3", "--metrics-port", str(wport))
    prom = start_prometheus(binary, config, pport)
    try:
        wait_for(lambda: value(pport, 'sum(up{component="worker"})') == 1, timeout=60)
        completed = 'queuectl_queue_jobs{queue="mail",state="completed"}'
        wait_for(lambda: value(pport, completed) == 1, timeout=60)
        assert value(pport, "queuectl_db_up") == 1
        assert value(pport, 'queuectl_workers_alive{state="idle"}') == 3
        assert value(pport, 'queuectl_queue_oldest_job_age_seconds{queue="mail"}') == 0
        assert value(pport, "queuectl_orchestrator_leader") == 1
        assert "QueuectlDeadLetterGrowing" not in alerts(pport)
        cli.enqueue({"command": "exit 3", "queue": "mail", "max_retries": 0})
        dead = 'queuectl_queue_jobs{queue="mail",state="dead"}'
        wait_for(lambda: value(pport, dead) == 1, timeout=60)
        state = wait_for(lambda: alerts(pport).get("QueuectlDeadLetterGrowing"), timeout=60)
        assert state == "pending"
        assert value(pport, "count(queuectl_build_info)") == 1  # one process did all this
    finally:
        prom.send_signal(signal.SIGTERM)
        prom.wait(timeout=30)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
