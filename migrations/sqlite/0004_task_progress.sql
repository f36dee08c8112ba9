-- What a running try last reported of its progress (JSON: rows, bytes, message), and when:
-- the try's own heartbeat, apart from its worker's.
ALTER TABLE task_instances ADD COLUMN progress TEXT;
ALTER TABLE task_instances ADD COLUMN progress_at INTEGER;
