-- lakeward run state (SQLite). Timestamps are microseconds since the Unix epoch, UTC.

CREATE TABLE dags (
    dag_id       TEXT PRIMARY KEY,
    file_path    TEXT NOT NULL,
    version      TEXT NOT NULL,
    description  TEXT,
    schedule     TEXT,
    tags         TEXT NOT NULL DEFAULT '[]',
    is_paused    INTEGER NOT NULL DEFAULT 0,
    is_active    INTEGER NOT NULL DEFAULT 1,
    next_run_at  INTEGER,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE dag_versions (
    dag_id      TEXT NOT NULL,
    version     TEXT NOT NULL,
    file_path   TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (dag_id, version)
);

CREATE TABLE import_errors (
    file_path   TEXT PRIMARY KEY,
    message     TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE dag_runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_id          TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    version         TEXT NOT NULL,
    run_type        TEXT NOT NULL,
    state           TEXT NOT NULL,
    logical_date    INTEGER NOT NULL,
    interval_start  INTEGER NOT NULL,
    interval_end    INTEGER NOT NULL,
    params          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    ended_at        INTEGER,
    UNIQUE (dag_id, logical_date),
    UNIQUE (dag_id, run_id)
);
CREATE INDEX dag_runs_active ON dag_runs (state, dag_id, logical_date) WHERE state IN ('queued', 'running');

CREATE TABLE task_instances (
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
    UNIQUE (run_pk, task_id)
);
CREATE INDEX task_instances_claim ON task_instances (queue, queued_at, id) WHERE state = 'queued';
CREATE INDEX task_instances_live ON task_instances (state, heartbeat_at) WHERE state IN ('running', 'up_for_retry');

CREATE TABLE task_logs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ti_id       INTEGER NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number  INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    stream      TEXT NOT NULL,
    line        TEXT NOT NULL
);
CREATE INDEX task_logs_ti ON task_logs (ti_id, try_number, id);

CREATE TABLE processes (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    hostname      TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
);
