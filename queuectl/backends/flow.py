"""Dependencies and unique keys, dialect-free: an enqueue's plan, and what an ended job sets off.

Both run inside the caller's transaction, through named queries both dialects define. The
races they close, and how (DECISIONS.md §23):
- an enqueue `after` a job, against that job's finish: the enqueue flags the dependency's row
  (`mark_dependencies`), which locks it, so whichever commits second sees the other: a
  finish sees `has_dependents` on the row's new version, an enqueue sees the final state;
- two dependencies of one job completing at once: each completion's follow-up
  (`unblock_dependents`) runs after its own finish committed, so the later one finds both;
- two enqueues of one unique key: they take turns on the key (Postgres: an advisory
  transaction lock; SQLite: the one write lock), and the second's look-up sees the first's job.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from queuectl import errors, models
from queuectl.backends.connector import Connector, Row, Session

_ENDED_BADLY = frozenset({models.JobState.DEAD, models.JobState.CANCELLED})


class Plan:
    """What an enqueue with `after` or unique keys does beyond inserting rows."""

    __slots__ = ("conflicts", "deps", "flows", "insert")

    def __init__(self) -> None:
        self.insert: list[int] = []  # the specs' indexes to insert, in input order
        self.conflicts: dict[int, models.Job | int] = {}  # index -> existing job, or the
        # index of an earlier spec of this batch with the same unique key
        self.flows: dict[int, dict[str, Any]] = {}  # index -> set_flow's values
        self.deps: dict[int, list[str]] = {}  # index -> the ids it runs after


def needs_plan(specs: Sequence[models.JobSpec]) -> bool:
    return any(spec.after or spec.unique_key for spec in specs)


def check_batch(specs: Sequence[models.JobSpec]) -> None:
    """A job may depend on existing jobs and on earlier lines of its batch, never on itself
    or a later line (which would let a batch wait on itself for ever)."""
    index = {spec.id: i for i, spec in enumerate(specs) if spec.id}
    for i, spec in enumerate(specs):
        for dep in spec.after:
            where = f"job {i + 1}: " if len(specs) > 1 else ""
            if dep == spec.id:
                raise errors.UsageError(f"{where}a job cannot run after itself ({dep!r})")
            if index.get(dep, -1) > i:
                raise errors.UsageError(
                    f"{where}after {dep!r}: a job can depend on an earlier line, not a later one"
                )


def plan(
    s: Session, c: Connector, specs: Sequence[models.JobSpec], to_job: Callable[[Row], models.Job]
) -> Plan:
    """Resolve unique keys and dependencies inside `s`; JobNotFound for an unknown `after`."""
    check_batch(specs)
    p = Plan()
    _resolve_unique(s, specs, to_job, p)
    stored = _resolve_deps(specs, p)
    states: dict[str, str] = {}
    if stored:
        rows = s.all("mark_dependencies", {"ids": c.param_ids(sorted(stored))})
        states = {r["id"]: r["state"] for r in rows}
        if missing := sorted(stored - states.keys()):
            raise errors.JobNotFound(missing[0])
    for i in p.insert:  # in input order: an earlier line's state is known before a later's
        state, error = _initial_state(p.deps[i], states)
        if job_id := specs[i].id:
            states[job_id] = state
        p.flows[i] = {"state": state, "error": error, "key": specs[i].unique_key}
    dependency_ids = {dep for deps in p.deps.values() for dep in deps}
    for i in p.insert:
        p.flows[i]["has_dependents"] = bool(specs[i].id and specs[i].id in dependency_ids)
    return p


def _resolve_unique(
    s: Session, specs: Sequence[models.JobSpec], to_job: Callable[[Row], models.Job], p: Plan
) -> None:
    """Which specs insert, and which name a key an unfinished job (or an earlier line) holds."""
    holder: dict[str, models.Job | int] = {}  # unique key -> who holds it
    for name in sorted({spec.unique_key for spec in specs if spec.unique_key is not None}):
        s.one("unique_lock", {"key": name})
        window = next(sp.unique_for_s for sp in specs if sp.unique_key == name)
        row = s.one("find_unique", {"key": name, "window_s": window})
        if row is not None:
            holder[name] = to_job(row)
    for i, spec in enumerate(specs):
        if (key := spec.unique_key) is not None and key in holder:
            p.conflicts[i] = holder[key]
            continue
        if key is not None:
            holder[key] = i
        p.insert.append(i)


def _resolve_deps(specs: Sequence[models.JobSpec], p: Plan) -> set[str]:
    """Each inserted spec's dependencies (p.deps), on jobs of this batch (by the ids they
    were given) or already stored: the latter's ids."""
    in_batch = {specs[i].id for i in p.insert if specs[i].id}
    resolved = {specs[i].id: p.conflicts[i] for i in p.conflicts if specs[i].id}
    stored: set[str] = set()
    for i in p.insert:
        deps = [_holder_of(dep, resolved, specs, i) for dep in dict.fromkeys(specs[i].after)]
        stored.update(dep for dep in deps if dep not in in_batch)
        p.deps[i] = list(dict.fromkeys(deps))
    return stored


