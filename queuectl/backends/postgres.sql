-- Queries of the PostgreSQL backend; sqlite.sql defines the same names.

-- name: jobs_by_ids
SELECT * FROM queuectl_jobs WHERE id = ANY(%(ids)s);

-- name: enqueue_snapshot
-- Enqueue resolves defaults in Python (common.job_rows) from one read: the transaction's
-- time and the settings (an aggregate without GROUP BY returns its one row even from an empty table).
SELECT now() AS now, coalesce(jsonb_object_agg(key, value), '{}') AS settings
  FROM queuectl_settings;

-- name: enqueue_copy
-- Column order = backends.base.JobRow; seq (the FIFO tie-break) follows the row order.
COPY queuectl_jobs (id, command, queue, priority, run_at, timeout_s, max_retries, expires_at)
FROM STDIN;

-- name: claim
-- SKIP LOCKED: many workers claim at once without waiting on each other's row locks, and a
-- row locked by one claimer is passed over by the others, and once committed it is
-- 'processing', which no claim matches.
-- The CTE is a fence: Postgres must not update more rows than the LIMIT picked.
-- postgres.py puts pick_any or pick_queues in place of the marker.
WITH picked AS MATERIALIZED (
  /* pick */
), numbered AS (
  SELECT id, row_number() OVER () AS n FROM picked
), claimed AS (
  UPDATE queuectl_jobs j
     SET state = 'processing', worker_id = (%(slots)s::text[])[numbered.n], host = %(host)s,
         attempts = j.attempts + 1, run_count = j.run_count + 1, lease_token = j.lease_token + 1,
         lease_expires_at = now() + make_interval(secs => %(lease_s)s),
         started_at = now(), finished_at = NULL, exit_code = NULL, updated_at = now(),
         proc_session = NULL,
         expires_at = NULL  -- a TTL bounds the wait for a first start, nothing after it
    FROM numbered
   WHERE j.id = numbered.id
  RETURNING j.*
)
-- No run row yet: it is written once, when the attempt ends (finish), or earlier by the
-- first heartbeat that carries output. Until then the job's row says who runs it since when.
SELECT * FROM claimed;

-- name: pick_any
-- Claim order, straight from the claimable-rows index (no sort): the cost of a claim does
-- not grow with the number of waiting or finished jobs.
SELECT id FROM queuectl_jobs
 WHERE state IN ('pending', 'failed') AND run_at <= now()
   AND (expires_at IS NULL OR expires_at > now())  -- expired: the DLQ sweep takes it
   AND queue NOT IN (SELECT name FROM queuectl_queues  -- paused or limited (the limited
                      WHERE paused OR concurrency IS NOT NULL  -- claim takes those)
                         OR rate_limit IS NOT NULL)
 ORDER BY priority DESC, run_at, seq
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED

-- name: pick_queues
-- One ordered range of the (queue, priority, run_at, seq) index per queue, merged: with
-- `queue = ANY(...)` Postgres would fetch and sort every waiting job of those queues.
SELECT c.id FROM unnest(%(queues)s::text[]) AS q(name)
 CROSS JOIN LATERAL (
   SELECT id, priority, run_at, seq FROM queuectl_jobs
    WHERE queue = q.name AND state IN ('pending', 'failed') AND run_at <= now()
      AND (expires_at IS NULL OR expires_at > now())
    ORDER BY priority DESC, run_at, seq
    LIMIT %(limit)s
      FOR UPDATE SKIP LOCKED
 ) AS c
 WHERE NOT EXISTS (SELECT 1 FROM queuectl_queues f  -- paused or limited: not by this claim
                    WHERE f.name = q.name
                      AND (f.paused OR f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL))
 ORDER BY c.priority DESC, c.run_at, c.seq
 LIMIT %(limit)s

-- name: active_queues
-- The queues with claimable jobs, one index probe each (a skip scan of the per-queue claim
-- index): a worker serving every queue claims per queue through these once some queue is
-- paused or limited, instead of walking past that queue's backlog in the any-queue order.
WITH RECURSIVE qs(name) AS (
  (SELECT queue FROM queuectl_jobs WHERE state IN ('pending', 'failed') ORDER BY queue LIMIT 1)
  UNION ALL
  SELECT (SELECT j.queue FROM queuectl_jobs j
           WHERE j.state IN ('pending', 'failed') AND j.queue > qs.name
           ORDER BY j.queue LIMIT 1)
    FROM qs WHERE qs.name IS NOT NULL
)
SELECT name FROM qs WHERE name IS NOT NULL

