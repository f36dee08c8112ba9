-- Lineage: every dataset version and table snapshot a try read or wrote.
CREATE TABLE task_lineage (
    ti_id       INTEGER NOT NULL,
    try_number  INTEGER NOT NULL,
    direction   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    operation   TEXT,
    row_count   INTEGER,
    file_count  INTEGER,
    byte_count  INTEGER
);
CREATE INDEX task_lineage_try ON task_lineage (ti_id, try_number);
CREATE INDEX task_lineage_asset ON task_lineage (kind, name);
