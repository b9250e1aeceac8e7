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
