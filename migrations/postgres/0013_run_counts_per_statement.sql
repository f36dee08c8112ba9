-- The run counters of 0007 were kept by row-level triggers: a statement inserting or deleting
-- many runs of one DAG (a retention batch, `db clean`) updated the same counter row once per
-- run, and Postgres walks that row's chain of versions on every update of one transaction, so
-- a batch cost grew with its square. Statement-level triggers add up each statement's runs per
-- DAG and update each counter once.
DROP TRIGGER dag_runs_counted_in ON dag_runs;
DROP TRIGGER dag_runs_counted_out ON dag_runs;
DROP FUNCTION dag_run_counts_added();
DROP FUNCTION dag_run_counts_removed();

CREATE FUNCTION dag_run_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dag_run_counts (dag_id, runs)
    SELECT dag_id, COUNT(*) FROM added_runs GROUP BY dag_id
    ON CONFLICT (dag_id) DO UPDATE SET runs = dag_run_counts.runs + excluded.runs;
    RETURN NULL;
END;
$$;

CREATE FUNCTION dag_run_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dag_run_counts c SET runs = c.runs - d.runs
    FROM (SELECT dag_id, COUNT(*) AS runs FROM removed_runs GROUP BY dag_id) AS d
    WHERE c.dag_id = d.dag_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER dag_runs_counted_in AFTER INSERT ON dag_runs
    REFERENCING NEW TABLE AS added_runs
    FOR EACH STATEMENT EXECUTE FUNCTION dag_run_counts_added();
CREATE TRIGGER dag_runs_counted_out AFTER DELETE ON dag_runs
    REFERENCING OLD TABLE AS removed_runs
    FOR EACH STATEMENT EXECUTE FUNCTION dag_run_counts_removed();
