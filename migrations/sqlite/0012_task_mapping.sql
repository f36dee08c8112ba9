-- Dynamic task mapping: a mapped task has one instance per item of its list, numbered by
-- `map_index` from 0 (-1: a task that is not mapped, or not expanded yet), each with its item
-- (JSON) in `map_item`.
--
-- SQLite cannot change a table's UNIQUE constraint: the table is rebuilt (SQLite's documented
-- procedure). Migrations run with foreign keys off (see Store::migrate), so dropping the old
-- table cascades to nothing: its tries, logs and lineage keep pointing at the same ids.
CREATE TABLE task_instances_mapped (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_pk        INTEGER NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
    dag_id        TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    state         TEXT NOT NULL,
    queue         TEXT NOT NULL,
    try_number    INTEGER NOT NULL DEFAULT 0,
    max_tries     INTEGER NOT NULL,
    worker_id     TEXT,
    queued_at     INTEGER,
    started_at    INTEGER,
    ended_at      INTEGER,
    heartbeat_at  INTEGER,
    next_try_at   INTEGER,
    exit_code     INTEGER,
    error         TEXT,
    outputs       TEXT,
    progress      TEXT,
    progress_at   INTEGER,
    map_index     INTEGER NOT NULL DEFAULT -1,
    map_item      TEXT,
    UNIQUE (run_pk, task_id, map_index)
);
INSERT INTO task_instances_mapped (id, run_pk, dag_id, task_id, state, queue, try_number,
    max_tries, worker_id, queued_at, started_at, ended_at, heartbeat_at, next_try_at, exit_code,
    error, outputs, progress, progress_at)
SELECT id, run_pk, dag_id, task_id, state, queue, try_number, max_tries, worker_id, queued_at,
    started_at, ended_at, heartbeat_at, next_try_at, exit_code, error, outputs, progress,
    progress_at
FROM task_instances;
DROP TABLE task_instances;
ALTER TABLE task_instances_mapped RENAME TO task_instances;
CREATE INDEX task_instances_claim ON task_instances (queue, queued_at, id) WHERE state = 'queued';
CREATE INDEX task_instances_live ON task_instances (state, heartbeat_at) WHERE state IN ('running', 'up_for_retry');
