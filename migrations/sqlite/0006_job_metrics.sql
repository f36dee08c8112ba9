-- Metrics jobs report (records ingested, consumer lag, …): one row per name and label set,
-- counters summed over tries, gauges replaced. Rendered by /metrics.
CREATE TABLE job_metrics (
    name        TEXT NOT NULL,
    labels      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    help        TEXT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (name, labels)
);