-- name: lock_limited
-- The limited claim's first statement: claimers of a limited queue take turns on its row, so
-- that the count the next statement reads (a fresh snapshot) includes every claim before.
SELECT name FROM queuectl_queues
 WHERE name = ANY(%(queues)s) AND NOT paused
   AND (concurrency IS NOT NULL OR rate_limit IS NOT NULL)
 ORDER BY name
   FOR UPDATE;

-- name: pick_limited
-- Per limited queue, as many as its limits allow now: concurrency minus its running jobs,
-- rate minus the attempts started within its period (statement_timestamp(), not now(): the
-- transaction may have waited for the lock above). The period is looked back over with a
-- guard of a tenth of it (at most 250 ms): a command starts some milliseconds after its claim, and
-- by more or less from job to job, so two bursts claimed exactly a period apart could
-- otherwise start inside one window as the commands see it (DECISIONS §23).
SELECT c.id FROM (
  SELECT f.name,
         LEAST(coalesce(f.concurrency - (SELECT count(*) FROM queuectl_jobs r
                                          WHERE r.queue = f.name AND r.state = 'processing'),
                        2147483647),
               coalesce(f.rate_limit - (SELECT count(*) FROM queuectl_queue_starts t
                                         WHERE t.queue = f.name
                                           AND t.started_at > statement_timestamp()
                                               - make_interval(secs => f.rate_period_s
                                                   + least(0.25, 0.1 * f.rate_period_s))),
                        2147483647)) AS allowed
    FROM queuectl_queues f
   WHERE f.name = ANY(%(queues)s) AND NOT f.paused
     AND (f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL)
 ) AS q
 CROSS JOIN LATERAL (
   SELECT id, priority, run_at, seq FROM queuectl_jobs
    WHERE queue = q.name AND state IN ('pending', 'failed') AND run_at <= now()
      AND (expires_at IS NULL OR expires_at > now())
    ORDER BY priority DESC, run_at, seq
    LIMIT greatest(q.allowed, 0)
      FOR UPDATE SKIP LOCKED
 ) AS c
 ORDER BY c.priority DESC, c.run_at, c.seq
 LIMIT %(limit)s

-- name: log_starts
-- A rate-limited queue's starts: logged, and the log trimmed to its period.
WITH gone AS (
  DELETE FROM queuectl_queue_starts t USING queuectl_queues f
   WHERE t.queue = f.name AND f.name = ANY(%(queues)s)
     AND t.started_at <= statement_timestamp()
                         - make_interval(secs => f.rate_period_s
                                                 + least(0.25, 0.1 * f.rate_period_s))
)
INSERT INTO queuectl_queue_starts (queue, started_at)
SELECT u.q, statement_timestamp()
  FROM unnest(%(started)s::text[]) AS u(q)
  JOIN queuectl_queues f ON f.name = u.q AND f.rate_limit IS NOT NULL;

-- name: finish
-- Many finished jobs in one statement (the worker batches them every few ms): unnest() turns
-- the column arrays into rows. The lease token guard: a worker whose lease was recovered (and
-- the job maybe claimed again) matches no row here, so its late result changes nothing.
WITH u AS (
  SELECT * FROM unnest(%(ids)s::text[], %(tokens)s::bigint[], %(states)s::text[],
                       %(retry_s)s::float8[], %(exit_codes)s::int[], %(errors)s::text[],
                       %(outcomes)s::text[], %(outputs)s::text[], %(output_bytes)s::bigint[],
                       %(due_ats)s::timestamptz[])
         AS u(id, token, state, retry_s, exit_code, error, outcome, output, output_bytes,
              due_at)
), done AS (
  -- u.state is the attempt's fate as retry.next_state decided it (Python, the one place).
  -- Only the row knows whether a cancel was asked while the job ran, so that override stays
  -- here: a cancel wins over every end but success. An interrupted attempt is handed back,
  -- not used up (the reasons are in sqlite.sql's finish).
  UPDATE queuectl_jobs j
     SET state = CASE WHEN j.cancel_requested AND u.state <> 'completed' THEN 'cancelled'
                      ELSE u.state END,
         run_at = CASE WHEN j.cancel_requested AND u.state <> 'completed' THEN j.run_at
                       WHEN u.state IN ('failed', 'pending')
                       THEN now() + make_interval(secs => u.retry_s) ELSE j.run_at END,
         attempts = CASE WHEN u.outcome = 'interrupted' THEN j.attempts - 1
                         ELSE j.attempts END,
         finished_at = now(), updated_at = now(), exit_code = u.exit_code,
         last_error = u.error, lease_expires_at = NULL, cancel_requested = false
    FROM u
   WHERE j.id = u.id AND j.lease_token = u.token AND j.state = 'processing'
  RETURNING j.id, j.run_count, j.finished_at, j.worker_id, j.started_at, j.queue, j.state,
            j.has_dependents, j.watched
), run AS (
  -- The attempt's one run row (a heartbeat with output may have written it already: then
  -- it is completed here; its output stays when the result carries none).
  INSERT INTO queuectl_runs AS r (job_id, attempt, worker_id, started_at, queue, due_at,
                                  finished_at, exit_code, outcome, error, output, output_bytes)
  SELECT done.id, done.run_count, done.worker_id, done.started_at, done.queue, u.due_at,
         done.finished_at, u.exit_code, u.outcome, u.error, coalesce(u.output, ''),
         u.output_bytes
    FROM done JOIN u ON u.id = done.id
  ON CONFLICT (job_id, attempt) DO UPDATE
     SET finished_at = EXCLUDED.finished_at, exit_code = EXCLUDED.exit_code,
         outcome = EXCLUDED.outcome, error = EXCLUDED.error,
         output = CASE WHEN EXCLUDED.output_bytes > 0 THEN EXCLUDED.output ELSE r.output END,
         output_bytes = GREATEST(r.output_bytes, EXCLUDED.output_bytes)
)
SELECT id, queue, state, has_dependents, watched FROM done;

