-- Versioned migrations for PostgreSQL, applied in order by `queuectl db migrate`.

-- name: v1
CREATE TABLE queuectl_jobs (
  seq              bigint GENERATED ALWAYS AS IDENTITY,
  id               text PRIMARY KEY,
  command          text NOT NULL,
  state            text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead',
                                    'cancelled')),
  queue            text NOT NULL DEFAULT 'default',
  priority         integer NOT NULL DEFAULT 0,
  attempts         integer NOT NULL DEFAULT 0,
  -- every run ever, numbering queuectl_runs; unlike attempts, a retry from the DLQ keeps it
  run_count        integer NOT NULL DEFAULT 0,
  max_retries      integer NOT NULL CHECK (max_retries >= 0),
  timeout_s        double precision,
  run_at           timestamptz NOT NULL DEFAULT now(),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  finished_at      timestamptz,
  worker_id        text,
  host             text,
  exit_code        integer,
  last_error       text,
  lease_token      bigint NOT NULL DEFAULT 0,
  lease_expires_at timestamptz,
  cancel_requested boolean NOT NULL DEFAULT false
);
-- Only claimable rows are indexed, in claim order: the claim reads the first few entries and
-- the index stays small however many finished jobs the table keeps.
CREATE INDEX queuectl_jobs_claim ON queuectl_jobs (priority DESC, run_at, seq)
  WHERE state IN ('pending', 'failed');
CREATE INDEX queuectl_jobs_claim_queue ON queuectl_jobs (queue, priority DESC, run_at, seq)
  WHERE state IN ('pending', 'failed');
CREATE INDEX queuectl_jobs_leases ON queuectl_jobs (lease_expires_at)
  WHERE state = 'processing';
CREATE INDEX queuectl_jobs_running ON queuectl_jobs (worker_id) WHERE state = 'processing';
CREATE INDEX queuectl_jobs_state_seq ON queuectl_jobs (state, seq);
CREATE INDEX queuectl_jobs_seq ON queuectl_jobs (seq);

CREATE TABLE queuectl_runs (
  job_id       text NOT NULL REFERENCES queuectl_jobs (id) ON DELETE CASCADE,
  attempt      integer NOT NULL,
  worker_id    text,
  started_at   timestamptz NOT NULL,
  finished_at  timestamptz,
  exit_code    integer,
  outcome      text,
  error        text,
  output       text NOT NULL DEFAULT '',
  output_bytes bigint NOT NULL DEFAULT 0,
  queue        text NOT NULL DEFAULT 'default',  -- copied at claim: stats need no join
  due_at       timestamptz,                      -- the job's run_at when claimed: queue wait
  PRIMARY KEY (job_id, attempt)
);
CREATE INDEX queuectl_runs_finished ON queuectl_runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE queuectl_workers (
  id             text PRIMARY KEY,
  host           text NOT NULL,
  pid            integer NOT NULL,
  queues         text[] NOT NULL DEFAULT '{}',
  started_at     timestamptz NOT NULL DEFAULT now(),
  heartbeat_at   timestamptz NOT NULL DEFAULT now(),
  stop_requested boolean NOT NULL DEFAULT false
);

