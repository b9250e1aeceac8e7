"""Hostile input: `enqueue` fuzzed with hypothesis (in process, then through the real CLI on
both backends), huge, deeply nested, NUL, non-UTF-8 and 10 MB inputs, bulk files with one bad
line, and SQL injection in every argument. Each input is rejected with exit code 2 (or 3/4)
and one line on stderr, or accepted and stored exactly; nothing else changes."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from queuectl import errors, models, specs
from queuectl.backends.base import Backend
from queuectl.web.app import create_app
from tests.conftest import Cli
from tests.e2e.test_bad_input import snapshot

pytestmark = pytest.mark.e2e

T = TypeVar("T")

MAX_COMMAND = 64 * 1024  # DESIGN.md §1
VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
VALID_QUEUE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# every key a job object may carry (README, "Commands"): the fields, and the read-only ones
# `show --json` prints, which a new job may repeat with their fresh values
KNOWN_KEYS = {
    *("id", "command", "queue", "priority", "run_at", "delay", "timeout", "max_retries"),
    *("ttl", "expires_at", "state", "attempts", "last_error", "exit_code", "started_at"),
    *("finished_at", "worker_id", "created_at", "updated_at"),
}
INJECTIONS = [
    "x'; DROP TABLE queuectl_jobs; --",
    "' OR '1'='1",
    '"; DELETE FROM queuectl_settings; --',
    "1; UPDATE queuectl_jobs SET state='dead'",
    "%",
    "_",
    "\\",
    "' UNION SELECT * FROM queuectl_runs --",
]
ARG_MAX = 100_000  # below Linux's 128 KiB limit on one argument; longer input goes in a file

# --- strategies -----------------------------------------------------------------------------

_odd_chars = st.characters(categories=["Cs", "Cc", "Zl", "Zs", "Cf", "So"])  # Cs: surrogates
texts = st.one_of(
    st.text(max_size=30),
    st.text(_odd_chars, max_size=12),
    st.sampled_from([*INJECTIONS, "", " ", "\x00", "\n", "\ud800", "é" * 3, "\u2028", "\ufeff"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # hypothesis reaches far past 64 bits
    st.floats(),  # NaN and ±Infinity too: json.dumps writes them as NaN, Infinity
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
commands = st.one_of(
    st.text(min_size=1, max_size=80),
    texts,
    st.integers(MAX_COMMAND - 2, MAX_COMMAND + 2).map(lambda n: "e" * n),
    st.integers(MAX_COMMAND // 2 - 1, MAX_COMMAND // 2 + 1).map(lambda n: "é" * n),  # 2 bytes
    json_values,
)
timestamps = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda t: t.isoformat().replace("+00:00", "Z"))
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.one_of(st.from_regex(VALID_ID, fullmatch=True), texts, json_values),
    "queue": st.one_of(st.from_regex(VALID_QUEUE, fullmatch=True), texts, json_values),
    "priority": st.one_of(
        st.integers(-(2**31), 2**31),
        st.sampled_from([2**31 - 1, -(2**31 - 1), 2**63, -(2**63), 10**300]),
        json_values,
    ),
    "max_retries": st.one_of(st.integers(-2, 1002), json_values),
    "timeout": st.one_of(
        st.floats(-1, 1e6),
        st.sampled_from([0, 1e-4, 1e308, 10**400, "30s", "5m", "0", "-1s", "1e3", "soon"]),
        json_values,
    ),
    "run_at": st.one_of(timestamps, texts, json_values),
    "delay": st.one_of(st.integers(-5, 10**6), st.sampled_from(["30s", "10000000d"]), scalars),
    "ttl": st.one_of(st.integers(-5, 10**6), st.sampled_from(["1h", "0s"]), scalars),
    "expires_at": st.one_of(timestamps, texts),
    "state": st.one_of(st.sampled_from(["pending", "dead"]), scalars),
    "attempts": st.one_of(st.just(0), scalars),
    "created_at": json_values,
}
# jobs that are valid, with every optional field at values across its whole range
valid_jobs = st.fixed_dictionaries(
    {"command": st.text(min_size=1, max_size=200).filter(lambda c: c.strip() and "\x00" not in c)},
    optional={
        "id": st.from_regex(VALID_ID, fullmatch=True),
        "queue": st.from_regex(VALID_QUEUE, fullmatch=True),
        "priority": st.integers(-(2**31 - 1), 2**31 - 1),
        "max_retries": st.one_of(st.integers(0, 1000), st.none()),
        "timeout": st.one_of(st.floats(0.001, 1e12), st.integers(0, 10**9), st.none()),
        "run_at": timestamps,
        "state": st.just("pending"),
    },
)
hostile_jobs = st.one_of(
    st.builds(
        lambda fixed, extra: {**extra, **fixed},
        st.fixed_dictionaries({}, optional={"command": commands, **FIELDS}),
        st.dictionaries(texts, json_values, max_size=2),
    ),
    st.fixed_dictionaries({"command": st.text(min_size=1, max_size=40)}, optional=FIELDS),
    json_values,  # not an object at all
)
# two in five valid, so that even 40 CLI examples check a dozen or more round trips
jobs = st.integers(0, 4).flatmap(lambda n: valid_jobs if n < 2 else hostile_jobs)


@st.composite
def job_texts(draw: st.DrawFn) -> str:
    """A job as JSON text: NaN and Infinity spelled out, unicode escaped or not."""
    obj = draw(jobs)
    # a lone surrogate has no UTF-8 form, so only its escape can reach the CLI
    try:
        text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
        text.encode()
    except UnicodeEncodeError:
        text = json.dumps(obj)
    except (RecursionError, ValueError):
        text = "{}"
    return text


_splices = st.sampled_from(
    [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xc0\xaf", b"\r", b"\n", b"\xef\xbb\xbf"]
)


@st.composite
def raw_inputs(draw: st.DrawFn) -> bytes:
    """Bytes: a valid job with something spliced in (invalid UTF-8, NUL, a BOM, a CESU-8
    surrogate, a line break), or arbitrary bytes."""
    if draw(st.booleans()):
        return draw(st.binary(min_size=1, max_size=60))
    base = json.dumps({"command": draw(st.text(min_size=1, max_size=20)), "queue": "q"})
    data = base.encode()
    cut = draw(st.integers(0, len(data)))
    return data[:cut] + draw(_splices) + data[cut:]


def drawn(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """`count` examples of a strategy, generated by hypothesis (its boundary values and
    variety), for running outside its loop: here, many CLI calls at once."""
    found: list[T] = []

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        found.append(value)

    collect()
    return found


# --- the oracle -----------------------------------------------------------------------------


def check_accepted(obj: object, job: dict[str, Any]) -> None:
    """An accepted input was a valid job, and the job holds exactly what it asked for."""
    assert isinstance(obj, dict), obj
    assert obj.keys() <= KNOWN_KEYS, obj.keys() - KNOWN_KEYS
    command = obj["command"]
    assert isinstance(command, str) and command.strip() and "\x00" not in command
    assert len(command.encode()) <= MAX_COMMAND  # raises on a lone surrogate
    assert job["command"] == command
    if obj.get("id") is not None:
        assert VALID_ID.fullmatch(obj["id"]) and job["id"] == obj["id"]
    queue = obj.get("queue", "default")
    assert VALID_QUEUE.fullmatch(queue) and job["queue"] == queue
    priority = obj.get("priority", 0)
    assert type(priority) is int and abs(priority) < 2**31 and job["priority"] == priority
    if obj.get("max_retries") is not None:
        retries = obj["max_retries"]
        assert type(retries) is int and retries >= 0 and job["max_retries"] == retries
    else:
        assert job["max_retries"] == 3  # the config default
    timeout = obj.get("timeout")
    if timeout is None or (type(timeout) in (int, float) and timeout == 0):
        assert job["timeout"] in (None, 0.0)
    elif type(timeout) in (int, float):
        assert math.isfinite(timeout) and timeout > 0 and job["timeout"] == float(timeout)
    if isinstance(obj.get("run_at"), str):
        asked = datetime.fromisoformat(obj["run_at"].replace("Z", "+00:00"))
        stored = datetime.fromisoformat(job["run_at"].replace("Z", "+00:00"))
        assert abs(stored - asked) < timedelta(milliseconds=1), (obj["run_at"], job["run_at"])


@dataclass
class Result:
    """One CLI call: what went in and what came out."""

    label: str
    given: Any  # the input: text, bytes, or the object it encodes
    code: int
    stdout: str
    stderr: str


def check_rejected_cleanly(result: Result, codes: Sequence[int] = (2,)) -> None:
    assert result.code in codes, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0] != "error: ", result
    assert "Traceback" not in result.stderr and result.stdout == "", result


def run_all(cli: Cli, calls: list[tuple[str, Any, list[Any], bytes | None]]) -> list[Result]:
    """Many `python -m queuectl` calls at once (each is a fresh process; they overlap well
    on Postgres, where connecting dominates): (label, given, argv, stdin)."""

    def one(call: tuple[str, Any, list[Any], bytes | None]) -> Result:
        label, given_, argv, stdin = call
        done = subprocess.run(
            [sys.executable, "-m", "queuectl", *argv],
            env=cli.env(),
            cwd=cli.cwd,
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=60,
        )
        return Result(
            label,
            given_,
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, calls))


def stored_jobs(cli: Cli) -> dict[str, dict[str, Any]]:
    return {j["id"]: j for j in cli.json("list", "--limit", "100000", "--json")}


# --- in process: the validation every enqueue runs ----------------------------------------


def test_fuzzed_job_json_is_rejected_in_one_line_or_parsed_exactly() -> None:
    """specs.parse_json_arg, the function `enqueue '<json>'` hands its argument to, on
    1,000 hypothesis examples: a UsageError of one line, or a JobSpec with exactly the
    fields asked for. Anything else it raises fails the test."""
    tally = {"accepted": 0, "rejected": 0}

    @settings(
        max_examples=1000,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(job_texts())
    def check(text: str) -> None:
        try:
            spec = specs.parse_json_arg(text)
        except errors.UsageError as exc:
            message = str(exc)
            assert message and "\n" not in message and len(message) < 400, message
            tally["rejected"] += 1
            return
        obj = json.loads(text)
        check_accepted(
            obj,
            {
                "command": spec.command,
                "id": spec.id,
                "queue": spec.queue,
                "priority": spec.priority,
                "max_retries": 3 if spec.max_retries is None else spec.max_retries,
                "timeout": spec.timeout_s,
                "run_at": models.iso(spec.run_at) if spec.run_at else None,
            },
        )
        tally["accepted"] += 1

    check()
    print(f"\nin process: {tally}")
    # both branches really ran, many times
    assert tally["accepted"] >= 50 and tally["rejected"] >= 300, tally


def test_pathological_json_is_rejected_in_process() -> None:
    """What broke the parser before: nesting past the recursion limit, integers past
    Python's 4,300 digits, integers past a float; in a single job and in NDJSON."""
    deep = "[" * 10_000 + "]" * 10_000
    cases = [
        deep,
        '{"command": "x", "a": ' + deep + "}",
        '{"a": ' * 10_000 + "1" + "}" * 10_000,
        '{"command": "x", "priority": ' + "9" * 5000 + "}",
        '{"command": "x", "timeout": ' + "9" * 400 + "}",
        '{"command": "x", "delay": ' + "9" * 400 + "}",
        '{"command": "x", "timeout": Infinity}',
        '{"command": "x", "timeout": NaN}',
        '{"command": "x", "priority": -Infinity}',
    ]
    for text in cases:
        with pytest.raises(errors.UsageError) as caught:
            specs.parse_json_arg(text)
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 200
        with pytest.raises(errors.UsageError, match=r"^line 2: "):
            specs.parse_ndjson(['{"command": "ok"}', text])


