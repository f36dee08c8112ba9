-- Dynamic task mapping: a mapped task has one instance per item of its list, numbered by
-- `map_index` from 0 (-1: a task that is not mapped, or not expanded yet), each with its item
-- (JSON) in `map_item`.
ALTER TABLE task_instances ADD COLUMN map_index BIGINT NOT NULL DEFAULT -1;
ALTER TABLE task_instances ADD COLUMN map_item TEXT;
ALTER TABLE task_instances DROP CONSTRAINT task_instances_run_pk_task_id_key;
ALTER TABLE task_instances ADD CONSTRAINT task_instances_run_pk_task_id_map_index_key
    UNIQUE (run_pk, task_id, map_index);