def _holder_of(
    dep: str,
    resolved: Mapping[str | None, models.Job | int],
    specs: Sequence[models.JobSpec],
    i: int,
) -> str:
    """A line of this batch that inserted nothing (its unique key was held): its dependents
    wait for the job that holds the key."""
    other = resolved.get(dep)
    if isinstance(other, models.Job):
        return other.id
    if other is not None:
        if not (held_by := specs[other].id):
            raise errors.UsageError(
                f"job {i + 1}: after {dep!r}, whose unique key an earlier line without an id "
                "holds: give that line an id"
            )
        return held_by
    return dep


def _initial_state(deps: Sequence[str], states: Mapping[str, str]) -> tuple[str, str | None]:
    """A new job's state from its dependencies': cancelled when one ended dead or cancelled
    (naming the first), pending when all completed (or none), else blocked."""
    for dep in sorted(deps):
        if states[dep] in _ENDED_BADLY:
            return str(models.JobState.CANCELLED), f"dependency {dep} {states[dep]}"
    if all(states[dep] == models.JobState.COMPLETED for dep in deps):
        return str(models.JobState.PENDING), None
    return str(models.JobState.BLOCKED), None


def apply(s: Session, p: Plan, job_ids: Sequence[str]) -> None:
    """After the rows went in (job_ids: the inserted ones, in p.insert's order): their
    states, keys and flags, and the dependency edges."""
    for i, job_id in zip(p.insert, job_ids, strict=True):
        flow = p.flows[i]
        if flow["state"] != models.JobState.PENDING or flow["key"] or flow["has_dependents"]:
            s.run("set_flow", {"id": job_id, **flow})
        for dep in p.deps[i]:
            s.run("add_dependency", {"id": job_id, "on": dep})


# --- what an ended job sets off ---------------------------------------------------------------
Notify = Callable[[Session, Mapping[str, int]], None]
Done = Callable[[Session, Sequence[str]], None]


def flagged(rows: Sequence[Row]) -> list[Row]:
    """Of rows that may have ended (id, queue, state, has_dependents, watched): those that
    ended and have dependents or a waiter, which `settle` must see to."""
    return [
        r
        for r in rows
        if (r["has_dependents"] or r["watched"]) and r["state"] in models.TERMINAL_STATES
    ]


def settle(s: Session, c: Connector, ended: Sequence[Row], notify: Notify, done: Done) -> None:
    """Unblock the dependents of completed jobs whose every dependency is completed now;
    cancel the dependents of dead or cancelled jobs, level by level (each level a fresh
    statement, so a dependent enqueued meanwhile is seen); tell waiters (`wait`)."""
    completed = [r["id"] for r in ended if r["has_dependents"] and r["state"] == "completed"]
    watched = [r["id"] for r in ended if r["watched"]]
    if completed:
        rows = s.all("unblock_dependents", {"ids": c.param_ids(completed)})
        if rows:
            notify(s, Counter(r["queue"] for r in rows))
    failed = {
        r["id"]: r["state"] for r in ended if r["has_dependents"] and r["state"] in _ENDED_BADLY
    }
    while failed:
        rows = s.all("cancel_dependents", _ended_params(failed))
        watched += [r["id"] for r in rows if r["watched"]]
        failed = {r["id"]: r["state"] for r in rows if r["has_dependents"]}
    if watched:
        done(s, watched)


def _ended_params(failed: Mapping[str, str]) -> dict[str, Any]:
    ids = sorted(failed)
    # Postgres reads the two arrays, SQLite the JSON object; neither binds the other's
    return {
        "ids": ids,
        "states": [failed[i] for i in ids],
        "ended": json.dumps({i: failed[i] for i in ids}),
    }


def settle_blocked(s: Session, c: Connector, notify: Notify, done: Done) -> int:
    """The sweep behind the prompt paths: blocked jobs whose dependencies all completed (or
    were purged) become pending; those with one dead or cancelled are cancelled, with their
    own dependents. How many jobs it moved."""
    rows = s.all("blocked_settled")
    free = [r["id"] for r in rows if r["ended"] is None]
    moved = 0
    if free:
        unblocked = s.all("unblock_ids", {"ids": c.param_ids(free)})
        moved += len(unblocked)
        if unblocked:
            notify(s, Counter(r["queue"] for r in unblocked))
    cancelled: list[Row] = []
    for r in rows:
        if r["ended"] is not None:
            dep, _, state = r["ended"].partition(" ")
            error = f"dependency {dep} {state}"
            cancelled += s.all("cancel_blocked", {"id": r["id"], "error": error})
    moved += len(cancelled)
    if cancelled:
        settle(s, c, flagged(cancelled), notify, done)
    return moved
