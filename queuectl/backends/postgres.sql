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
 ORDER BY c.priority DESC, c.run_at, c.seq
 LIMIT %(limit)s

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
  RETURNING j.id, j.run_count, j.finished_at, j.worker_id, j.started_at, j.queue
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
SELECT id FROM done;

-- name: beat_workers
INSERT INTO queuectl_workers (id, host, pid, queues, connections)
SELECT u.id, %(host)s, %(pid)s, %(queues)s::text[], %(connections)s
  FROM unnest(%(ids)s::text[]) AS u(id)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), connections = EXCLUDED.connections
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
          FROM queuectl_settings) AS settings_version;

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
 WHERE id = %(id)s
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

-- name: retry_all_dead
UPDATE queuectl_jobs
   SET state = 'pending', run_at = now(), updated_at = now(), attempts = 0, expires_at = NULL
 WHERE state = 'dead';

-- name: purge_dead
DELETE FROM queuectl_jobs WHERE state = 'dead';

-- name: has_work
SELECT EXISTS (
  SELECT 1 FROM queuectl_jobs
   WHERE (state = 'failed' OR (state = 'pending' AND run_at <= now()))
     AND (expires_at IS NULL OR expires_at > now())
     AND (cardinality(%(queues)s::text[]) = 0 OR queue = ANY(%(queues)s))
) AS has_work;

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
INSERT INTO queuectl_schedules (name, cron, command, queue, priority, timeout_s, max_retries)
VALUES (%(name)s, %(cron)s, %(command)s, %(queue)s, %(priority)s, %(timeout_s)s,
        %(max_retries)s)
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
 WHERE state IN ('pending', 'failed') AND expires_at IS NOT NULL AND expires_at < now();

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
