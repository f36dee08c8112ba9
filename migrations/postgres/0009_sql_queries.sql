-- The SQL console's queries from the web (the SQL page, CSV downloads, the API): each user's
-- recent ones for the SQL page. Only the latest per user are kept.
CREATE TABLE sql_queries (
    id          BIGSERIAL PRIMARY KEY,
    username    TEXT NOT NULL,
    query       TEXT NOT NULL,
    ran_at      BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    row_count   BIGINT NOT NULL,
    elapsed_us  BIGINT NOT NULL,
    error       TEXT
);
CREATE INDEX sql_queries_of_user ON sql_queries (username, id);