-- name: beat_workers
INSERT INTO queuectl_workers (id, host, pid, queues, connections, jobs_done, rss_bytes)
SELECT u.id, %(host)s, %(pid)s, %(queues)s::text[], %(connections)s, u.done, %(rss_bytes)s
  FROM unnest(%(ids)s::text[], %(done)s::int[]) AS u(id, done)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), connections = EXCLUDED.connections,
                               jobs_done = EXCLUDED.jobs_done, rss_bytes = EXCLUDED.rss_bytes
RETURNING id, stop_requested;

-- name: beat_jobs
UPDATE queuectl_jobs j
   SET lease_expires_at = now() + make_interval(secs => %(lease_s)s),
       proc_session = coalesce(u.session, j.proc_session)
  FROM unnest(%(ids)s::text[], %(tokens)s::bigint[], %(sessions)s::text[]) AS u(id, token, session)
 WHERE j.id = u.id AND j.lease_token = u.token AND j.state = 'processing'
RETURNING j.id, j.cancel_requested;

-- name: beat_output
-- A running attempt's output so far: the first such beat writes its run row, from the job's.
INSERT INTO queuectl_runs AS r (job_id, attempt, worker_id, started_at, queue, due_at, output,
                                output_bytes)
SELECT j.id, j.run_count, j.worker_id, j.started_at, j.queue, j.run_at, u.output, u.bytes
  FROM unnest(%(ids)s::text[], %(attempts)s::int[], %(outputs)s::text[], %(bytes)s::bigint[])
       AS u(id, attempt, output, bytes)
  JOIN queuectl_jobs j ON j.id = u.id AND j.run_count = u.attempt AND j.state = 'processing'
ON CONFLICT (job_id, attempt) DO UPDATE
   SET output = EXCLUDED.output, output_bytes = EXCLUDED.output_bytes
 WHERE r.finished_at IS NULL;

-- name: expired_leases
-- A plain read: the sweeper judges each candidate outside any transaction (it may scan
-- /proc), then still_expired locks and re-checks the chosen ones.
SELECT * FROM queuectl_jobs
 WHERE state = 'processing' AND lease_expires_at < now()
 ORDER BY lease_expires_at
 LIMIT 100;

-- name: still_expired
-- The recovery's write: of the chosen jobs, those still processing and still expired, locked
-- until it commits (a heartbeat renewing one waits, then finds it recovered). The caller
-- compares lease tokens: a job claimed again since is not this lease's to recover.
SELECT id, lease_token FROM queuectl_jobs
 WHERE id = ANY(%(ids)s) AND state = 'processing' AND lease_expires_at < now()
   FOR UPDATE;

-- name: forget_dead_workers
DELETE FROM queuectl_workers
 WHERE heartbeat_at < now() - make_interval(secs => %(lease_s)s);

-- name: deregister_workers
DELETE FROM queuectl_workers WHERE id = ANY(%(ids)s);