# --- through the CLI, on both backends ------------------------------------------------------


@pytest.mark.timeout(120)
def test_fuzzed_enqueue_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    """40 hypothesis job texts (argv, or --file past 100 KB), 6 raw byte inputs on stdin
    and 4 in argv, through `python -m queuectl enqueue`: each is rejected with exit code 2
    and one line, or accepted as asked; afterwards the table holds exactly the accepted
    jobs, each as `enqueue` printed it."""
    calls: list[tuple[str, Any, list[Any], bytes | None]] = []
    for n, text in enumerate(drawn(job_texts(), 40)):
        if len(text.encode()) < ARG_MAX:
            calls.append(("json-argv", text, ["enqueue", text], None))
        else:
            path = tmp_path / f"big-{n}.ndjson"
            path.write_text(text + "\n")
            calls.append(("json-file", text, ["enqueue", "--file", str(path)], None))
    for data in drawn(raw_inputs(), 6):
        calls.append(("bytes-stdin", data, ["enqueue", "-"], data))
    for data in drawn(raw_inputs().filter(lambda b: b"\x00" not in b), 4):
        calls.append(("bytes-argv", data, [b"enqueue", data], None))  # argv cannot hold NUL

    accepted: dict[str, dict[str, Any]] = {}
    tally: dict[str, int] = {}
    for result in run_all(cli, calls):
        objs = _job_objects(result)
        if result.code == 0:
            assert objs is not None, result  # bytes that are not UTF-8 were accepted
            # one job per "\n": a command may hold U+2028, which str.splitlines splits at
            printed = [json.loads(ln) for ln in result.stdout.split("\n") if ln]
            assert len(printed) == len(objs), result
            for obj, job in zip(objs, printed, strict=True):
                check_accepted(obj, job)
                assert job["state"] == "pending" and job["attempts"] == 0
                accepted[job["id"]] = job
        else:
            check_rejected_cleanly(result, codes=(2, 4))
            if result.code == 4:  # an id that an earlier input took (hypothesis drew it twice)
                assert "already exists" in result.stderr, result
        key = f"{result.label} {'accepted' if result.code == 0 else 'rejected'}"
        tally[key] = tally.get(key, 0) + 1

    stored = stored_jobs(cli)
    assert stored == accepted  # nothing partial, nothing lost, and stored exactly as printed
    for job_id in list(accepted)[:3]:
        shown = cli.json("show", job_id, "--json")
        assert {k: shown[k] for k in accepted[job_id]} == accepted[job_id]
    print(f"\n{cli.url.split(':')[0]}: {len(calls)} inputs: {dict(sorted(tally.items()))}")
    assert sum(v for k, v in tally.items() if k.startswith("json") and "accepted" in k) >= 3
    assert sum(v for k, v in tally.items() if "rejected" in k) >= 20


