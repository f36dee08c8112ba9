-- How many runs each DAG has, kept by triggers so that every way a run is created or deleted
-- (scheduler, trigger, backfill, retention, a DAG's deletion) counts. Pagers read it instead of
-- counting a continuous DAG's hundred thousand runs on every page view.
CREATE TABLE dag_run_counts (
    dag_id  TEXT PRIMARY KEY,
    runs    BIGINT NOT NULL
);

INSERT INTO dag_run_counts (dag_id, runs) SELECT dag_id, COUNT(*) FROM dag_runs GROUP BY dag_id;

CREATE FUNCTION dag_run_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dag_run_counts (dag_id, runs) VALUES (NEW.dag_id, 1)
    ON CONFLICT (dag_id) DO UPDATE SET runs = dag_run_counts.runs + 1;
    RETURN NULL;
END;
$$;

CREATE FUNCTION dag_run_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dag_run_counts SET runs = runs - 1 WHERE dag_id = OLD.dag_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER dag_runs_counted_in AFTER INSERT ON dag_runs
    FOR EACH ROW EXECUTE FUNCTION dag_run_counts_added();
CREATE TRIGGER dag_runs_counted_out AFTER DELETE ON dag_runs
    FOR EACH ROW EXECUTE FUNCTION dag_run_counts_removed();