-- name: list_workers
-- Current jobs come from the jobs table (exact at any moment), not from the last heartbeat.
SELECT w.*, extract(epoch FROM now() - w.heartbeat_at) AS age_s,
       ARRAY(SELECT j.id FROM queuectl_jobs j
              WHERE j.state = 'processing' AND j.worker_id = w.id
              ORDER BY j.started_at) AS current_jobs
  FROM queuectl_workers w
 WHERE w.heartbeat_at >= now() - make_interval(secs => %(lease_s)s)
 ORDER BY w.started_at, w.id;

-- name: request_stop
-- Every live worker, or only those named; a process drains when any of its slots is asked.
UPDATE queuectl_workers SET stop_requested = true
 WHERE heartbeat_at >= now() - make_interval(secs => %(lease_s)s)
   AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s))
RETURNING id;

-- name: mark_stop
-- Whole-fleet `worker stop` also leaves a dated mark (a row of the named-leases table), so
-- that a worker whose process started before it but registers after it stops as well.
INSERT INTO queuectl_leader (name, holder, acquired_at, expires_at)
VALUES ('worker-stop', 'worker stop', now(), now())
ON CONFLICT (name) DO UPDATE SET acquired_at = now(), expires_at = now();

-- name: stop_marked
SELECT 1 AS marked FROM queuectl_leader
 WHERE name = 'worker-stop' AND acquired_at >= now() - make_interval(secs => %(within_s)s);

-- name: sweep_turn
-- A fleet's workers take turns at the recovery sweep: one sweeps when nobody has within
-- `every_s` (a short write on one row; whoever finds the turn taken reads nothing more, and
-- two takers serialise on the row, the second seeing it taken). The settings' version rides
-- along, so that a worker re-reads its policy only when a setting changed.
WITH seed AS (
  INSERT INTO queuectl_leader (name, holder, acquired_at, expires_at)
  VALUES ('recovery-sweep', %(holder)s, now(), now() + make_interval(secs => %(every_s)s))
  ON CONFLICT (name) DO NOTHING
  RETURNING 1
), turn AS (
  UPDATE queuectl_leader
     SET holder = %(holder)s, acquired_at = now(),
         expires_at = now() + make_interval(secs => %(every_s)s)
   WHERE name = 'recovery-sweep' AND expires_at <= now()
  RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM seed) OR EXISTS (SELECT 1 FROM turn) AS mine,
       (SELECT count(*) || '@' || coalesce(max(updated_at)::text, '')
          FROM queuectl_settings)
       || (SELECT ' ' || count(*) || '@' || coalesce(max(updated_at)::text, '')
             FROM queuectl_queues) AS settings_version;

-- name: get_job
SELECT * FROM queuectl_jobs WHERE id = %(id)s;

-- name: lock_jobs
SELECT * FROM queuectl_jobs WHERE id = ANY(%(ids)s) FOR UPDATE;

-- name: list_jobs
-- Newest first; `before` is a keyset cursor (a job id), so page 1,000 costs what page 1 does.
SELECT * FROM queuectl_jobs
 WHERE (%(state)s::text IS NULL OR state = %(state)s)
   AND (%(queue)s::text IS NULL OR queue = %(queue)s)
   AND (%(search)s::text IS NULL OR id = %(search)s OR strpos(command, %(search)s) > 0)
   AND (%(before)s::text IS NULL
        OR seq < (SELECT seq FROM queuectl_jobs WHERE id = %(before)s))
 ORDER BY seq DESC
 LIMIT %(limit)s;

-- name: list_jobs_after
-- The page above a cursor (paging back towards the newest): the `limit` jobs just newer
-- than `after`, oldest first (the caller reverses them), so jobs added meanwhile are not
-- skipped and the page joins the one it came from.
SELECT * FROM queuectl_jobs
 WHERE (%(state)s::text IS NULL OR state = %(state)s)
   AND (%(queue)s::text IS NULL OR queue = %(queue)s)
   AND (%(search)s::text IS NULL OR id = %(search)s OR strpos(command, %(search)s) > 0)
   AND seq > (SELECT seq FROM queuectl_jobs WHERE id = %(after)s)
 ORDER BY seq
 LIMIT %(limit)s;

-- name: runs
-- A running attempt without its run row yet (written when it ends, or by a heartbeat with
-- output) is read from the job's row.
SELECT job_id, attempt, worker_id, started_at, finished_at, exit_code, outcome, error,
       output, output_bytes
  FROM queuectl_runs WHERE job_id = %(id)s
UNION ALL
SELECT j.id, j.run_count, j.worker_id, j.started_at, NULL, NULL, NULL, NULL, '', 0
  FROM queuectl_jobs j
 WHERE j.id = %(id)s AND j.state = 'processing'
   AND NOT EXISTS (SELECT 1 FROM queuectl_runs r
                    WHERE r.job_id = j.id AND r.attempt = j.run_count)
 ORDER BY attempt;