def _job_objects(result: Result) -> list[Any] | None:
    """The job objects an input holds if it were accepted; None for bytes that are not
    UTF-8, which must be rejected; [] for text that is not JSON, which must be too."""
    if not isinstance(result.given, bytes):
        return [json.loads(result.given)]
    try:
        text = result.given.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = (
        [ln for ln in text.split("\n") if ln.strip()] if result.label == "bytes-stdin" else [text]
    )
    try:
        return [json.loads(ln) for ln in lines]
    except ValueError:
        return []


def _ndjson(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


@pytest.mark.timeout(120)
def test_pathological_input_through_the_cli(cli: Cli, backend: Backend, tmp_path: Path) -> None:
    """Each documented limit and each parser-breaking input, through the real CLI: 10,000
    levels of nesting, 5,000-digit numbers, NaN, NUL and lone surrogates, the 64 KiB command
    limit from both sides, 10 MB commands on stdin and in a file, bytes that are not UTF-8,
    and NDJSON with one bad line after 300 good ones: all or nothing."""
    backend.enqueue([models.JobSpec(id="taken", command="echo first")])
    before = snapshot(cli)
    deep = "[" * 10_000 + "]" * 10_000
    ten_mb = json.dumps({"command": "echo " + "x" * 10_000_000})
    good = [json.dumps({"id": f"bulk-{i}", "command": f"echo {i}"}) for i in range(300)]
    files: dict[str, bytes] = {
        "10 MB command": (ten_mb + "\n").encode(),
        "latin-1": b'{"command": "echo caf\xe9"}\n',
        "raw NUL": b'{"command": "echo a\x00b"}\n',
        "CESU-8 surrogate": b'{"command": "echo \xed\xa0\x80"}\n',
    }
    bad_lines = {
        "deep": '{"command": "x", "a": ' + deep + "}",
        "huge int": '{"command": "x", "priority": ' + "9" * 5000 + "}",
        "10 MB command": ten_mb,
        "NUL escape": '{"command": "a\\u0000b"}',
        "id taken": '{"id": "taken", "command": "x"}',
    }
    calls: list[tuple[str, Any, list[Any], bytes | None]] = [
        (label, text, ["enqueue", text], None)
        for label, text in {
            "deep value": '{"command": "x", "a": ' + deep + "}",
            "deep object": '{"a": ' * 10_000 + "1" + "}" * 10_000,
            "5000-digit int": '{"command": "x", "priority": ' + "9" * 5000 + "}",
            "400-digit timeout": '{"command": "x", "timeout": ' + "9" * 400 + "}",
            "NaN": '{"command": "x", "timeout": NaN}',
            "NUL": '{"command": "echo a\\u0000b"}',
            "lone surrogate": '{"command": "echo \\ud800"}',
            "64 KiB + 1": json.dumps({"command": "e" * (MAX_COMMAND + 1)}),
            "64 KiB + 1 in 2-byte chars": json.dumps(
                {"command": "é" * (MAX_COMMAND // 2) + "e"}, ensure_ascii=False
            ),
        }.items()
    ]
    calls.append(("10 MB stdin", ten_mb, ["enqueue", "-"], ten_mb.encode()))
    calls.append(("latin-1 argv", b"", [b"enqueue", b'{"command": "echo caf\xe9"}'], None))
    calls.append(("latin-1 -c", b"", [b"enqueue", b"-c", b"echo caf\xe9"], None))
    for label, data in files.items():
        path = tmp_path / f"{label}.ndjson"
        path.write_bytes(data)
        calls.append((f"file: {label}", data, ["enqueue", "--file", str(path)], None))
    for n, (label, line) in enumerate(bad_lines.items()):
        at = 100 + 30 * n  # somewhere in the middle
        data = _ndjson([*good[:at], line, *good[at:]]).encode()
        code = 4 if label == "id taken" else 2
        calls.append((f"bulk: {label}", code, ["enqueue", "-"], data))
    results = run_all(cli, calls)
    for result in results:
        codes = (result.given,) if result.label.startswith("bulk") else (2,)
        check_rejected_cleanly(result, codes=codes)
    assert snapshot(cli) == before  # not one of 300 good lines got in, nor anything else

    # the limit from below: exactly 64 KiB (one- and two-byte characters) is accepted
    exact = ["e" * MAX_COMMAND, "é" * (MAX_COMMAND // 2)]
    lines = _ndjson([json.dumps({"command": c}, ensure_ascii=False) for c in exact])
    created = cli("enqueue", "-", input=lines)
    assert created.returncode == 0, created.stderr
    printed = {j["id"]: j for j in map(json.loads, created.stdout.split("\n")[:-1])}
    assert sorted(j["command"] for j in printed.values()) == sorted(exact)
    assert {i: j for i, j in stored_jobs(cli).items() if i != "taken"} == printed
    print(f"\n{cli.url.split(':')[0]}: {len(results)} pathological inputs rejected cleanly")


# --- SQL injection --------------------------------------------------------------------------


def _seed(backend: Backend) -> None:
    """A dead job with a run, two pending ones (one in queue mail), a config setting."""
    backend.enqueue([models.JobSpec(id="d1", command="exit 3", max_retries=0)])
    (job,) = backend.claim(["w-1"], (), host="h", lease_ttl_s=30)
    backend.finish(job, models.Outcome(models.OutcomeKind.FAILED, exit_code=3), None)
    backend.enqueue(
        [
            models.JobSpec(id="p1", command="echo 100%_done\\ok"),
            models.JobSpec(id="p2", command="x'; DROP TABLE queuectl_jobs; --", queue="mail"),
        ]
    )
    backend.set_setting("max-retries", "5")


@pytest.mark.timeout(120)
def test_sql_injection_in_every_argument_changes_nothing(cli: Cli, backend: Backend) -> None:
    """Quotes, comments, LIKE wildcards and stacked statements as ids, queue names, state
    filters, schedule names, config keys and values: each is rejected (2/3) or matched
    literally (an empty result), and the database is exactly as before."""
    _seed(backend)
    before = snapshot(cli), backend.list_schedules(), backend.stats(lease_ttl_s=10)
    calls: list[tuple[str, Any, list[Any], bytes | None]] = []
    # each payload once as a job id and once as another argument, every command in turn
    by_id = [("show", (3,), "show {}"), ("cancel", (3,), "cancel {}"), ("logs", (3,), "logs {}")]
    others = [
        ("list --queue", (0,), "list --json --queue {}"),
        ("stats --queue", (0,), "stats --json --queue {}"),
        ("list --state", (2,), "list --state {}"),
        ("config set KEY", (2,), "config set {} 1"),
        ("config set VALUE", (2,), "config set max-retries {}"),
        ("config get", (2,), "config get {}"),
        ("schedule remove", (3,), "schedule remove {}"),
        ("schedule pause", (3,), "schedule pause {}"),
    ]
    for n, bad in enumerate(INJECTIONS):
        for label, codes, words in (by_id[n % len(by_id)], others[n % len(others)]):
            argv = [bad if word == "{}" else word for word in words.split()]
            calls.append((label, codes, argv, None))
    calls += [
        ("retry", (3,), ["retry", *INJECTIONS], None),
        ("dlq retry", (3,), ["dlq", "retry", *INJECTIONS], None),
        (
            "worker start --queue",
            (2,),
            ["worker", "start", "--burst", "--queue", INJECTIONS[0]],
            None,
        ),
        ("enqueue --queue", (2,), ["enqueue", "-c", "true", "--queue", INJECTIONS[1]], None),
        ("enqueue --id", (2,), ["enqueue", "-c", "true", "--id", INJECTIONS[0]], None),
    ]
    results = run_all(cli, calls)
    for result in results:
        if result.given == (0,):
            assert result.code == 0, result
            out = json.loads(result.stdout)
            assert out == [] or out["all"]["finished"] == 0, result  # matched nothing
        else:
            check_rejected_cleanly(result, codes=result.given)
    assert (snapshot(cli), backend.list_schedules(), backend.stats(lease_ttl_s=10)) == before

    # the same strings as a command are data: stored and shown byte for byte
    lines = _ndjson(
        [json.dumps({"id": f"inj-{n}", "command": c}) for n, c in enumerate(INJECTIONS)]
    )
    assert cli("enqueue", "-", input=lines).returncode == 0
    stored = stored_jobs(cli)
    assert {f"inj-{n}": c for n, c in enumerate(INJECTIONS)}.items() <= {
        i: j["command"] for i, j in stored.items()
    }.items()
    assert len(stored) == 3 + len(INJECTIONS)
    print(f"\n{cli.url.split(':')[0]}: {len(results)} injection calls, database unchanged")


def test_dashboard_filters_are_literal(backend: Backend) -> None:
    """The jobs page's text search, queue filter, state filter and job paths: wildcards match
    themselves, quotes end nothing, a NUL is refused or matches nothing; links keep the
    filters intact."""
    _seed(backend)
    before = snapshot_backend(backend)
    client = TestClient(create_app(backend), follow_redirects=False)

    def found(query: dict[str, str]) -> set[str] | int:
        response = client.get("/jobs", params=query)
        if response.status_code != 200:
            return response.status_code
        return set(re.findall(r'<td><a href="/jobs/([^"]+)">', response.text))

    assert found({}) == {"p1", "p2", "d1"}
    assert found({"q": "%"}) == {"p1"}  # the one command with a literal %
    assert found({"q": "_"}) == {"p1", "p2"}  # "100%_done", "queuectl_jobs"
    assert found({"q": "\\"}) == {"p1"}
    assert found({"q": "'"}) == {"p2"}
    assert found({"q": "--"}) == {"p2"}
    for bad in INJECTIONS:
        if bad not in ("%", "_", "\\"):
            assert found({"q": bad}) == ({"p2"} if bad == INJECTIONS[0] else set()), bad
        assert found({"queue": bad}) == set()
        assert found({"state": bad}) == 400
        assert client.get(f"/jobs/{bad}").status_code == 404
    for query in ({"q": "a\x00"}, {"queue": "\x00"}):
        assert found(query) in (set(), 400), query  # Postgres text cannot hold a NUL
    assert client.get("/jobs/a%00b").status_code in (400, 404)
    # a search for "%41" stays "%41" through the state tabs' links (not "A")
    page = client.get("/jobs", params={"q": "%41&state=dead"}).text
    assert 'href="/jobs?state=dead&queue=&q=%2541%26state%3Ddead"' in page
    assert snapshot_backend(backend) == before


def snapshot_backend(backend: Backend) -> tuple[object, ...]:
    jobs = backend.list_jobs(limit=10_000)
    return jobs, [backend.runs(j.id) for j in jobs], backend.get_settings()
