-- The notification queue: one row per message to one channel, queued in the same transaction
-- as the state change it tells of, delivered by whichever scheduler claims it first.
-- `event_key` names the event and channel; a second enqueue of the same event is ignored.
-- While a row is `sending`, `next_attempt_at` is the end of its sender's lease: past it, a
-- sender presumed dead, the row may be claimed again.
CREATE TABLE notifications (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_key        TEXT NOT NULL UNIQUE,
    channel          TEXT NOT NULL,
    event            TEXT NOT NULL,
    dag_id           TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    task_id          TEXT,
    message          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    claimed_by       TEXT,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state IN ('pending', 'sending');
