"""What the worker and orchestrator count, as a protocol, and a null object that counts nothing."""

from __future__ import annotations

from typing import Protocol

# No prometheus_client here: a process without --metrics-port never imports it (metrics.py
# does, and is imported only when a port is given). The protocols are the few calls made on
# prometheus_client's Counter, Gauge and Histogram, so metrics.Metrics satisfies MetricsLike.


class CounterLike(Protocol):
    def labels(self, **labels: str) -> CounterLike: ...
    def inc(self, amount: float = 1) -> None: ...


class GaugeLike(Protocol):
    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...
    def set(self, value: float) -> None: ...


class HistogramLike(Protocol):
    def labels(self, **labels: str) -> HistogramLike: ...
    def observe(self, amount: float) -> None: ...


class MetricsLike(Protocol):
    """The metrics of one worker or orchestrator process (metrics.Metrics names them)."""

    @property
    def claimed(self) -> CounterLike: ...
    @property
    def finished(self) -> CounterLike: ...
    @property
    def run_duration(self) -> HistogramLike: ...
    @property
    def queue_wait(self) -> HistogramLike: ...
    @property
    def claim_latency(self) -> HistogramLike: ...
    @property
    def busy_slots(self) -> GaugeLike: ...
    @property
    def slots(self) -> GaugeLike: ...
    @property
    def db_errors(self) -> CounterLike: ...
    @property
    def recovered(self) -> CounterLike: ...
    @property
    def schedules_fired(self) -> CounterLike: ...
    @property
    def sweeps(self) -> CounterLike: ...
    @property
    def leader(self) -> GaugeLike: ...


class _Nothing:
    """Any instrument, counting nothing."""

    __slots__ = ()

    def labels(self, **labels: str) -> _Nothing:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


# public: metrics.Metrics leaves the instruments a process does not own as this
NOTHING = _Nothing()


class NullMetrics:
    """The metrics of a process started without --metrics-port: every call is a no-op, so
    the code that counts reads the same with or without Prometheus."""

    claimed = finished = db_errors = recovered = schedules_fired = sweeps = NOTHING
    run_duration = queue_wait = claim_latency = NOTHING
    busy_slots = slots = leader = NOTHING


NULL_METRICS: MetricsLike = NullMetrics()
