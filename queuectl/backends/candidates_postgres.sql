-- Read-only lookups for shell completion (candidates.py): values that start with
-- %(prefix)s, at most %(limit)s of them. starts_with() rather than LIKE: no wildcard in an
-- id (`_`) to escape. A prefix nothing matches reads the whole table; the caller's
-- statement_timeout bounds that.

-- name: jobs
-- newest first: the job a person means is nearly always a recent one
SELECT id AS value, state || '  ' || left(command, 60) AS help
  FROM queuectl_jobs
 WHERE starts_with(id, %(prefix)s)
   AND (cardinality(%(states)s::text[]) = 0 OR state = ANY(%(states)s::text[]))
 ORDER BY seq DESC
 LIMIT %(limit)s;

-- name: queues
-- queues someone configured (paused, limited) and queues that hold jobs
SELECT value, '' AS help FROM (
  SELECT name AS value FROM queuectl_queues WHERE starts_with(name, %(prefix)s)
  UNION
  SELECT queue FROM queuectl_jobs WHERE starts_with(queue, %(prefix)s)
) AS q
 ORDER BY value
 LIMIT %(limit)s;

-- name: schedules
SELECT name AS value, cron || '  ' || left(command, 60) AS help
  FROM queuectl_schedules
 WHERE starts_with(name, %(prefix)s)
 ORDER BY name
 LIMIT %(limit)s;
