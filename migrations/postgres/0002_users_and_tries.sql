-- Web users, their browser sessions and API tokens; the timing of every try of a task
-- instance; scheduler loop timing for /metrics.

CREATE TABLE users (
    username       TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- Secrets (session ids, API tokens) are stored as SHA-256 hex digests, never in clear.
CREATE TABLE web_sessions (
    id_hash     TEXT PRIMARY KEY,
    username    TEXT NOT NULL,
    role        TEXT NOT NULL,
    csrf_token  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

CREATE TABLE api_tokens (
    token_hash    TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    name          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);

-- The slowest scheduling pass since the process's previous heartbeat.
ALTER TABLE processes ADD COLUMN loop_micros BIGINT;

-- One row per try of a task instance, kept when later tries run (the task instance row only
-- holds the current try).
CREATE TABLE task_tries (
    ti_id       BIGINT NOT NULL,
    try_number  BIGINT NOT NULL,
    worker_id   TEXT,
    state       TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    error       TEXT,
    PRIMARY KEY (ti_id, try_number)
);
