"""Prometheus metrics: each process's counters and histograms, the orchestrator's database
collector, and the /metrics HTTP server. Labels come from closed sets only (queue, state,
outcome, sweep, operation): never job ids, commands or hostnames."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from queuectl import __version__, errors, models
from queuectl.observe import NOTHING, CounterLike, GaugeLike, HistogramLike

if TYPE_CHECKING:
    from queuectl.backends.base import Backend

# shell jobs run from milliseconds to hours; waits from "picked up at once" to "backlogged"
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
CLAIM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

log = logging.getLogger(__name__)

# No `*_created` series: one extra series per counter and histogram child (a timestamp of the
# child's first use) that no dashboard or alert reads, and Prometheus 2.x stores as a plain
# gauge. The switch is process-wide; only queuectl's own processes import this module (a
# worker or orchestrator with --metrics-port, the dashboard's /metrics).
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """The metrics one process exports, on one registry (what observe.MetricsLike names).

    A process registers only the series it owns: a worker its slots and attempts, an
    orchestrator its leader lease and sweeps, a SQLite worker that embeds the orchestrator
    both, the dashboard neither (its /metrics is the build info and the queue collector).
    An instrument the process does not own stays observe.NOTHING: counting into it is a
    no-op, and no series reads 0 for something this process never does."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.registry = CollectorRegistry()
        Info("queuectl_build", "Version of queuectl", registry=self.registry).info(
            {"version": __version__, "role": role}
        )
        self.claimed: CounterLike = NOTHING
        self.finished: CounterLike = NOTHING
        self.db_errors: CounterLike = NOTHING
        self.recovered: CounterLike = NOTHING
        self.schedules_fired: CounterLike = NOTHING
        self.sweeps: CounterLike = NOTHING
        self.run_duration: HistogramLike = NOTHING
        self.queue_wait: HistogramLike = NOTHING
        self.claim_latency: HistogramLike = NOTHING
        self.busy_slots: GaugeLike = NOTHING
        self.slots: GaugeLike = NOTHING
        self.leader: GaugeLike = NOTHING
        if role == "worker":
            self.add_worker_metrics()
        elif role == "orchestrator":
            self.add_orchestrator_metrics()

    def add_worker_metrics(self) -> None:
        """Slots, claims and attempts: what `worker start` counts."""
        r = self.registry
        self.claimed = Counter(
            "queuectl_jobs_claimed", "Jobs claimed by this process", ["queue"], registry=r
        )
        self.finished = Counter(
            "queuectl_jobs_completed",
            "Attempts finished by this process, by queue and outcome",
            ["queue", "outcome"],
            registry=r,
        )
        self.run_duration = Histogram(
            "queuectl_job_run_duration_seconds",
            "Wall time of one attempt",
            ["queue"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "queuectl_job_queue_wait_seconds",
            "Time from a job falling due to its attempt starting",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.claim_latency = Histogram(
            "queuectl_claim_duration_seconds",
            "Round trip of one claim query",
            buckets=CLAIM_BUCKETS,
            registry=r,
        )
        self.busy_slots = Gauge("queuectl_worker_busy_slots", "Slots running a job", registry=r)
        self.slots = Gauge("queuectl_worker_slots", "Job slots of this process", registry=r)
        self.db_errors = Counter(
            "queuectl_db_errors",
            "Database operations that failed, by operation",
            ["operation"],
            registry=r,
        )
        self._add_recovered()

    def add_orchestrator_metrics(self) -> None:
        """The leader lease, sweeps and cron: what `orchestrator run` counts, and a SQLite
        `worker start` that carries the orchestrator's duties."""
        r = self.registry
        self.schedules_fired = Counter(
            "queuectl_schedules_fired", "Cron slots that enqueued a job", registry=r
        )
        self.sweeps = Counter(
            "queuectl_sweep_runs",
            "Orchestrator sweeps run, by sweep and result",
            ["sweep", "result"],
            registry=r,
        )
        self.leader = Gauge(
            "queuectl_orchestrator_leader", "1 while this orchestrator holds the lease", registry=r
        )
        self._add_recovered()

    def _add_recovered(self) -> None:
        # both a worker and an orchestrator recover lost jobs (recovery.py): one series
        if self.recovered is NOTHING:
            self.recovered = Counter(
                "queuectl_jobs_recovered",
                "Jobs recovered by this process after their worker was lost",
                registry=self.registry,
            )

    def serve(self, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 (scraped remotely)
        from prometheus_client import start_http_server

        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise errors.UsageError(f"--metrics-port {port}: {exc.strerror}") from None

    def add_connection_gauge(self, backend: Backend) -> None:
        """queuectl_db_connections{role}: the database connections this process holds open,
        read at scrape time (Postgres only: pool plus LISTEN; through PgBouncer these are
        connections to PgBouncer, which shares its few server connections among them)."""
        held: Callable[[], int] | None = getattr(backend, "connections", None)
        if held is None:
            return  # SQLite: a file, no server connections
        gauge = Gauge(
            "queuectl_db_connections",
            "Database connections this process holds open now (pool and LISTEN)",
            ["role"],
            registry=self.registry,
        )
        gauge.labels(role=self.role).set_function(lambda: float(held()))

    def add_queue_collector(
        self, backend: Backend, *, lease_ttl_s: float, when: Callable[[], bool] | None = None
    ) -> None:
        """The queue gauges, read from the database at each scrape. With `when` (the leader
        lease of an orchestrator, embedded or not), only while it returns True: the fleet
        runs the queries once per scrape, not once per process. Otherwise the scrape costs
        one cheap read and exports queuectl_db_up alone."""
        self.registry.register(QueueCollector(backend, lease_ttl_s=lease_ttl_s, when=when))


class QueueCollector(Collector):
    """Queue depth and flow settings from the database at scrape time: right however many
    workers run."""

    def __init__(
        self, backend: Backend, *, lease_ttl_s: float, when: Callable[[], bool] | None = None
    ) -> None:
        self.backend = backend
        self.lease_ttl_s = lease_ttl_s
        self.when = when

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("queuectl_db_up", "1 when the database answered this scrape")
        if self.when is not None and not self.when():
            # a standby: the leader exports the queue; this process says only whether it
            # reaches the database (one single-row read), so `min(queuectl_db_up)` names any
            # process that cannot
            try:
                self.backend.get_settings()
            except errors.QueuectlError as exc:
                log.warning("metrics scrape failed: %s", exc)
                up.add_metric([], 0)
            else:
                up.add_metric([], 1)
            yield up
            return
        try:
            stats = self.backend.stats(lease_ttl_s=self.lease_ttl_s)
            oldest = self.backend.oldest_due()
            workers = self.backend.list_workers(lease_ttl_s=self.lease_ttl_s)
            controls = self.backend.queue_controls()
        except errors.QueuectlError as exc:
            log.warning("metrics scrape failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily(
            "queuectl_queue_jobs", "Jobs by queue and state", labels=["queue", "state"]
        )
        for queue, counts in stats.by_queue.items():
            for job_state in models.JobState:
                jobs.add_metric([queue, str(job_state)], counts.get(job_state, 0))
        yield jobs
        age = GaugeMetricFamily(
            "queuectl_queue_oldest_job_age_seconds",
            "How long the oldest due, unclaimed job of a queue has waited",
            labels=["queue"],
        )
        for queue in stats.by_queue:
            age.add_metric([queue], oldest.get(queue, 0.0))
        yield age
        yield from _flow_control(stats.by_queue.keys(), controls)
        alive = GaugeMetricFamily(
            "queuectl_workers_alive", "Live worker slots by state", labels=["state"]
        )
        by_state = {"idle": 0, "busy": 0, "stopping": 0}
        for w in workers:
            by_state[w.to_json()["state"]] += 1
        for state, n in by_state.items():
            alive.add_metric([state], n)
        yield alive
        lost = GaugeMetricFamily(
            "queuectl_workers_lost",
            "Worker slots whose heartbeat stopped without a shutdown (dropped after 3 leases)",
        )
        lost.add_metric([], stats.lost_workers)
        yield lost


def _flow_control(
    queues: Iterable[str], controls: Iterable[models.QueueControl]
) -> Iterator[Metric]:
    """The `queue pause/set` settings of every queue with jobs or settings. A limit that is
    not set has no series: a sentinel such as -1 or +Inf would draw as a real limit."""
    by_name = {c.name: c for c in controls}
    paused = GaugeMetricFamily(
        "queuectl_queue_paused",
        "1 while a queue is paused (`queue pause`: its jobs are not claimed), else 0",
        labels=["queue"],
    )
    concurrency = GaugeMetricFamily(
        "queuectl_queue_concurrency_limit",
        "Most jobs of a queue processing at once, fleet-wide (`queue set --concurrency`); "
        "no series without a limit",
        labels=["queue"],
    )
    rate = GaugeMetricFamily(
        "queuectl_queue_rate_limit",
        "Attempts a queue may start per second: its `queue set --rate N/PERIOD` as N divided "
        "by PERIOD in seconds (100/1m is 1.667); no series without a limit",
        labels=["queue"],
    )
    period = GaugeMetricFamily(
        "queuectl_queue_rate_period_seconds",
        "The window of a queue's rate limit (60 for 100/1m): the limit times it is N",
        labels=["queue"],
    )
    for name in sorted(set(queues) | by_name.keys()):
        control = by_name.get(name) or models.QueueControl(name)
        paused.add_metric([name], 1 if control.paused else 0)
        if control.concurrency is not None:
            concurrency.add_metric([name], control.concurrency)
        if control.rate_limit is not None and control.rate_period_s:
            rate.add_metric([name], control.rate_limit / control.rate_period_s)
            period.add_metric([name], control.rate_period_s)
    yield from (paused, concurrency, rate, period)
