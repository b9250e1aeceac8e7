"""The shipped compose stack on a real Docker engine: images built here from Debian's
packages (no image registry is reachable), a project of its own, every call bounded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.deployfiles import COMPOSE, ROOT

IMAGES = Path(__file__).parent / "images"
OVERRIDE = Path(__file__).parent / "compose.test.yml"
DEBIAN = "queuectl-test/debian:bookworm"
PYTHON = "queuectl-test/python:3.11"
# what the override swaps in for the official images; built once, kept by the engine
STAND_INS = {
    PYTHON: "python.Dockerfile",
    "queuectl-test/postgres:15": "postgres.Dockerfile",
    "queuectl-test/prometheus:2": "prometheus.Dockerfile",
}
PGBOUNCER = "queuectl-pgbouncer:latest"  # the name docker-compose.yml gives the image
MIRROR = "http://deb.debian.org/debian"
# every service of the shipped file but Grafana (no Debian or PyPI package exists for it)
SERVICES = ["postgres", "migrate", "orchestrator", "worker", "dashboard", "prometheus"]


def _run(argv: Sequence[str], *, timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)


def engine_or_skip() -> None:
    """A Docker engine that answers, and docker-compose; else skip saying why (in CI, where
    .ci/run starts the engine, fail instead)."""
    missing = [tool for tool in ("docker", "docker-compose") if shutil.which(tool) is None]
    reason = f"not installed: {', '.join(missing)}" if missing else ""
    if not reason:
        info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20)
        if info.returncode != 0:
            reason = f"no Docker engine answers: {info.stderr.strip().splitlines()[-1:]}"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the compose test needs a Docker engine ({reason})")
        pytest.skip(f"the compose test needs a Docker engine ({reason}); `.ci/run` starts one")


def _image_exists(tag: str) -> bool:
    return _run(["docker", "image", "inspect", tag], timeout=30).returncode == 0


def _build(tag: str, dockerfile: Path, context: Path, *args: str) -> float:
    started = time.monotonic()
    built = _run(
        [
            "docker",
            "build",
            "--network",
            "host",
            "-q",
            "-t",
            tag,
            "-f",
            str(dockerfile),
            *args,
            str(context),
        ],
        timeout=900,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return time.monotonic() - started


_BUILT: dict[str, float] = {}  # this test session's builds: once per session is enough


def build_images() -> dict[str, float]:
    """The stand-in base images when missing (a Debian base from debootstrap, then Python,
    PostgreSQL and Prometheus from Debian's packages), and queuectl's own image from the
    shipped Dockerfile on that Python (once per test session: the prune below drops the build
    stage's cache, so a rebuild reinstalls the dependencies, ~2.5 min). Seconds each."""
    if _BUILT:
        return dict(_BUILT)
    took: dict[str, float] = {}
    if not _image_exists(DEBIAN):
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as root:
            # mkdtemp makes it 0700 and tar records it as the image's `/`: no user but root
            # could then reach anything (initdb as postgres failed to load libpq)
            os.chmod(root, 0o755)
            boot = _run(["debootstrap", "--variant=minbase", "bookworm", root, MIRROR], timeout=900)
            assert boot.returncode == 0, boot.stderr[-3000:]
            # the context closes tar's stdout and waits for it: a pipe left open is a
            # ResourceWarning, which the suite turns into an error (first build on a machine)
            with subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE) as tar:
                imported = _run(["docker", "import", "-", DEBIAN], timeout=600, stdin=tar.stdout)
            assert imported.returncode == 0, imported.stderr
        took[DEBIAN] = time.monotonic() - started
    for tag, dockerfile in STAND_INS.items():
        if _image_exists(tag):
            continue
        with tempfile.TemporaryDirectory() as context:
            for item in IMAGES.iterdir():
                shutil.copy(item, context)
            # pip in the Python image fetches through this machine's proxy and its CA
            shutil.copy("/etc/ssl/certs/ca-certificates.crt", context)
            took[tag] = _build(tag, Path(context) / dockerfile, Path(context))
    took["queuectl:latest"] = _build(
        "queuectl:latest", ROOT / "Dockerfile", ROOT, "--build-arg", f"BASE={PYTHON}"
    )
    # the `pgbouncer` profile's image, from the shipped deploy/pgbouncer on the Debian base
    # (its default base, debian:bookworm-slim, would come from a registry)
    pgbouncer = ROOT / "deploy" / "pgbouncer"
    took[PGBOUNCER] = _build(
        PGBOUNCER, pgbouncer / "Dockerfile", pgbouncer, "--build-arg", f"BASE={DEBIAN}"
    )
    # the image this replaced, and its build stage, are left untagged: on vfs each is a
    # full 400 MB copy, and a run a day would fill the disk
    _run(["docker", "image", "prune", "-f"], timeout=300)
    _BUILT.update(took)
    return took


def image_size_mb(tag: str) -> float:
    out = _run(["docker", "image", "inspect", "--format", "{{.Size}}", tag], timeout=30)
    return int(out.stdout.strip()) / 1e6


class Stack:
    """One compose project: the shipped docker-compose.yml plus the test override."""

    def __init__(self, env: dict[str, str]) -> None:
        self.project = f"qtest{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, **env}

    def compose(
        self, *args: str, timeout: float = 180, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = ["docker-compose", "-p", self.project, "-f", str(COMPOSE), "-f", str(OVERRIDE)]
        return _run([*argv, *args], timeout=timeout, env=self.env, cwd=ROOT, input=input)

    def ok(self, *args: str, timeout: float = 180, input: str | None = None) -> str:
        result = self.compose(*args, timeout=timeout, input=input)
        assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-3000:])
        return result.stdout

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        """`docker inspect` of the project's containers (of one service), running or not."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        ids = _run(["docker", "ps", "-aq", *filters], timeout=30).stdout.split()
        if not ids:
            return []
        out = _run(["docker", "inspect", *ids], timeout=30)
        found: list[dict[str, Any]] = json.loads(out.stdout)
        return found

    def queuectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A CLI call inside a running worker container (a new container per call is slow;
        `compose exec` picks replica 1, which may be the one a test just killed)."""
        running = [c["Id"] for c in self.containers("worker") if c["State"]["Running"]]
        assert running, "no worker container is running"
        return _run(["docker", "exec", "-i", running[0], "queuectl", *args], timeout=timeout)

    def json(self, *args: str) -> Any:
        result = self.queuectl(*args)
        assert result.returncode == 0, (args, result.stderr[-2000:])
        return json.loads(result.stdout)

    def logs(self, service: str) -> str:
        """What the service's containers wrote (docker-compose's own "Attaching" line cut)."""
        out = self.compose("logs", "--no-color", "--no-log-prefix", service, timeout=60).stdout
        return "".join(
            line for line in out.splitlines(keepends=True) if not line.startswith("Attaching to ")
        )

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "5", timeout=180)