-- name: cancel_now
UPDATE queuectl_jobs
   SET state = 'cancelled', updated_at = now(), finished_at = now(), last_error = 'cancelled'
 WHERE id = ANY(%(ids)s)
RETURNING *;

-- name: cancel_running
UPDATE queuectl_jobs SET cancel_requested = true, updated_at = now()
 WHERE id = %(id)s
RETURNING *;

-- name: retry
-- dead and cancelled jobs start over with a fresh retry budget; a failed job keeps its
-- attempts and only skips the rest of its backoff.
UPDATE queuectl_jobs
   SET state = 'pending', run_at = now(), updated_at = now(),
       attempts = CASE WHEN state = 'failed' THEN attempts ELSE 0 END,
       expires_at = NULL  -- a retry is a fresh request: an old TTL would kill it at once
 WHERE id = ANY(%(ids)s)
RETURNING *;

-- name: reblock
-- A retried dependent waits again for its dependencies (any not completed).
UPDATE queuectl_jobs j SET state = 'blocked'
 WHERE j.id = ANY(%(ids)s) AND j.state = 'pending'
   AND EXISTS (SELECT 1 FROM queuectl_deps d JOIN queuectl_jobs p ON p.id = d.depends_on
                WHERE d.job_id = j.id AND p.state <> 'completed')
RETURNING j.id;

-- name: retry_all_dead
UPDATE queuectl_jobs
   SET state = 'pending', run_at = now(), updated_at = now(), attempts = 0, expires_at = NULL
 WHERE state = 'dead'
   -- a unique key comes back once: not while an unfinished job holds it, and of several dead
   -- jobs with one key only the newest (DESIGN §8: one unfinished holder per key)
   AND (unique_key IS NULL
        OR (NOT EXISTS (SELECT 1 FROM queuectl_jobs o
                         WHERE o.unique_key = queuectl_jobs.unique_key
                           AND o.state IN ('blocked', 'pending', 'processing', 'failed'))
            AND seq = (SELECT max(d.seq) FROM queuectl_jobs d
                        WHERE d.unique_key = queuectl_jobs.unique_key AND d.state = 'dead')));

-- name: purge_dead
-- Every dead job, or those of one queue, or those dead longer than older_s.
DELETE FROM queuectl_jobs
 WHERE state = 'dead' AND (%(queue)s::text IS NULL OR queue = %(queue)s)
   AND (%(older_s)s::float8 IS NULL
        OR finished_at < now() - make_interval(secs => %(older_s)s::float8));

-- name: count_dead
SELECT count(*) AS n FROM queuectl_jobs
 WHERE state = 'dead' AND (%(queue)s::text IS NULL OR queue = %(queue)s)
   AND (%(older_s)s::float8 IS NULL
        OR finished_at < now() - make_interval(secs => %(older_s)s::float8));

-- name: has_work
SELECT EXISTS (
  SELECT 1 FROM queuectl_jobs
   WHERE (state = 'failed' OR (state = 'pending' AND run_at <= now()))
     AND (expires_at IS NULL OR expires_at > now())
     AND (cardinality(%(queues)s::text[]) = 0 OR queue = ANY(%(queues)s))
     AND queue NOT IN (SELECT name FROM queuectl_queues WHERE paused)
) AS has_work;

-- name: work_outlook
-- what a burst worker waits for: how many jobs, and when the first falls due
SELECT count(*) AS n, min(run_at) AS next_at FROM queuectl_jobs
 WHERE (state = 'failed' OR (state = 'pending' AND run_at <= now()))
   AND (expires_at IS NULL OR expires_at > now())
   AND (cardinality(%(queues)s::text[]) = 0 OR queue = ANY(%(queues)s))
   AND queue NOT IN (SELECT name FROM queuectl_queues WHERE paused);

-- name: get_settings
SELECT key, value FROM queuectl_settings ORDER BY key;

