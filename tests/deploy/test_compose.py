"""`docker compose up` for real: the shipped docker-compose.yml on a Docker engine, used the
way a user would (enqueue through `run`, scale, kill, stop, down/up), with PostgreSQL and
Prometheus from Debian-built stand-in images. Slow: it builds images on the first run (the
engine keeps them) and skips, saying why, where no Docker engine runs."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy import dockerstack
from tests.e2e.test_orchestrator_cli import free_port
from tests.e2e.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]

TOKEN = "compose-test-token-0123456789abcdef"
PASSWORD = "Zx9@k/3#q"  # URL characters: the password must not be pasted into a URL
LEADER_TTL_S = 10.0  # the default leader lease


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[dockerstack.Stack, dict[str, Any]]]:
    dockerstack.engine_or_skip()
    facts: dict[str, Any] = {"build_s": dockerstack.build_images()}
    facts["image_mb"] = dockerstack.image_size_mb("queuectl:latest")
    env = {
        "POSTGRES_PASSWORD": PASSWORD,
        "QUEUECTL_DASHBOARD_TOKEN": TOKEN,
        "DASHBOARD_PORT": str(free_port()),
        "PROMETHEUS_PORT": str(free_port()),
        "QUEUECTL_STOP_GRACE": "60s",
    }
    made = dockerstack.Stack(env)
    facts["ports"] = env
    try:
        yield made, facts
    finally:
        made.down()


def _states(stack: dockerstack.Stack, service: str) -> list[tuple[str, str | None, int]]:
    """(status, health, exit code) of each container of a service."""
    return [
        (
            c["State"]["Status"],
            (c["State"].get("Health") or {}).get("Status"),
            c["State"]["ExitCode"],
        )
        for c in stack.containers(service)
    ]


def _up_and_healthy(stack: dockerstack.Stack, workers: int) -> bool:
    long_running = {"orchestrator": 2, "worker": workers, "dashboard": 1}
    for service, count in long_running.items():
        states = _states(stack, service)
        if len(states) != count or any(s != ("running", "healthy", 0) for s in states):
            return False
    return _states(stack, "postgres") == [("running", "healthy", 0)]


def _http(url: str, *, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _targets(port: str) -> dict[str, int]:
    """Prometheus's active targets that are up, per job."""
    status, body = _http(f"http://127.0.0.1:{port}/api/v1/targets")
    if status != 200:
        return {}
    up: dict[str, int] = {}
    for target in json.loads(body)["data"]["activeTargets"]:
        if target["health"] == "up":
            job = target["labels"]["job"]
            up[job] = up.get(job, 0) + 1
    return up


def _jobs(stack: dockerstack.Stack) -> dict[str, int]:
    return dict(stack.json("status", "--json")["jobs"])


def _json_logs(text: str) -> list[dict[str, Any]]:
    assert "Traceback" not in text, text[-3000:]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.timeout(1500)  # the first run builds every image (~8 min on 2 cores, vfs)
