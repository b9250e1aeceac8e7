"""The compose topology, run as native processes against the real Postgres: migrate, two
orchestrators, three workers, 1,000 jobs, a worker and the leader SIGKILLed midway."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from queuectl.backends import open_backend
from queuectl.orchestrator import LEADER_LEASE
from tests.deploy import deployfiles as files
from tests.e2e.test_orchestrator_cli import free_port, scrape
from tests.e2e.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Topology:
    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp = tmp_path
        self.services = files.queuectl_services()
        self.procs: list[tuple[str, int, subprocess.Popen[bytes]]] = []

    def command(self, service: str, port: int | None = None) -> list[str]:
        """The compose service's command; on one host each process needs its own port."""
        args = list(self.services[service]["command"])
        if port is not None:
            flag = "--port" if "--port" in args else "--metrics-port"
            args[args.index(flag) + 1] = str(port)
        return [sys.executable, "-m", "queuectl", *args]

    def env(self, service: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.services[service]["environment"],
            "QUEUECTL_DATABASE_URL": self.url,
            "QUEUECTL_DASHBOARD_TOKEN": "topology-token-0123456789",  # compose takes it from .env
        }

    def start(self, service: str) -> subprocess.Popen[bytes]:
        port = free_port()
        log = open(self.tmp / f"{service}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            self.command(service, port), env=self.env(service), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.procs.append((service, port, proc))
        return proc

    def alive(self) -> list[tuple[str, int, subprocess.Popen[bytes]]]:
        return [p for p in self.procs if p[2].poll() is None]

    def stop(self) -> list[int | None]:
        for _, _, proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        return [proc.wait(timeout=60) for _, _, proc in self.procs]


def jobs_file(path: Path) -> tuple[Path, dict[str, str]]:
    """700 successes, 200 failures (one retry each), 100 delayed successes."""
    expected = {}
    lines = []
    for i in range(1000):
        job: dict[str, Any] = {"id": f"t{i:04d}", "queue": ["default", "mail", "reports"][i % 3]}
        if i % 10 < 7:
            job["command"] = "true"
            expected[job["id"]] = "completed"
        elif i % 10 < 9:
            job |= {"command": "exit 4", "max_retries": 1}
            expected[job["id"]] = "dead"
        else:
            job |= {"command": "true", "delay": 1 + i % 3}
            expected[job["id"]] = "completed"
        lines.append(json.dumps(job))
    path.write_text("\n".join(lines) + "\n")
    return path, expected


def states(url: str) -> dict[str, str]:
    backend = open_backend(url)
    try:
        return {j.id: str(j.state) for j in backend.list_jobs(limit=10_000)}
    finally:
        backend.close()


def test_compose_topology_survives_a_worker_and_the_leader_dying(
    pg_url: str, tmp_path: Path
) -> None:
    top = Topology(pg_url, tmp_path)
    migrate = subprocess.run(
        top.command("migrate"), env=top.env("migrate"), timeout=60, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stderr
    for _ in range(top.services["orchestrator"]["replicas"]):
        top.start("orchestrator")
    workers = [top.start("worker") for _ in range(3)]
    dashboard = top.start("dashboard")
    path, expected = jobs_file(tmp_path / "jobs.ndjson")
    env = top.env("worker")
    enq = subprocess.run(
        [sys.executable, "-m", "queuectl", "enqueue", "--file", str(path)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert enq.returncode == 0, enq.stderr
    try:
        wait_for(lambda: sum(s == "completed" for s in states(pg_url).values()) >= 250, timeout=120)
        backend = open_backend(pg_url)
        holder = backend.leader(LEADER_LEASE)
        backend.close()
        assert holder is not None
        leader_pid = int(holder.rsplit("-", 2)[1])
        for _, _, proc in top.procs:
            if proc.pid in (leader_pid, workers[0].pid):
                proc.kill()  # SIGKILL: no drain, leases left to expire
                proc.wait()

        def settled() -> bool:
            current = states(pg_url)
            return len(current) == 1000 and all(
                s in ("completed", "dead") for s in current.values()
            )

        wait_for(settled, timeout=180, every=1)
        assert states(pg_url) == expected  # every job as its command dictates: none lost
        for service, port, proc in top.alive():
            if proc is not dashboard:
                assert scrape(port), service  # every live process's metrics endpoint answers
        dash_port = next(port for _, port, proc in top.procs if proc is dashboard)
        request = urllib.request.Request(
            f"http://127.0.0.1:{dash_port}/jobs?state=dead&q=t0007",
            headers={"Authorization": "Bearer topology-token-0123456789"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert "t0007" in resp.read().decode()  # the dashboard shows the dead jobs
        prometheus_check(top, tmp_path)
    finally:
        codes = top.stop()
    assert codes.count(-signal.SIGKILL) == 2
    assert all(code == 0 for code in codes if code != -signal.SIGKILL)


def prometheus_check(top: Topology, tmp_path: Path) -> None:
    """The shipped Prometheus config, adapted only in its targets, scrapes the processes and
    a dashboard query returns data."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (.ci/run installs it)")
        return
    config = yaml.safe_load(files.PROMETHEUS.read_text())
    for job in config["scrape_configs"]:
        service = "worker" if job["job_name"].endswith("worker") else "orchestrator"
        del job["dns_sd_configs"]
        job["static_configs"] = [
            {
                "targets": [
                    f"127.0.0.1:{port}" for s, port, _ in top.alive() if s == service
                ]  # the dashboard is not in the shipped scrape config
            }
        ]
    config["global"]["scrape_interval"] = "1s"
    shutil.copy(files.ALERTS, tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prom = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        overview = json.loads((files.DASHBOARDS / "queuectl-overview.json").read_text())
        panel = next(p for p in overview["panels"] if p["title"] == "Jobs by state")
        expr = panel["targets"][0]["expr"].replace("$queue", ".*")

        def has_data() -> bool:
            url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}"
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return bool(json.load(resp)["data"]["result"])
            except OSError:
                return False

        wait_for(has_data, timeout=60, every=0.5)
    finally:
        prom.send_signal(signal.SIGTERM)
        prom.wait(timeout=30)
