-- Data-aware scheduling: every change of a table or dataset, and which DAG runs each change
-- triggered.

-- The Iceberg SQL catalog's table, as iceberg-catalog-sql creates it (it keeps its
-- `IF NOT EXISTS`), created here first so that the trigger below can watch it.
CREATE TABLE IF NOT EXISTS iceberg_tables (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    metadata_location VARCHAR(1000),
    previous_metadata_location VARCHAR(1000),
    iceberg_type VARCHAR(5),
    PRIMARY KEY (catalog_name, table_namespace, table_name)
);

-- A table's change is a new metadata file (`version`, after `previous`); a dataset's is a new
-- version. Written by the trigger below for tables, whoever commits (lakeward, the REST
-- catalog it serves, an external SQL-catalog writer), and with a try's lineage for datasets.
CREATE TABLE asset_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    previous    TEXT,
    changed_at  INTEGER NOT NULL
);
CREATE INDEX asset_changes_of_asset ON asset_changes (kind, name, changed_at);

CREATE TRIGGER iceberg_tables_changed AFTER UPDATE OF metadata_location ON iceberg_tables
WHEN NEW.metadata_location IS NOT OLD.metadata_location AND NEW.metadata_location IS NOT NULL
BEGIN
    INSERT INTO asset_changes (kind, name, version, previous, changed_at)
    VALUES ('table', NEW.table_namespace || '.' || NEW.table_name, NEW.metadata_location,
            OLD.metadata_location,
            CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER));
END;

-- Which changes each DAG has consumed, and by which run: a change is pending for a DAG that
-- watches its asset until a row here says otherwise.
CREATE TABLE asset_triggers (
    dag_id     TEXT NOT NULL,
    change_id  INTEGER NOT NULL,
    run_pk     INTEGER NOT NULL,
    PRIMARY KEY (dag_id, change_id)
);
CREATE INDEX asset_triggers_of_run ON asset_triggers (run_pk);

-- From when each DAG watches each asset: changes before are not its business. Moved forward
-- as changes are consumed (less a margin for commits that finish out of id order).
CREATE TABLE asset_watches (
    dag_id  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    since   INTEGER NOT NULL,
    PRIMARY KEY (dag_id, kind, name)
);

-- What triggered a run, resolved: the table snapshots (or dataset versions) the consumed
-- changes added.
CREATE TABLE run_triggers (
    run_pk   INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    name     TEXT NOT NULL,
    version  TEXT NOT NULL
);
CREATE INDEX run_triggers_of_run ON run_triggers (run_pk);
