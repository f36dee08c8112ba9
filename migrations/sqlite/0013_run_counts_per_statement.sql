-- Postgres' run counters moved to statement-level triggers in this step. SQLite updates a row
-- in place, so its row-level triggers of 0007 stay; this file keeps the two migration lists
-- numbered alike.
SELECT 1;
