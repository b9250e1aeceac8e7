-- Read-only lookups for shell completion (candidates.py): values that start with :prefix,
-- at most :limit of them. SQLite's LIKE ignores case and treats _ as a wildcard, so the
-- prefix is compared with substr(); :states is a JSON array, [] for every state.

-- name: jobs
-- newest first: the job a person means is nearly always a recent one
SELECT id AS value, state || '  ' || substr(command, 1, 60) AS help
  FROM queuectl_jobs
 WHERE substr(id, 1, length(:prefix)) = :prefix
   AND (:states = '[]' OR state IN (SELECT value FROM json_each(:states)))
 ORDER BY seq DESC
 LIMIT :limit;

-- name: queues
-- queues someone configured (paused, limited) and queues that hold jobs
SELECT value, '' AS help FROM (
  SELECT name AS value FROM queuectl_queues WHERE substr(name, 1, length(:prefix)) = :prefix
  UNION
  SELECT queue FROM queuectl_jobs WHERE substr(queue, 1, length(:prefix)) = :prefix
)
 ORDER BY value
 LIMIT :limit;

-- name: schedules
SELECT name AS value, cron || '  ' || substr(command, 1, 60) AS help
  FROM queuectl_schedules
 WHERE substr(name, 1, length(:prefix)) = :prefix
 ORDER BY name
 LIMIT :limit;
