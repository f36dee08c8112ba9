-- Which DAGs read and wrote which tables and datasets, from their lineage: one row per DAG,
-- direction and asset, with the newest run that did it. A DAG page finds the DAGs connected to
-- its own data through the asset index instead of reading every DAG's lineage.
CREATE TABLE dag_assets (
    dag_id       TEXT NOT NULL,
    direction    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    last_run_pk  BIGINT NOT NULL,
    PRIMARY KEY (dag_id, direction, kind, name)
);
CREATE INDEX dag_assets_of_asset ON dag_assets (kind, name, direction);

INSERT INTO dag_assets (dag_id, direction, kind, name, last_run_pk)
SELECT ti.dag_id, l.direction, l.kind, l.name, MAX(ti.run_pk)
FROM task_lineage l JOIN task_instances ti ON ti.id = l.ti_id
GROUP BY ti.dag_id, l.direction, l.kind, l.name;
