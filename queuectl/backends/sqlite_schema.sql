-- Versioned migrations for SQLite (PRAGMA user_version), applied on first use.
-- Times are REAL Unix seconds: one host, one clock, and cheap to compare and index.

-- name: v1
CREATE TABLE queuectl_jobs (
  seq              INTEGER PRIMARY KEY AUTOINCREMENT,
  id               TEXT NOT NULL UNIQUE,
  command          TEXT NOT NULL,
  state            TEXT NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'dead',
                                    'cancelled')),
  queue            TEXT NOT NULL DEFAULT 'default',
  priority         INTEGER NOT NULL DEFAULT 0,
  attempts         INTEGER NOT NULL DEFAULT 0,
  run_count        INTEGER NOT NULL DEFAULT 0,
  max_retries      INTEGER NOT NULL CHECK (max_retries >= 0),
  timeout_s        REAL,
  run_at           REAL NOT NULL,
  created_at       REAL NOT NULL,
  updated_at       REAL NOT NULL,
  started_at       REAL,
  finished_at      REAL,
  worker_id        TEXT,
  host             TEXT,
  exit_code        INTEGER,
  last_error       TEXT,
  lease_token      INTEGER NOT NULL DEFAULT 0,
  lease_expires_at REAL,
  cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX queuectl_jobs_claim ON queuectl_jobs (priority DESC, run_at, seq)
  WHERE state IN ('pending', 'failed');
CREATE INDEX queuectl_jobs_claim_queue ON queuectl_jobs (queue, priority DESC, run_at, seq)
  WHERE state IN ('pending', 'failed');
CREATE INDEX queuectl_jobs_leases ON queuectl_jobs (lease_expires_at)
  WHERE state = 'processing';
CREATE INDEX queuectl_jobs_running ON queuectl_jobs (worker_id) WHERE state = 'processing';
CREATE INDEX queuectl_jobs_state_seq ON queuectl_jobs (state, seq);

CREATE TABLE queuectl_runs (
  job_id       TEXT NOT NULL REFERENCES queuectl_jobs (id) ON DELETE CASCADE,
  attempt      INTEGER NOT NULL,
  worker_id    TEXT,
  started_at   REAL NOT NULL,
  finished_at  REAL,
  exit_code    INTEGER,
  outcome      TEXT,
  error        TEXT,
  output       TEXT NOT NULL DEFAULT '',
  output_bytes INTEGER NOT NULL DEFAULT 0,
  queue        TEXT NOT NULL DEFAULT 'default',  -- copied at claim: stats need no join
  due_at       REAL,                             -- the job's run_at when claimed: queue wait
  PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;
CREATE INDEX queuectl_runs_finished ON queuectl_runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE queuectl_workers (
  id             TEXT PRIMARY KEY,
  host           TEXT NOT NULL,
  pid            INTEGER NOT NULL,
  queues         TEXT NOT NULL DEFAULT '[]',
  started_at     REAL NOT NULL,
  heartbeat_at   REAL NOT NULL,
  stop_requested INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE queuectl_settings (
  key        TEXT PRIMARY KEY,
  value      TEXT NOT NULL,
  updated_at REAL NOT NULL
);

-- name: v2
-- Orchestrator: schedules, the leader lease, job expiry, and indexes for its sweeps.
ALTER TABLE queuectl_jobs ADD COLUMN expires_at REAL;
CREATE INDEX queuectl_jobs_due ON queuectl_jobs (run_at) WHERE state IN ('pending', 'failed');
CREATE INDEX queuectl_jobs_expiring ON queuectl_jobs (expires_at)
  WHERE expires_at IS NOT NULL AND state IN ('pending', 'failed');
CREATE INDEX queuectl_jobs_finished ON queuectl_jobs (finished_at)
  WHERE state IN ('completed', 'dead', 'cancelled');

CREATE TABLE queuectl_schedules (
  name        TEXT PRIMARY KEY,
  cron        TEXT NOT NULL,
  command     TEXT NOT NULL,
  queue       TEXT NOT NULL DEFAULT 'default',
  priority    INTEGER NOT NULL DEFAULT 0,
  timeout_s   REAL,
  max_retries INTEGER,
  paused      INTEGER NOT NULL DEFAULT 0,
  created_at  REAL NOT NULL,
  last_slot   REAL,
  fired       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE queuectl_leader (
  name        TEXT PRIMARY KEY,
  holder      TEXT NOT NULL,
  acquired_at REAL NOT NULL,
  expires_at  REAL NOT NULL
);

-- name: v3
-- Postgres v3 tunes storage (fillfactor, autovacuum); SQLite has no such settings, and its
-- claim reads the claimable-rows index by name (INDEXED BY in sqlite.sql), so nothing
-- changes here; the version keeps both schemas numbered alike.
SELECT 1;

-- name: v4
-- The session of a job's running attempt (`PID:START`, queuectl/sessions.py), written by
-- heartbeats: a recovery sweep on the same host kills every process of it, also those that
-- cleared their environment or left the job's process group.
ALTER TABLE queuectl_jobs ADD COLUMN proc_session TEXT;

-- name: v5
-- The database connections a worker process holds (pool and LISTEN), written by its
-- heartbeats, for `worker list` (issue 16's connection budget). NULL on SQLite: a file.
ALTER TABLE queuectl_workers ADD COLUMN connections INTEGER;

-- name: v6
-- Flow control and workflows (DESIGN §8); see postgres_schema.sql v6 for the reasons.
-- The `blocked` state: sqlite.py widens the table's CHECK constraint before these statements
-- (SQLite cannot ALTER a constraint; every existing row satisfies the wider one).
ALTER TABLE queuectl_jobs ADD COLUMN has_dependents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queuectl_jobs ADD COLUMN watched INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queuectl_jobs ADD COLUMN unique_key TEXT;
CREATE INDEX queuectl_jobs_unique ON queuectl_jobs (unique_key, finished_at)
  WHERE unique_key IS NOT NULL;
CREATE INDEX queuectl_jobs_running_queue ON queuectl_jobs (queue) WHERE state = 'processing';

CREATE TABLE queuectl_deps (
  job_id     TEXT NOT NULL REFERENCES queuectl_jobs (id) ON DELETE CASCADE,
  depends_on TEXT NOT NULL REFERENCES queuectl_jobs (id) ON DELETE CASCADE,
  PRIMARY KEY (job_id, depends_on)
) WITHOUT ROWID;
CREATE INDEX queuectl_deps_depends_on ON queuectl_deps (depends_on);

CREATE TABLE queuectl_queues (
  name          TEXT PRIMARY KEY,
  paused        INTEGER NOT NULL DEFAULT 0,
  concurrency   INTEGER CHECK (concurrency >= 0),
  rate_limit    INTEGER CHECK (rate_limit > 0),
  rate_period_s REAL CHECK (rate_period_s > 0),
  updated_at    REAL NOT NULL
);
CREATE TABLE queuectl_queue_starts (
  queue      TEXT NOT NULL,
  started_at REAL NOT NULL
);
CREATE INDEX queuectl_queue_starts_queue ON queuectl_queue_starts (queue, started_at);

ALTER TABLE queuectl_schedules ADD COLUMN tz TEXT NOT NULL DEFAULT 'UTC';

-- name: v7
-- Per slot: attempts finished since its process started; per process: resident memory.
-- Written by heartbeats for the dashboard's workers page (see postgres_schema.sql v7).
ALTER TABLE queuectl_workers ADD COLUMN jobs_done INTEGER;
ALTER TABLE queuectl_workers ADD COLUMN rss_bytes INTEGER;
