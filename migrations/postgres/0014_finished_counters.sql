-- Counters of finished runs and task instances for /metrics (see store::finished): what
-- finished up to `rollup_marks.upto` is added here once; what finished after is counted
-- through the ended_at indexes. The mark starts at 0: on a database with a history, the
-- scheduler rolls it up in bounded steps.
CREATE INDEX task_instances_ended ON task_instances (ended_at);
CREATE INDEX dag_runs_ended ON dag_runs (ended_at);
CREATE INDEX dag_runs_missed_deadline ON dag_runs (deadline_missed_at)
    WHERE deadline_missed_at IS NOT NULL;

CREATE TABLE finished_tasks (
    dag_id   TEXT NOT NULL,
    task_id  TEXT NOT NULL,
    state    TEXT NOT NULL,
    bucket   BIGINT NOT NULL,
    count    BIGINT NOT NULL,
    micros   BIGINT NOT NULL,
    PRIMARY KEY (dag_id, task_id, state, bucket)
);

CREATE TABLE finished_runs (
    state  TEXT PRIMARY KEY,
    count  BIGINT NOT NULL
);

CREATE TABLE rollup_marks (
    name  TEXT PRIMARY KEY,
    upto  BIGINT NOT NULL
);
INSERT INTO rollup_marks (name, upto) VALUES ('finished', 0);