def test_the_compose_stack_as_a_user_runs_it(
    stack: tuple[dockerstack.Stack, dict[str, Any]],
) -> None:
    s, facts = stack
    report: dict[str, Any] = {"build_s": facts["build_s"], "image_mb": round(facts["image_mb"])}
    started = time.monotonic()

    # --- up -d: every service running and healthy, migrate once, JSON logs -------------
    s.ok("up", "-d", *dockerstack.SERVICES, timeout=600)
    wait_for(lambda: _up_and_healthy(s, workers=1), timeout=180, every=2)
    report["healthy_s"] = round(time.monotonic() - started, 1)
    assert _states(s, "migrate") == [("exited", None, 0)]  # once, no healthcheck
    for service in ("orchestrator", "worker", "dashboard"):
        events = _json_logs(s.logs(service))
        assert events, service
    for container in s.containers("worker") + s.containers("dashboard"):
        uid = dockerstack._run(["docker", "exec", container["Id"], "id", "-u"], timeout=30)
        assert uid.stdout.strip() == "10001", uid  # the image's non-root user
    migrated = s.logs("migrate")  # its one line of output is the command's result, not a log
    assert "schema at version" in migrated and "Traceback" not in migrated, migrated
    dashboard = facts["ports"]["DASHBOARD_PORT"]

    # --- 500 jobs through `docker-compose run`, some failing, some sleeping --------------
    lines = []
    for i in range(500):
        kind = i % 10
        command = "exit 3" if kind == 0 else ("sleep 0.3" if kind < 4 else f"echo job {i}")
        lines.append(json.dumps({"id": f"j{i:03d}", "command": command, "max_retries": 0}))
    enqueued = s.ok(
        "run", "--rm", "--no-deps", "-T", "worker", "enqueue", "-",
        input="\n".join(lines) + "\n", timeout=180,
    )  # fmt: skip
    assert len(enqueued.splitlines()) == 500
    wait_for(lambda: _jobs(s).get("completed", 0) == 450, timeout=240, every=2)
    jobs = _jobs(s)
    assert jobs["dead"] == 50 and jobs["pending"] == jobs["processing"] == 0, jobs
    assert len(s.json("dlq", "list", "--json")) == 50
    assert len(s.json("worker", "list", "--json")) == 4  # 4 slots of one process
    # jobs that leave a background child: with an init as PID 1 the orphans are reaped
    orphans = [json.dumps({"id": f"z{i}", "command": "sleep 1 & echo started"}) for i in range(5)]
    s.ok("run", "--rm", "--no-deps", "-T", "worker", "enqueue", "-", input="\n".join(orphans))
    wait_for(lambda: _jobs(s).get("completed", 0) == 455, timeout=60, every=1)
    time.sleep(2)  # the children outlive their jobs by a second
    stats = s.ok("exec", "-T", "worker", "sh", "-c", "cat /proc/[0-9]*/stat", timeout=60)
    zombies = [line for line in stats.splitlines() if ") Z " in line]
    assert not zombies, zombies

    # --- scale to 4: shared work, 4 hosts, Prometheus finds them all by DNS ---------------
    s.ok("up", "-d", "--no-recreate", "--scale", "worker=4", *dockerstack.SERVICES, timeout=600)
    wait_for(lambda: _up_and_healthy(s, workers=4), timeout=180, every=2)
    more = [json.dumps({"id": f"s{i:03d}", "command": "sleep 0.5"}) for i in range(80)]
    s.ok("run", "--rm", "--no-deps", "-T", "worker", "enqueue", "-", input="\n".join(more) + "\n")
    wait_for(lambda: _jobs(s).get("completed", 0) == 535, timeout=120, every=2)
    hosts = {w["host"] for w in s.json("worker", "list", "--json")}
    assert len(hosts) == 4, hosts
    ran_on = {j["worker_id"].rsplit("-", 2)[0] for j in s.json("list", "--json", "--limit", "600")
              if j["id"].startswith("s")}  # fmt: skip
    assert len(ran_on) >= 2, ran_on  # the new workers took a share
    prometheus = facts["ports"]["PROMETHEUS_PORT"]
    scraped = wait_for(
        lambda: (
            (t := _targets(prometheus)).get("queuectl-worker") == 4
            and t.get("queuectl-orchestrator") == 2
            and t
        ),
        timeout=90,
        every=3,
    )
    report["targets"] = scraped
    query = "sum(queuectl_jobs_claimed_total)"
    status, body = _http(f"http://127.0.0.1:{prometheus}/api/v1/query?query={query}")
    assert status == 200 and json.loads(body)["data"]["result"], body

    # --- kill the leading orchestrator and a worker mid-job ------------------------------
    slow = [json.dumps({"id": f"k{i:02d}", "command": "sleep 6"}) for i in range(12)]
    s.ok("run", "--rm", "--no-deps", "-T", "worker", "enqueue", "-", input="\n".join(slow) + "\n")
    wait_for(lambda: _jobs(s).get("processing", 0) >= 8, timeout=60, every=1)
    leader = _leader(s)
    orchestrators = {c["Config"]["Hostname"]: c["Id"] for c in s.containers("orchestrator")}
    leading = next(cid for host, cid in orchestrators.items() if host in leader)
    busy = {j["worker_id"].rsplit("-", 2)[0] for j in s.json("list", "--state", "processing",
                                                              "--json")}  # fmt: skip
    workers = {c["Config"]["Hostname"]: c["Id"] for c in s.containers("worker")}
    victim_host = sorted(busy)[0]
    killed_at = time.monotonic()
    for cid in (leading, workers[victim_host]):
        assert dockerstack._run(["docker", "kill", cid], timeout=60).returncode == 0
    new_leader = wait_for(
        lambda: (now := _leader(s)) and now != leader and now, timeout=LEADER_TTL_S + 20, every=0.5
    )
    report["failover_s"] = round(time.monotonic() - killed_at, 1)
    assert report["failover_s"] <= LEADER_TTL_S + 5, report
    assert new_leader
    wait_for(lambda: _jobs(s).get("completed", 0) == 547, timeout=90, every=1)
    report["recovered_s"] = round(time.monotonic() - killed_at, 1)
    recovered = [j for j in s.json("list", "--json", "--limit", "700") if j["id"].startswith("k")
                 and j["attempts"] > 1]  # fmt: skip
    assert recovered, "the killed worker's jobs ran again elsewhere"
    assert _jobs(s)["processing"] == 0

    # --- stop worker: running jobs finish first ------------------------------------------
    s.ok("up", "-d", "--no-recreate", "--scale", "worker=4", *dockerstack.SERVICES, timeout=600)
    wait_for(lambda: _up_and_healthy(s, workers=4), timeout=180, every=2)
    drain = [json.dumps({"id": f"d{i:02d}", "command": "sleep 4"}) for i in range(8)]
    s.ok("run", "--rm", "--no-deps", "-T", "worker", "enqueue", "-", input="\n".join(drain) + "\n")
    wait_for(lambda: _jobs(s).get("processing", 0) == 8, timeout=60, every=0.5)
    stopping = time.monotonic()
    s.ok("stop", "worker", timeout=120)
    report["drain_s"] = round(time.monotonic() - stopping, 1)
    assert all(state[2] == 0 for state in _states(s, "worker")), _states(s, "worker")
    backend_view = s.compose("run", "--rm", "--no-deps", "-T", "migrate", "status", "--json")
    after_stop = json.loads(backend_view.stdout)["jobs"]
    assert after_stop["completed"] == 555 and after_stop["processing"] == 0, after_stop

    # --- down, up: every job kept (named volume) -----------------------------------------
    s.ok("down", "-t", "30", timeout=180)
    s.ok("up", "-d", *dockerstack.SERVICES, timeout=600)
    wait_for(lambda: _up_and_healthy(s, workers=1), timeout=180, every=2)
    kept = _jobs(s)
    assert kept["completed"] == 555 and kept["dead"] == 50, kept

    # --- the dashboard: refuses to start without a token, serves pages with one -----------
    assert _http(f"http://127.0.0.1:{dashboard}/", token=TOKEN)[0] == 200
    assert _http(f"http://127.0.0.1:{dashboard}/jobs", token=None)[0] in (401, 303)
    refused = s.compose(
        "run", "--rm", "--no-deps", "-T", "-e", "QUEUECTL_DASHBOARD_TOKEN=", "dashboard",
        "dashboard", "--host", "0.0.0.0", timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    line = [ln for ln in refused.stderr.splitlines() if "token" in ln.lower()]
    assert line and "Traceback" not in refused.stderr, refused.stderr
    report["total_s"] = round(time.monotonic() - started, 1)
    print(f"compose: {report}")


def _psql(s: dockerstack.Stack, sql: str) -> str:
    """One query's unaligned output, run by psql inside the postgres container."""
    result = s.compose(
        "exec", "-T", "postgres", "psql", "-U", "queuectl", "-d", "queuectl", "-Atc", sql,
        timeout=30,
    )  # fmt: skip
    return result.stdout.strip()


def _leader(s: dockerstack.Stack) -> str:
    """The orchestrator holding the leader lease, read from the database."""
    return _psql(
        s,
        "SELECT holder FROM queuectl_leader WHERE name = 'orchestrator' AND expires_at > now()",
    )


@pytest.mark.timeout(900)  # alone, it builds every image first
def test_the_pgbouncer_profile_as_a_user_runs_it() -> None:
    """The four lines `.env.example` documents, on a stack of its own: 3 worker replicas and
    2 orchestrators through PgBouncer (transaction mode), workers LISTENing on the direct URL;
    200 jobs, each once; no prepared-statement error, no traceback; Postgres sees PgBouncer's
    pool and the listeners, not a connection per process."""
    dockerstack.engine_or_skip()
    dockerstack.build_images()  # kept by the engine: quick after the first test's build
    env = {
        "POSTGRES_PASSWORD": PASSWORD,
        "DASHBOARD_PORT": str(free_port()),
        "PROMETHEUS_PORT": str(free_port()),
        "COMPOSE_PROFILES": "pgbouncer",
        "QUEUECTL_DB_ADDRESS": "pgbouncer:6432",
        "QUEUECTL_DATABASE_POOLER": "pgbouncer",
        "QUEUECTL_LISTEN_URL": "postgresql://queuectl@postgres:5432/queuectl",
    }
    s = dockerstack.Stack(env)
    try:
        services = ["postgres", "pgbouncer", "migrate", "orchestrator", "worker"]
        s.ok("up", "-d", "--scale", "worker=3", *services, timeout=600)

        def listed() -> list[dict[str, Any]] | None:
            result = s.queuectl("worker", "list", "--json")
            found: list[dict[str, Any]] = json.loads(result.stdout or "[]")
            # one connection to PgBouncer and one direct LISTEN per worker process, as of a
            # heartbeat after LISTEN connected (the first beat comes before it: 1)
            held = {w["connections"] for w in found}
            return found if len({w["host"] for w in found}) == 3 and held == {2} else None

        workers = wait_for(listed, timeout=120, every=2)
        assert len(workers) == 3 * 4, workers  # 3 replicas of --count 4 (the compose default)
        ids = [f"pgb{i:03d}" for i in range(200)]
        lines = "".join(json.dumps({"id": i, "command": f"echo {i}"}) + "\n" for i in ids)
        running = [c["Id"] for c in s.containers("worker") if c["State"]["Running"]]
        argv = ["docker", "exec", "-i", running[0], "queuectl", "enqueue", "--file", "-"]
        made = dockerstack._run(argv, timeout=60, input=lines)
        assert made.returncode == 0, made.stderr
        wait_for(
            lambda: s.json("status", "--json")["jobs"]["completed"] == 200, timeout=120, every=1
        )
        runs = [s.json("show", i, "--json")["runs"] for i in ids[:20]]
        assert all(len(r) == 1 and r[0]["outcome"] == "succeeded" for r in runs), runs
        sessions = _psql(
            s,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = 'queuectl' AND application_name <> 'psql'",
        )
        # 3 listeners + PgBouncer's pool (20 at most), not 2 per process of 5 + the CLI
        assert sessions and int(sessions) <= 3 + 20, sessions
        for service in ("worker", "orchestrator"):
            log = s.logs(service)
            assert "Traceback" not in log, log[-3000:]
            assert "prepared statement" not in log, log[-3000:]
            assert "listen_unavailable" not in log, log[-3000:]
    finally:
        s.down()
