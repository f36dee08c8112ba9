-- When a run passed its DAG's `deadline` unfinished (set once, by one scheduler).
ALTER TABLE dag_runs ADD COLUMN deadline_missed_at BIGINT;
