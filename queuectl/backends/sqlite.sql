-- Queries of the SQLite backend; postgres.sql defines the same names. Every write runs
-- inside BEGIN IMMEDIATE (sqlite.py), which takes the database's one write lock up front.

-- name: enqueue_values
-- Every enqueue repeats the VALUES row once per job (~1000 a statement): a multi-row INSERT
-- keeps the table's and indexes' cursors open across its rows, twice as fast as executemany.
INSERT INTO queuectl_jobs (id, command, queue, priority, run_at, timeout_s, max_retries,
                           created_at, updated_at, expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: existing_ids
SELECT id FROM queuectl_jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: jobs_by_ids
SELECT * FROM queuectl_jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: lock_jobs
-- The write lock (BEGIN IMMEDIATE) already keeps every row as read until the commit.
SELECT * FROM queuectl_jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: pick_any
-- Claim order, read from the claimable-rows index: a claim costs the same however many jobs
-- wait or have finished. INDEXED BY because, without ANALYZE statistics, the planner may
-- prefer the (state, seq) index and sort every pending row on each claim.
SELECT id, priority, run_at, seq FROM queuectl_jobs INDEXED BY queuectl_jobs_claim
 WHERE state IN ('pending', 'failed') AND run_at <= :now
   AND (expires_at IS NULL OR expires_at > :now)  -- expired: the DLQ sweep takes it
   AND queue NOT IN (SELECT name FROM queuectl_queues  -- paused or limited (the limited
                      WHERE paused OR concurrency IS NOT NULL  -- claim takes those)
                         OR rate_limit IS NOT NULL)
 ORDER BY priority DESC, run_at, seq
 LIMIT :limit

-- name: pick_queue
-- The same for one queue (sqlite.py unions one of these per queue a worker serves).
SELECT id, priority, run_at, seq FROM queuectl_jobs INDEXED BY queuectl_jobs_claim_queue
 WHERE queue = :queue AND state IN ('pending', 'failed') AND run_at <= :now
   AND (expires_at IS NULL OR expires_at > :now)
   AND NOT EXISTS (SELECT 1 FROM queuectl_queues f  -- paused or limited: not by this claim
                    WHERE f.name = :queue
                      AND (f.paused OR f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL))
 ORDER BY priority DESC, run_at, seq
 LIMIT :limit

-- name: active_queues
-- The queues with claimable jobs, one index probe each (see postgres.sql).
WITH RECURSIVE qs(name) AS (
  SELECT (SELECT queue FROM queuectl_jobs INDEXED BY queuectl_jobs_claim_queue
           WHERE state IN ('pending', 'failed') ORDER BY queue LIMIT 1)
  UNION ALL
  SELECT (SELECT j.queue FROM queuectl_jobs j INDEXED BY queuectl_jobs_claim_queue
           WHERE j.state IN ('pending', 'failed') AND j.queue > qs.name
           ORDER BY j.queue LIMIT 1)
    FROM qs WHERE qs.name IS NOT NULL
)
SELECT name FROM qs WHERE name IS NOT NULL
   AND name NOT IN (SELECT name FROM queuectl_queues
                     WHERE paused OR concurrency IS NOT NULL OR rate_limit IS NOT NULL);

-- name: held_queues
-- Queues the first claim step must pass over (paused, or limited: the second step's).
SELECT name FROM queuectl_queues
 WHERE paused OR concurrency IS NOT NULL OR rate_limit IS NOT NULL;

-- name: limited_allowance
-- Per limited queue, how many attempts its limits allow to start now (the claim holds the
-- write lock: no other claim can change these counts before it commits). The period has
-- the guard postgres.sql's pick_limited explains.
SELECT f.name,
       min(coalesce(f.concurrency - (SELECT count(*) FROM queuectl_jobs r
                                      WHERE r.queue = f.name AND r.state = 'processing'),
                    2147483647),
           coalesce(f.rate_limit - (SELECT count(*) FROM queuectl_queue_starts t
                                     WHERE t.queue = f.name
                                       AND t.started_at > :now - f.rate_period_s
                                           - min(0.25, 0.1 * f.rate_period_s)),
                    2147483647)) AS allowed
  FROM queuectl_queues f
 WHERE f.name IN (SELECT value FROM json_each(:queues)) AND NOT f.paused
   AND (f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL);

-- name: pick_limited
-- One limited queue's due jobs, in claim order, up to what its limits allow.
SELECT id, priority, run_at, seq FROM queuectl_jobs INDEXED BY queuectl_jobs_claim_queue
 WHERE queue = :queue AND state IN ('pending', 'failed') AND run_at <= :now
   AND (expires_at IS NULL OR expires_at > :now)
 ORDER BY priority DESC, run_at, seq
 LIMIT :limit

-- name: trim_starts
DELETE FROM queuectl_queue_starts
 WHERE queue = :queue
   AND started_at <= :now - (SELECT rate_period_s + min(0.25, 0.1 * rate_period_s)
                               FROM queuectl_queues WHERE name = :queue);

-- name: log_start
INSERT INTO queuectl_queue_starts (queue, started_at)
SELECT name, :now FROM queuectl_queues WHERE name = :queue AND rate_limit IS NOT NULL;

-- name: claim
-- Runs under BEGIN IMMEDIATE: no other connection can write between the pick and this
-- UPDATE, so no two claimers can take the same row. The i-th picked id goes to the i-th slot.
-- Rows are found by primary key: `+state` keeps the planner off the (state, seq) index,
-- which it would otherwise walk through every pending job.
UPDATE queuectl_jobs
   SET state = 'processing',
       worker_id = (SELECT json_extract(:slots, '$[' || p.key || ']') FROM json_each(:ids) AS p
                     WHERE p.value = queuectl_jobs.id),
       host = :host, attempts = attempts + 1, run_count = run_count + 1,
       lease_token = lease_token + 1, lease_expires_at = :now + :lease_s, started_at = :now,
       finished_at = NULL, exit_code = NULL, updated_at = :now, proc_session = NULL,
       expires_at = NULL  -- a TTL bounds the wait for a first start, nothing after it
 WHERE id IN (SELECT value FROM json_each(:ids)) AND +state IN ('pending', 'failed')
RETURNING *;

-- name: finish
-- The lease token guard: a worker whose lease was recovered matches no row here.
-- :state is the attempt's fate as retry.next_state decided it (Python, the one place); only
-- the row knows whether a cancel was asked while the job ran, so that override stays here.
-- A cancel asked while the job ran wins over every end but success: the attempt may have
-- failed (or been released) by itself before its worker heard of the cancel, and the job must
-- then neither run again nor wait in the DLQ. An interrupted attempt (forced stop) is handed
-- back, not used up: else a job released on its last attempt would run max_retries + 2 times.
-- (Every SET expression reads the row as it was before this UPDATE.)
UPDATE queuectl_jobs
   SET state = CASE WHEN cancel_requested AND :state <> 'completed' THEN 'cancelled'
                    ELSE :state END,
       run_at = CASE WHEN cancel_requested AND :state <> 'completed' THEN run_at
                     WHEN :state IN ('failed', 'pending') THEN :now + :retry_s
                     ELSE run_at END,
       attempts = CASE WHEN :outcome = 'interrupted' THEN attempts - 1 ELSE attempts END,
       finished_at = :now, updated_at = :now, exit_code = :exit_code, last_error = :error,
       lease_expires_at = NULL, cancel_requested = 0
 WHERE id = :id AND lease_token = :token AND state = 'processing'
RETURNING id, run_count, worker_id, started_at, queue, state, has_dependents, watched;

-- name: finish_run
-- The attempt's one run row (a heartbeat with output may have written it already: then it is
-- completed here; its output stays when the result carries none).
INSERT INTO queuectl_runs (job_id, attempt, worker_id, started_at, queue, due_at, finished_at,
                           exit_code, outcome, error, output, output_bytes)
VALUES (:id, :run_count, :worker_id, :started_at, :queue, :due_at, :now, :exit_code,
        :outcome, :error, coalesce(:output, ''), :output_bytes)
ON CONFLICT (job_id, attempt) DO UPDATE
   SET finished_at = excluded.finished_at, exit_code = excluded.exit_code,
       outcome = excluded.outcome, error = excluded.error,
       output = CASE WHEN excluded.output_bytes > 0 THEN excluded.output ELSE output END,
       output_bytes = max(output_bytes, excluded.output_bytes);

-- name: beat_workers
INSERT INTO queuectl_workers (id, host, pid, queues, started_at, heartbeat_at, jobs_done,
                              rss_bytes)
VALUES (:id, :host, :pid, :queues, :now, :now, :jobs_done, :rss_bytes)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = :now, jobs_done = excluded.jobs_done,
                               rss_bytes = excluded.rss_bytes
RETURNING id, stop_requested;

-- name: beat_jobs
UPDATE queuectl_jobs SET lease_expires_at = :now + :lease_s,
                         proc_session = coalesce(:session, proc_session)
 WHERE id = :id AND lease_token = :token AND state = 'processing'
RETURNING id, cancel_requested;

-- name: beat_output
-- A running attempt's output so far: the first such beat writes its run row, from the job's.
INSERT INTO queuectl_runs (job_id, attempt, worker_id, started_at, queue, due_at, output,
                           output_bytes)
SELECT id, run_count, worker_id, started_at, queue, run_at, :output, :bytes
  FROM queuectl_jobs WHERE id = :id AND run_count = :attempt AND state = 'processing'
ON CONFLICT (job_id, attempt) DO UPDATE SET output = excluded.output,
                                            output_bytes = excluded.output_bytes
 WHERE finished_at IS NULL;

-- name: expired_leases
-- A plain read: the sweeper judges each candidate outside any transaction (it may scan
-- /proc, and must not hold the write lock meanwhile), then still_expired re-checks.
SELECT * FROM queuectl_jobs
 WHERE state = 'processing' AND lease_expires_at < :now
 ORDER BY lease_expires_at
 LIMIT 100;

-- name: still_expired
-- The recovery's write transaction: of the chosen jobs, those still processing and still
-- expired (a heartbeat may have renewed one meanwhile); the caller compares lease tokens.
SELECT id, lease_token FROM queuectl_jobs
 WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'processing'
   AND lease_expires_at < :now;

-- name: forget_dead_workers
DELETE FROM queuectl_workers WHERE heartbeat_at < :now - :lease_s;

-- name: deregister_workers
DELETE FROM queuectl_workers WHERE id IN (SELECT value FROM json_each(:ids));

-- name: list_workers
-- Current jobs come from the jobs table (exact at any moment), not from the last heartbeat.
SELECT w.*, :now - w.heartbeat_at AS age_s,
       (SELECT json_group_array(j.id) FROM queuectl_jobs j
         WHERE j.state = 'processing' AND j.worker_id = w.id) AS current_jobs
  FROM queuectl_workers w
 WHERE w.heartbeat_at >= :now - :lease_s
 ORDER BY w.started_at, w.id;

-- name: request_stop
-- Every live worker, or only those named; a process drains when any of its slots is asked.
UPDATE queuectl_workers SET stop_requested = 1
 WHERE heartbeat_at >= :now - :lease_s
   AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
RETURNING id;

-- name: mark_stop
-- Whole-fleet `worker stop` also leaves a dated mark (a row of the named-leases table), so
-- that a worker whose process started before it but registers after it stops as well.
INSERT INTO queuectl_leader (name, holder, acquired_at, expires_at)
VALUES ('worker-stop', 'worker stop', :now, :now)
ON CONFLICT (name) DO UPDATE SET acquired_at = :now, expires_at = :now;

-- name: stop_marked
SELECT 1 AS marked FROM queuectl_leader
 WHERE name = 'worker-stop' AND acquired_at >= :now - :within_s;

-- name: sweep_turn
-- One host, a local file: every worker sweeps on its own schedule, and re-reads its policy
-- each time (no version: NULL), as it always did.
SELECT 1 AS mine, NULL AS settings_version;

-- name: get_job
SELECT * FROM queuectl_jobs WHERE id = :id;

-- name: list_jobs
-- Newest first; `before` is a keyset cursor (a job id), so page 1,000 costs what page 1 does.
SELECT * FROM queuectl_jobs
 WHERE (:state IS NULL OR state = :state) AND (:queue IS NULL OR queue = :queue)
   AND (:search IS NULL OR id = :search OR instr(command, :search) > 0)
   AND (:before IS NULL OR seq < (SELECT seq FROM queuectl_jobs WHERE id = :before))
 ORDER BY seq DESC
 LIMIT :limit;

-- name: list_jobs_after
-- The page above a cursor (paging back towards the newest): the `limit` jobs just newer
-- than `after`, oldest first (the caller reverses them), so jobs added meanwhile are not
-- skipped and the page joins the one it came from.
SELECT * FROM queuectl_jobs
 WHERE (:state IS NULL OR state = :state) AND (:queue IS NULL OR queue = :queue)
   AND (:search IS NULL OR id = :search OR instr(command, :search) > 0)
   AND seq > (SELECT seq FROM queuectl_jobs WHERE id = :after)
 ORDER BY seq
 LIMIT :limit;

-- name: runs
-- A running attempt without its run row yet (written when it ends, or by a heartbeat with
-- output) is read from the job's row.
SELECT job_id, attempt, worker_id, started_at, finished_at, exit_code, outcome, error,
       output, output_bytes
  FROM queuectl_runs WHERE job_id = :id
UNION ALL
SELECT j.id, j.run_count, j.worker_id, j.started_at, NULL, NULL, NULL, NULL, '', 0
  FROM queuectl_jobs j
 WHERE j.id = :id AND j.state = 'processing'
   AND NOT EXISTS (SELECT 1 FROM queuectl_runs r
                    WHERE r.job_id = j.id AND r.attempt = j.run_count)
 ORDER BY attempt;

-- name: cancel_now
UPDATE queuectl_jobs
   SET state = 'cancelled', updated_at = :now, finished_at = :now, last_error = 'cancelled'
 WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING *;

-- name: cancel_running
UPDATE queuectl_jobs SET cancel_requested = 1, updated_at = :now
 WHERE id = :id
RETURNING *;

-- name: retry
-- dead and cancelled jobs start over with a fresh retry budget; a failed job keeps its
-- attempts and only skips the rest of its backoff.
UPDATE queuectl_jobs
   SET state = 'pending', run_at = :now, updated_at = :now,
       attempts = CASE WHEN state = 'failed' THEN attempts ELSE 0 END,
       expires_at = NULL  -- a retry is a fresh request: an old TTL would kill it at once
 WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING *;

-- name: reblock
-- A retried dependent waits again for its dependencies (any not completed).
UPDATE queuectl_jobs SET state = 'blocked'
 WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'pending'
   AND EXISTS (SELECT 1 FROM queuectl_deps d JOIN queuectl_jobs p ON p.id = d.depends_on
                WHERE d.job_id = queuectl_jobs.id AND p.state <> 'completed')
RETURNING id;

-- name: retry_all_dead
UPDATE queuectl_jobs
   SET state = 'pending', run_at = :now, updated_at = :now, attempts = 0, expires_at = NULL
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
DELETE FROM queuectl_jobs
 WHERE state = 'dead' AND (:queue IS NULL OR queue = :queue)
   AND (:older_s IS NULL OR finished_at < :now - :older_s);

-- name: count_dead
SELECT count(*) AS n FROM queuectl_jobs
 WHERE state = 'dead' AND (:queue IS NULL OR queue = :queue)
   AND (:older_s IS NULL OR finished_at < :now - :older_s);

-- name: has_work
SELECT EXISTS (
  SELECT 1 FROM queuectl_jobs
   WHERE (state = 'failed' OR (state = 'pending' AND run_at <= :now))
     AND (expires_at IS NULL OR expires_at > :now)
     AND (json_array_length(:queues) = 0
          OR queue IN (SELECT value FROM json_each(:queues)))
     AND queue NOT IN (SELECT name FROM queuectl_queues WHERE paused)
) AS has_work;

-- name: work_outlook
-- what a burst worker waits for: how many jobs, and when the first falls due
SELECT count(*) AS n, min(run_at) AS next_at FROM queuectl_jobs
 WHERE (state = 'failed' OR (state = 'pending' AND run_at <= :now))
   AND (expires_at IS NULL OR expires_at > :now)
   AND (json_array_length(:queues) = 0
        OR queue IN (SELECT value FROM json_each(:queues)))
   AND queue NOT IN (SELECT name FROM queuectl_queues WHERE paused);

-- name: get_settings
SELECT key, value FROM queuectl_settings ORDER BY key;

-- name: set_setting
INSERT INTO queuectl_settings (key, value, updated_at) VALUES (:key, :value, :now)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at;

-- name: count_by_queue_state
SELECT queue, state, count(*) AS n FROM queuectl_jobs GROUP BY queue, state;

-- name: count_workers
-- lost: silent past a lease but not deregistered (killed, host gone); rows are forgotten a
-- few leases later, so this counts recent losses
SELECT coalesce(sum(w.heartbeat_at >= :now - :lease_s), 0) AS alive,
       coalesce(sum(w.heartbeat_at >= :now - :lease_s
                    AND EXISTS (SELECT 1 FROM queuectl_jobs j
                                 WHERE j.state = 'processing' AND j.worker_id = w.id)), 0) AS busy,
       coalesce(sum(w.heartbeat_at < :now - :lease_s), 0) AS lost
  FROM queuectl_workers w;

-- name: run_samples
-- Finished attempts in a time window: the raw material of `queuectl stats`.
SELECT queue, outcome, finished_at - started_at AS run_s,
       max(started_at - coalesce(due_at, started_at), 0) AS wait_s,
       :now - finished_at AS ago_s
  FROM queuectl_runs
 WHERE finished_at >= :now - :since_s AND (:queue IS NULL OR queue = :queue);

-- name: run_history
-- Finished attempts per slice of :width_s seconds (the slice's start, in epoch seconds).
SELECT CAST(finished_at / :width_s AS INTEGER) * :width_s AS slot,
       sum(outcome = 'succeeded') AS succeeded, count(*) AS finished
  FROM queuectl_runs
 WHERE finished_at >= :now - :since_s
 GROUP BY 1 ORDER BY 1;

-- name: acquire_leader
-- Take the lease if it is free or expired, or renew it if we hold it; no row back means
-- another holder's lease is still valid.
INSERT INTO queuectl_leader (name, holder, acquired_at, expires_at)
VALUES (:name, :holder, :now, :now + :ttl_s)
ON CONFLICT (name) DO UPDATE
   SET holder = excluded.holder, expires_at = excluded.expires_at,
       acquired_at = CASE WHEN queuectl_leader.holder = excluded.holder
                          THEN queuectl_leader.acquired_at ELSE excluded.acquired_at END
 WHERE queuectl_leader.holder = excluded.holder OR queuectl_leader.expires_at < :now
RETURNING holder;

-- name: release_leader
DELETE FROM queuectl_leader WHERE name = :name AND holder = :holder;

-- name: get_leader
SELECT holder, expires_at - :now AS ttl_left_s
  FROM queuectl_leader WHERE name = :name AND expires_at >= :now;

-- name: add_schedule
-- A taken name inserts nothing and returns no row: DuplicateSchedule (store.py).
INSERT INTO queuectl_schedules (name, cron, command, queue, priority, timeout_s, max_retries,
                                created_at, tz)
VALUES (:name, :cron, :command, :queue, :priority, :timeout_s, :max_retries, :now, :tz)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: list_schedules
SELECT * FROM queuectl_schedules ORDER BY name;

-- name: remove_schedule
DELETE FROM queuectl_schedules WHERE name = :name RETURNING name;

-- name: pause_schedule
UPDATE queuectl_schedules
   SET paused = :paused,
       last_slot = CASE WHEN :skip_to IS NULL THEN last_slot
                        ELSE max(coalesce(last_slot, :skip_to), :skip_to) END
 WHERE name = :name
RETURNING *;

-- name: schedule_to_fire
SELECT * FROM queuectl_schedules
 WHERE name = :name AND NOT paused AND (last_slot IS NULL OR last_slot < :slot);

-- name: fire_schedule
-- The job id carries the slot: firing the same slot twice inserts nothing. Defaults are
-- resolved in Python (common.job_rows), as for every enqueue.
INSERT INTO queuectl_jobs (id, command, queue, priority, run_at, timeout_s, max_retries,
                           created_at, updated_at)
VALUES (:id, :command, :queue, :priority, :now, :timeout_s, :max_retries, :now, :now)
ON CONFLICT (id) DO NOTHING;

-- name: mark_schedule
UPDATE queuectl_schedules SET last_slot = :slot, fired = fired + :fired WHERE name = :name;

-- name: expire_jobs
-- A job whose expires_at passed before it ran is dead-lettered, not run late. Its first
-- claim clears expires_at: a job that ran (and now waits out a backoff, or was handed back)
-- is past a TTL's reach, and its retries are the retry policy's to spend.
UPDATE queuectl_jobs
   SET state = 'dead', last_error = 'expired before it ran', updated_at = :now,
       finished_at = :now
 WHERE state IN ('pending', 'failed') AND expires_at IS NOT NULL AND expires_at < :now
RETURNING id, queue, state, has_dependents, watched;

-- name: prune_finished
-- In batches (the caller loops): the write lock is released between them, so heartbeats
-- and claims of running workers never wait long.
DELETE FROM queuectl_jobs
 WHERE seq IN (SELECT seq FROM queuectl_jobs
                WHERE state = :state AND finished_at < :now - :age_s LIMIT :batch);

-- name: oldest_due
SELECT queue, :now - min(run_at) AS age_s
  FROM queuectl_jobs
 WHERE state IN ('pending', 'failed') AND run_at <= :now
 GROUP BY queue;

-- name: mark_dependencies
-- An enqueue with `after`: the dependencies' states (the write lock orders it with their
-- finishes), and each flagged as having dependents (read by finish).
UPDATE queuectl_jobs SET has_dependents = 1
 WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id, state;

-- name: unique_lock
-- The write lock (BEGIN IMMEDIATE) already serialises every enqueue.
SELECT 1;

-- name: find_unique
SELECT * FROM queuectl_jobs
 WHERE unique_key = :key
   AND (state IN ('blocked', 'pending', 'processing', 'failed')
        OR (:window_s IS NOT NULL AND finished_at > :now - :window_s))
 ORDER BY seq DESC
 LIMIT 1;

-- name: set_flow
UPDATE queuectl_jobs
   SET state = :state, last_error = :error, unique_key = :key,
       has_dependents = :has_dependents,
       finished_at = CASE WHEN :state = 'cancelled' THEN :now END
 WHERE id = :id;

-- name: add_dependency
INSERT INTO queuectl_deps (job_id, depends_on) VALUES (:id, :on)
ON CONFLICT DO NOTHING;

-- name: unblock_dependents
UPDATE queuectl_jobs
   SET state = 'pending', run_at = max(run_at, :now), updated_at = :now
 WHERE state = 'blocked'
   AND id IN (SELECT job_id FROM queuectl_deps
               WHERE depends_on IN (SELECT value FROM json_each(:ids)))
   AND NOT EXISTS (SELECT 1 FROM queuectl_deps d JOIN queuectl_jobs p ON p.id = d.depends_on
                    WHERE d.job_id = queuectl_jobs.id AND p.state <> 'completed')
RETURNING id, queue;

-- name: cancel_dependents
-- :ended is a JSON object {dependency id: the state it ended in}.
UPDATE queuectl_jobs
   SET state = 'cancelled', updated_at = :now, finished_at = :now,
       last_error = (SELECT 'dependency ' || e.key || ' ' || e.value
                       FROM queuectl_deps d JOIN json_each(:ended) AS e ON e.key = d.depends_on
                      WHERE d.job_id = queuectl_jobs.id
                      ORDER BY e.key LIMIT 1)
 WHERE state = 'blocked'
   AND id IN (SELECT d.job_id FROM queuectl_deps d
               WHERE d.depends_on IN (SELECT key FROM json_each(:ended)))
RETURNING id, queue, state, has_dependents, watched;

-- name: blocked_settled
-- (postgres.sql says why a dependency that died before the job was last changed is left.)
SELECT j.id,
       (SELECT p.id || ' ' || p.state FROM queuectl_deps d
          JOIN queuectl_jobs p ON p.id = d.depends_on
         WHERE d.job_id = j.id AND p.state IN ('dead', 'cancelled')
           AND p.finished_at >= j.updated_at
         ORDER BY p.id LIMIT 1) AS ended
  FROM queuectl_jobs j
 WHERE j.state = 'blocked'
   AND NOT EXISTS (SELECT 1 FROM queuectl_deps d JOIN queuectl_jobs p ON p.id = d.depends_on
                    WHERE d.job_id = j.id
                      AND (p.state NOT IN ('completed', 'dead', 'cancelled')
                           OR (p.state <> 'completed' AND p.finished_at < j.updated_at)))
 LIMIT 1000;

-- name: unblock_ids
UPDATE queuectl_jobs
   SET state = 'pending', run_at = max(run_at, :now), updated_at = :now
 WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'blocked'
RETURNING id, queue;

-- name: cancel_blocked
UPDATE queuectl_jobs
   SET state = 'cancelled', updated_at = :now, finished_at = :now, last_error = :error
 WHERE id = :id AND state = 'blocked'
RETURNING id, queue, state, has_dependents, watched;

-- name: dependencies
SELECT 'after' AS side, p.id, p.state FROM queuectl_deps d
  JOIN queuectl_jobs p ON p.id = d.depends_on WHERE d.job_id = :id
UNION ALL
SELECT 'dependent', c.id, c.state FROM queuectl_deps d
  JOIN queuectl_jobs c ON c.id = d.job_id WHERE d.depends_on = :id
ORDER BY 1, 2;

-- name: mark_watched
UPDATE queuectl_jobs SET watched = 1
 WHERE id IN (SELECT value FROM json_each(:ids))
   AND state NOT IN ('completed', 'dead', 'cancelled') AND NOT watched;

-- name: list_queues
SELECT * FROM queuectl_queues ORDER BY name;

-- name: upsert_queue
INSERT INTO queuectl_queues AS f (name, paused, concurrency, rate_limit, rate_period_s,
                                  updated_at)
VALUES (:name, coalesce(:paused, 0), :concurrency, :rate_limit, :rate_period_s, :now)
ON CONFLICT (name) DO UPDATE
   SET paused = coalesce(:paused, f.paused),
       concurrency = CASE WHEN :set_concurrency THEN excluded.concurrency
                          ELSE f.concurrency END,
       rate_limit = CASE WHEN :set_rate THEN excluded.rate_limit ELSE f.rate_limit END,
       rate_period_s = CASE WHEN :set_rate THEN excluded.rate_period_s
                            ELSE f.rate_period_s END,
       updated_at = :now
RETURNING *;

-- name: drop_idle_queue
DELETE FROM queuectl_queues
 WHERE name = :name AND NOT paused AND concurrency IS NULL AND rate_limit IS NULL;

-- name: clear_starts
DELETE FROM queuectl_queue_starts WHERE queue = :name;

-- name: running_by_queue
SELECT queue, count(*) AS n FROM queuectl_jobs WHERE state = 'processing' GROUP BY queue;
