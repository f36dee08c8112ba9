-- The SQL console's queries from the web (the SQL page, CSV downloads, the API): each user's
-- recent ones for the SQL page. Only the latest per user are kept.
CREATE TABLE sql_queries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    username    TEXT NOT NULL,
    query       TEXT NOT NULL,
    ran_at      INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    row_count   INTEGER NOT NULL,
    elapsed_us  INTEGER NOT NULL,
    error       TEXT
);
CREATE INDEX sql_queries_of_user ON sql_queries (username, id);
