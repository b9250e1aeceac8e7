"""A real Prometheus server (Debian's package) scrapes a worker and an orchestrator."""

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


def test_prometheus_scrapes_workers_and_orchestrator(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (.ci/run installs Debian's package)")
        pytest.skip("Debian's prometheus package is not installed")
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
    prom = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{pport}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