CREATE TABLE queuectl_settings (
  key        text PRIMARY KEY,
  value      text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- name: v2
-- Orchestrator: schedules, the leader lease, job expiry, and indexes for its sweeps.
ALTER TABLE queuectl_jobs ADD COLUMN expires_at timestamptz;
CREATE INDEX queuectl_jobs_due ON queuectl_jobs (run_at) WHERE state IN ('pending', 'failed');
CREATE INDEX queuectl_jobs_expiring ON queuectl_jobs (expires_at)
  WHERE expires_at IS NOT NULL AND state IN ('pending', 'failed');
CREATE INDEX queuectl_jobs_finished ON queuectl_jobs (finished_at)
  WHERE state IN ('completed', 'dead', 'cancelled');

CREATE TABLE queuectl_schedules (
  name        text PRIMARY KEY,
  cron        text NOT NULL,
  command     text NOT NULL,
  queue       text NOT NULL DEFAULT 'default',
  priority    integer NOT NULL DEFAULT 0,
  timeout_s   double precision,
  max_retries integer,
  paused      boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now(),
  last_slot   timestamptz,  -- the newest slot fired: never fired twice, never before this
  fired       integer NOT NULL DEFAULT 0
);

-- UNLOGGED (River's choice): a lease that a crash forgets is simply re-acquired.
CREATE UNLOGGED TABLE queuectl_leader (
  name        text PRIMARY KEY,
  holder      text NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL
);

-- name: v3
-- A queue table is rewritten all day: every claim, heartbeat and finish makes a new row
-- version. Free room on each page (fillfactor 70) lets the new version stay on the page of
-- the old one, and autovacuum runs after 1% (not 20%) of the rows changed, so dead versions
-- are reclaimed while they are few and the claimable-rows indexes stay small. The numbers
-- follow PGQueuer's `pgq autovac` and River's advice for hot queue tables.
ALTER TABLE queuectl_jobs SET (
  fillfactor = 70,
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_limit = 2000
);
ALTER TABLE queuectl_runs SET (
  fillfactor = 80,
  autovacuum_vacuum_scale_factor = 0.02,
  autovacuum_vacuum_threshold = 1000
);
ALTER TABLE queuectl_workers SET (fillfactor = 50);

-- name: v4
-- The session of a job's running attempt (`PID:START`, queuectl/sessions.py), written by
-- heartbeats: a recovery sweep on the same host kills every process of it, also those that
-- cleared their environment or left the job's process group.
ALTER TABLE queuectl_jobs ADD COLUMN proc_session text;

-- name: v5
-- The database connections a worker process holds (pool and LISTEN), written by its
-- heartbeats, for `worker list` (issue 16's connection budget). NULL on SQLite: a file.
ALTER TABLE queuectl_workers ADD COLUMN connections integer;

-- name: v6
-- Flow control and workflows (DESIGN §8).
-- The `blocked` state: a job waiting for its dependencies to complete.
ALTER TABLE queuectl_jobs DROP CONSTRAINT IF EXISTS queuectl_jobs_state_check;
ALTER TABLE queuectl_jobs ADD CONSTRAINT queuectl_jobs_state_check
  CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead', 'cancelled',
                   'blocked'));
-- Flags on the job's own row, read by finish's RETURNING (no extra probe on the hot path),
-- and written by whoever adds a dependent or a waiter: that write takes the row's lock, so an
-- enqueue and the dependency's finish are ordered (flow.md in DECISIONS §23 has the races).
ALTER TABLE queuectl_jobs ADD COLUMN has_dependents boolean NOT NULL DEFAULT false;
ALTER TABLE queuectl_jobs ADD COLUMN watched boolean NOT NULL DEFAULT false;
-- At most one unfinished job per key (enforced under an advisory lock per key, store.py).
ALTER TABLE queuectl_jobs ADD COLUMN unique_key text;
CREATE INDEX queuectl_jobs_unique ON queuectl_jobs (unique_key, finished_at)
  WHERE unique_key IS NOT NULL;
-- For the concurrency limit's count of running jobs per queue.
CREATE INDEX queuectl_jobs_running_queue ON queuectl_jobs (queue) WHERE state = 'processing';

-- Dependencies: job_id runs after depends_on completed. Both ends cascade: a purged job
-- takes its edges with it (a purged dependency no longer holds anything back).
CREATE TABLE queuectl_deps (
  job_id     text NOT NULL REFERENCES queuectl_jobs (id) ON DELETE CASCADE,
  depends_on text NOT NULL REFERENCES queuectl_jobs (id) ON DELETE CASCADE,
  PRIMARY KEY (job_id, depends_on)
);
CREATE INDEX queuectl_deps_depends_on ON queuectl_deps (depends_on);

-- Per-queue settings: only queues someone paused or limited have a row.
CREATE TABLE queuectl_queues (
  name          text PRIMARY KEY,
  paused        boolean NOT NULL DEFAULT false,
  concurrency   integer CHECK (concurrency >= 0),
  rate_limit    integer CHECK (rate_limit > 0),
  rate_period_s double precision CHECK (rate_period_s > 0),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
-- The starts of a rate-limited queue's attempts within its period (a sliding log: exact for
-- "at most N in any window"); the limited claim appends and trims it.
CREATE TABLE queuectl_queue_starts (
  queue      text NOT NULL,
  started_at timestamptz NOT NULL
);
CREATE INDEX queuectl_queue_starts_queue ON queuectl_queue_starts (queue, started_at);

-- Cron slots in an IANA time zone.
ALTER TABLE queuectl_schedules ADD COLUMN tz text NOT NULL DEFAULT 'UTC';

-- name: v7
-- What the dashboard's workers page shows per process (issue 18): the attempts each slot
-- finished since its process started, and the process's resident memory, both written by
-- heartbeats. NULL: a worker of an older version.
ALTER TABLE queuectl_workers ADD COLUMN jobs_done integer;
ALTER TABLE queuectl_workers ADD COLUMN rss_bytes bigint;