-- name: set_setting
INSERT INTO queuectl_settings (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();

-- name: count_by_queue_state
SELECT queue, state, count(*) AS n FROM queuectl_jobs GROUP BY queue, state;

-- name: count_workers
-- lost: silent past a lease but not deregistered (killed, host gone); rows are forgotten a
-- few leases later, so this counts recent losses
SELECT count(*) FILTER (WHERE w.heartbeat_at >= now() - make_interval(secs => %(lease_s)s))
         AS alive,
       count(*) FILTER (WHERE w.heartbeat_at >= now() - make_interval(secs => %(lease_s)s)
                          AND EXISTS (SELECT 1 FROM queuectl_jobs j
                                       WHERE j.state = 'processing' AND j.worker_id = w.id))
         AS busy,
       count(*) FILTER (WHERE w.heartbeat_at < now() - make_interval(secs => %(lease_s)s))
         AS lost
  FROM queuectl_workers w;

-- name: run_samples
-- Finished attempts in a time window: the raw material of `queuectl stats`.
SELECT queue, outcome,
       extract(epoch FROM finished_at - started_at)::float8 AS run_s,
       greatest(extract(epoch FROM started_at - due_at), 0)::float8 AS wait_s,
       extract(epoch FROM now() - finished_at)::float8 AS ago_s
  FROM queuectl_runs
 WHERE finished_at >= now() - make_interval(secs => %(since_s)s)
   AND (%(queue)s::text IS NULL OR queue = %(queue)s);

-- name: run_history
-- Finished attempts per slice of width_s seconds (the slice's start, in epoch seconds).
SELECT (floor(extract(epoch FROM finished_at) / %(width_s)s) * %(width_s)s)::bigint AS slot,
       count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded, count(*) AS finished
  FROM queuectl_runs
 WHERE finished_at >= now() - make_interval(secs => %(since_s)s)
 GROUP BY 1 ORDER BY 1;

-- name: acquire_leader
-- Take the lease if it is free or expired, or renew it if we hold it; no row back means
-- another holder's lease is still valid.
INSERT INTO queuectl_leader (name, holder, expires_at)
VALUES (%(name)s, %(holder)s, now() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (name) DO UPDATE
   SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
       acquired_at = CASE WHEN queuectl_leader.holder = EXCLUDED.holder
                          THEN queuectl_leader.acquired_at ELSE now() END
 WHERE queuectl_leader.holder = EXCLUDED.holder OR queuectl_leader.expires_at < now()
RETURNING holder;

-- name: release_leader
DELETE FROM queuectl_leader WHERE name = %(name)s AND holder = %(holder)s;

-- name: get_leader
SELECT holder, extract(epoch FROM expires_at - now())::float8 AS ttl_left_s
  FROM queuectl_leader WHERE name = %(name)s AND expires_at >= now();

-- name: add_schedule
-- A taken name inserts nothing and returns no row: DuplicateSchedule (store.py).
INSERT INTO queuectl_schedules (name, cron, command, queue, priority, timeout_s, max_retries,
                                tz)
VALUES (%(name)s, %(cron)s, %(command)s, %(queue)s, %(priority)s, %(timeout_s)s,
        %(max_retries)s, %(tz)s)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: list_schedules
SELECT * FROM queuectl_schedules ORDER BY name;

-- name: remove_schedule
DELETE FROM queuectl_schedules WHERE name = %(name)s RETURNING name;

-- name: pause_schedule
UPDATE queuectl_schedules
   SET paused = %(paused)s,
       last_slot = CASE WHEN %(skip_to)s::timestamptz IS NULL THEN last_slot
                        ELSE GREATEST(COALESCE(last_slot, %(skip_to)s), %(skip_to)s) END
 WHERE name = %(name)s
RETURNING *;

-- name: fire_schedule
-- The job id carries the slot: a second orchestrator (or a retried sweep) firing the same
-- slot hits ON CONFLICT and inserts nothing, so each slot fires exactly once. Defaults are
-- resolved in Python (common.job_rows), as for every enqueue.
INSERT INTO queuectl_jobs (id, command, queue, priority, run_at, timeout_s, max_retries)
VALUES (%(id)s, %(command)s, %(queue)s, %(priority)s, now(), %(timeout_s)s,
        %(max_retries)s)
ON CONFLICT (id) DO NOTHING;

-- name: schedule_to_fire
-- FOR UPDATE: a second orchestrator firing the same schedule waits here, then re-reads the
-- row and finds the slot taken.
SELECT * FROM queuectl_schedules
 WHERE name = %(name)s AND NOT paused AND (last_slot IS NULL OR last_slot < %(slot)s)
   FOR UPDATE;

-- name: mark_schedule
UPDATE queuectl_schedules SET last_slot = %(slot)s, fired = fired + %(fired)s
 WHERE name = %(name)s;

-- name: expire_jobs
-- A job whose expires_at passed before it ran is dead-lettered, not run late. Its first
-- claim clears expires_at: a job that ran (and now waits out a backoff, or was handed back)
-- is past a TTL's reach, and its retries are the retry policy's to spend.
UPDATE queuectl_jobs
   SET state = 'dead', last_error = 'expired before it ran', updated_at = now(),
       finished_at = now()
 WHERE state IN ('pending', 'failed') AND expires_at IS NOT NULL AND expires_at < now()
RETURNING id, queue, state, has_dependents, watched;

-- name: prune_finished
-- In batches (the caller loops): one huge DELETE would hold its locks, and its cascade into
-- the runs table, for as long as it takes.
DELETE FROM queuectl_jobs
 WHERE id IN (SELECT id FROM queuectl_jobs
               WHERE state = %(state)s
                 AND finished_at < now() - make_interval(secs => %(age_s)s)
               LIMIT %(batch)s);

-- name: notify_due
-- Delayed and retrying jobs that fell due since the last sweep wake the workers.
SELECT pg_notify('queuectl_wake', queue || ' ' || n)
  FROM (SELECT queue, count(*) AS n FROM queuectl_jobs
         WHERE state IN ('pending', 'failed')
           AND run_at > now() - make_interval(secs => %(window_s)s) AND run_at <= now()
         GROUP BY queue) due;

-- name: oldest_due
SELECT queue, extract(epoch FROM now() - min(run_at))::float8 AS age_s
  FROM queuectl_jobs
 WHERE state IN ('pending', 'failed') AND run_at <= now()
 GROUP BY queue;

-- name: notify_queues
-- Wake idle workers at once (delivered when the enqueueing transaction commits).
-- The payload is 'QUEUE COUNT' (a queue name has no space): a worker weighs its wake-up by
-- how many jobs there are, so that one job does not send every idle worker to claim it.
SELECT pg_notify('queuectl_wake', q || ' ' || n)
  FROM unnest(%(queues)s::text[], %(counts)s::int[]) AS u(q, n);

-- name: notify_control
-- A worker id: that worker heartbeats at once (a cancel); 'stop': every worker drains.
SELECT pg_notify('queuectl_control', %(payload)s);

-- name: mark_dependencies
-- An enqueue with `after`: the dependencies' rows are flagged (and so locked until commit),
-- which orders this enqueue and each dependency's finish: whichever comes second sees the
-- other (a finish waiting here reads has_dependents from the row's new version).
UPDATE queuectl_jobs SET has_dependents = true
 WHERE id = ANY(%(ids)s)
RETURNING id, state;

-- name: unique_lock
-- Enqueues of one unique key take turns (until their transactions end), so the look-up that
-- follows in a fresh snapshot sees a job the previous one inserted.
SELECT pg_advisory_xact_lock(hashtextextended('queuectl-unique:' || %(key)s, 0));

-- name: find_unique
SELECT * FROM queuectl_jobs
 WHERE unique_key = %(key)s
   AND (state IN ('blocked', 'pending', 'processing', 'failed')
        OR (%(window_s)s::float8 IS NOT NULL
            AND finished_at > now() - make_interval(secs => %(window_s)s)))
 ORDER BY seq DESC
 LIMIT 1;

-- name: set_flow
-- What an enqueue with `after` or a unique key sets beyond the bulk insert's columns.
UPDATE queuectl_jobs
   SET state = %(state)s, last_error = %(error)s, unique_key = %(key)s,
       has_dependents = %(has_dependents)s,
       finished_at = CASE WHEN %(state)s = 'cancelled' THEN now() END
 WHERE id = %(id)s;

-- name: add_dependency
INSERT INTO queuectl_deps (job_id, depends_on) VALUES (%(id)s, %(on)s)
ON CONFLICT DO NOTHING;

-- name: unblock_dependents
-- The blocked dependents of jobs that just completed, whose every dependency is completed
-- now. Run after those completions committed (or in their transaction), so the last of
-- several dependencies to complete always finds the others completed.
UPDATE queuectl_jobs j
   SET state = 'pending', run_at = GREATEST(j.run_at, now()), updated_at = now()
 WHERE j.state = 'blocked'
   AND j.id IN (SELECT job_id FROM queuectl_deps WHERE depends_on = ANY(%(ids)s))
   AND NOT EXISTS (SELECT 1 FROM queuectl_deps d JOIN queuectl_jobs p ON p.id = d.depends_on
                    WHERE d.job_id = j.id AND p.state <> 'completed')
RETURNING j.id, j.queue;

-- name: cancel_dependents
-- One level of a cancellation: the blocked dependents of jobs that ended dead or cancelled
-- (ids and states side by side), naming the first such dependency.
UPDATE queuectl_jobs j
   SET state = 'cancelled', updated_at = now(), finished_at = now(),
       last_error = 'dependency ' || x.dep || ' ' || x.dep_state
  FROM (SELECT DISTINCT ON (d.job_id) d.job_id, d.depends_on AS dep, u.state AS dep_state
          FROM queuectl_deps d
          JOIN unnest(%(ids)s::text[], %(states)s::text[]) AS u(id, state) ON u.id = d.depends_on
         ORDER BY d.job_id, d.depends_on COLLATE "C") AS x
 WHERE j.id = x.job_id AND j.state = 'blocked'
RETURNING j.id, j.queue, j.state, j.has_dependents, j.watched;

-- name: blocked_settled
-- The sweep behind the prompt paths (a worker killed between a finish and its follow-up, a
-- dependency purged): blocked jobs whose dependencies are all completed (or gone), and
-- blocked jobs with a dependency that ended dead or cancelled after the job was last
-- changed (a cascade missed). A dependent retried after its dependency died was blocked
-- again on purpose: it waits for that dependency to be retried, and is left alone here.
SELECT j.id,
       (SELECT p.id || ' ' || p.state FROM queuectl_deps d
          JOIN queuectl_jobs p ON p.id = d.depends_on
         WHERE d.job_id = j.id AND p.state IN ('dead', 'cancelled')
           AND p.finished_at >= j.updated_at
         ORDER BY p.id COLLATE "C" LIMIT 1) AS ended
  FROM queuectl_jobs j
 WHERE j.state = 'blocked'
   AND NOT EXISTS (SELECT 1 FROM queuectl_deps d JOIN queuectl_jobs p ON p.id = d.depends_on
                    WHERE d.job_id = j.id
                      AND (p.state NOT IN ('completed', 'dead', 'cancelled')
                           OR (p.state <> 'completed' AND p.finished_at < j.updated_at)))
 LIMIT 1000;

-- name: unblock_ids
UPDATE queuectl_jobs
   SET state = 'pending', run_at = GREATEST(run_at, now()), updated_at = now()
 WHERE id = ANY(%(ids)s) AND state = 'blocked'
RETURNING id, queue;

-- name: cancel_blocked
UPDATE queuectl_jobs
   SET state = 'cancelled', updated_at = now(), finished_at = now(), last_error = %(error)s
 WHERE id = %(id)s AND state = 'blocked'
RETURNING id, queue, state, has_dependents, watched;

-- name: dependencies
-- A job's dependencies (`after`) and dependents, with their states, for `show`.
SELECT 'after' AS side, p.id, p.state FROM queuectl_deps d
  JOIN queuectl_jobs p ON p.id = d.depends_on WHERE d.job_id = %(id)s
UNION ALL
SELECT 'dependent', c.id, c.state FROM queuectl_deps d
  JOIN queuectl_jobs c ON c.id = d.job_id WHERE d.depends_on = %(id)s
ORDER BY 1, 2;

-- name: mark_watched
UPDATE queuectl_jobs SET watched = true
 WHERE id = ANY(%(ids)s) AND state NOT IN ('completed', 'dead', 'cancelled') AND NOT watched;

-- name: notify_done
SELECT pg_notify('queuectl_done', %(payload)s);

-- name: list_queues
SELECT * FROM queuectl_queues ORDER BY name;

-- name: upsert_queue
-- A queue's settings; the flags say which to change (the rest keep their values).
INSERT INTO queuectl_queues AS f (name, paused, concurrency, rate_limit, rate_period_s)
VALUES (%(name)s, coalesce(%(paused)s, false), %(concurrency)s, %(rate_limit)s,
        %(rate_period_s)s)
ON CONFLICT (name) DO UPDATE
   SET paused = coalesce(%(paused)s, f.paused),
       concurrency = CASE WHEN %(set_concurrency)s THEN EXCLUDED.concurrency
                          ELSE f.concurrency END,
       rate_limit = CASE WHEN %(set_rate)s THEN EXCLUDED.rate_limit ELSE f.rate_limit END,
       rate_period_s = CASE WHEN %(set_rate)s THEN EXCLUDED.rate_period_s
                            ELSE f.rate_period_s END,
       updated_at = now()
RETURNING *;

-- name: drop_idle_queue
-- A queue back to no settings at all needs no row.
DELETE FROM queuectl_queues
 WHERE name = %(name)s AND NOT paused AND concurrency IS NULL AND rate_limit IS NULL;

-- name: clear_starts
DELETE FROM queuectl_queue_starts WHERE queue = %(name)s;

-- name: running_by_queue
SELECT queue, count(*) AS n FROM queuectl_jobs WHERE state = 'processing' GROUP BY queue;
