//! Runs on data: DAGs scheduled on a table's changes get runs that consume every change once
//! (several collapse into one run while a run waits, none lost across a scheduler restart,
//! none before the DAG watched), record the snapshots that triggered them, and hand them to
//! templates; a cron beside `on` makes the runs wait for a tick, `min_interval` spaces them.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use chrono::Utc;
use common::{Harness, HarnessOptions};
use lakeward::domain::{RunState, RunType};
use lakeward::jobs::Registry;
use lakeward::lake::tables::{Tables, TablesHandle, WriteMode};
use lakeward::lake::Warehouse;
use lakeward::scheduler::{Scheduler, SchedulerOptions};
use lakeward::store::{assets, runs, RunRow, Store};
use lakeward::time::now_micros;
use lakeward::versions::DagVersions;

const TABLE: &str = "bronze.events";

/// Appends one row to the table; returns the snapshot the commit made.
async fn append(tables: &Tables, id: i64) -> i64 {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![id]))]).unwrap();
    let mut writer = tables.writer(TABLE, &schema, &[]).await.unwrap();
    writer.write(&batch).await.unwrap();
    writer.commit(WriteMode::Append, &BTreeMap::new(), &BTreeMap::new()).await.unwrap();
    let table = tables.load(TABLE).await.unwrap();
    table.metadata().current_snapshot_id().unwrap()
}

/// The DAGs' runs, oldest first.
async fn runs_of(store: &Store, dag_id: &str) -> Vec<RunRow> {
    let mut all = runs::list(store.read(), dag_id, 100, 0).await.unwrap();
    all.reverse();
    all
}

async fn snapshots_of(store: &Store, run: &RunRow) -> Vec<i64> {
    let triggers = assets::triggers_of_run(store.read(), run.pk).await.unwrap();
    triggers.iter().map(|t| t.version.parse().unwrap()).collect()
}

#[tokio::test]
async fn changes_collapse_into_runs_none_lost_or_repeated_across_restarts() {
    for db in common::databases().await {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().join("lake").to_str().unwrap()).unwrap();
        let store = Store::open(&db.url).await.unwrap();
        let tables = Tables::open(&store, &warehouse, &Default::default()).await.unwrap();
        let before_watching = append(&tables, 0).await;

        let folder = dir.path().join("dags");
        std::fs::create_dir_all(&folder).unwrap();
        let on_data = "schedule = { on = [\"bronze.events\"] }\nmax_active_runs = 1\n\
                       [tasks.t]\nkind = \"noop\"\n";
        std::fs::write(folder.join("on_data.toml"), on_data).unwrap();
        let yearly = "schedule = { on = [\"bronze.events\"], cron = \"@yearly\" }\n\
                      [tasks.t]\nkind = \"noop\"\n";
        std::fs::write(folder.join("yearly.toml"), yearly).unwrap();
        let every_second = "schedule = { on = [\"bronze.events\"], cron = \"* * * * * *\" }\n\
                            [tasks.t]\nkind = \"noop\"\n";
        std::fs::write(folder.join("every_second.toml"), every_second).unwrap();
        let spaced = "schedule = { on = [\"bronze.events\"] }\nmin_interval = \"1h\"\n\
                      [tasks.t]\nkind = \"noop\"\n";
        std::fs::write(folder.join("spaced.toml"), spaced).unwrap();

        let versions = Arc::new(DagVersions::new(store.clone(), Registry::builtin()));
        let scheduler = || {
            Scheduler::new(
                store.clone(),
                versions.clone(),
                SchedulerOptions {
                    dags_folder: Some(folder.clone()),
                    create_scheduled_runs: true,
                    poll_interval: Duration::from_millis(100),
                    dag_refresh_interval: Duration::ZERO,
                    heartbeat_timeout: Duration::from_secs(60),
                    pools: Default::default(),
                    max_map_length: 1024,
                },
            )
            .with_tables(TablesHandle::new(
                store.clone(),
                warehouse.clone(),
                Default::default(),
            ))
        };
        let mut s = scheduler();
        s.tick(Utc::now()).await.unwrap();
        assert!(runs_of(&store, "on_data").await.is_empty(), "{}: no change yet", db.backend);

        let (s1, s2) = (append(&tables, 1).await, append(&tables, 2).await);
        s.tick(Utc::now()).await.unwrap();
        s.tick(Utc::now()).await.unwrap();
        let first = runs_of(&store, "on_data").await;
        assert_eq!(first.len(), 1, "{}: two changes, one run", db.backend);
        assert_eq!(first[0].run_type, RunType::AssetTriggered);
        assert_eq!(first[0].state, RunState::Running);
        assert_eq!(snapshots_of(&store, &first[0]).await, [s1, s2], "{}", db.backend);

        let s3 = append(&tables, 3).await;
        s.tick(Utc::now()).await.unwrap();
        let (s4, s5) = (append(&tables, 4).await, append(&tables, 5).await);
        s.tick(Utc::now()).await.unwrap();
        s.tick(Utc::now()).await.unwrap();
        let queued = runs_of(&store, "on_data").await;
        assert_eq!(queued.len(), 2, "{}: changes wait while a run waits for its slot", db.backend);
        assert_eq!(queued[1].state, RunState::Queued);
        assert_eq!(snapshots_of(&store, &queued[1]).await, [s3], "{}", db.backend);

        // A restarted scheduler neither repeats nor forgets: s4 and s5 still wait.
        drop(s);
        let mut s = scheduler();
        s.tick(Utc::now()).await.unwrap();
        assert_eq!(runs_of(&store, "on_data").await.len(), 2, "{}", db.backend);
        let done = runs::set_state(
            store.write(),
            first[0].pk,
            RunState::Running,
            RunState::Success,
            now_micros(),
        )
        .await
        .unwrap();
        assert!(done);
        s.tick(Utc::now()).await.unwrap();
        let all = runs_of(&store, "on_data").await;
        assert_eq!(all.len(), 3, "{}: the waiting run started, the next took the rest", db.backend);
        assert_eq!(snapshots_of(&store, &all[2]).await, [s4, s5], "{}", db.backend);

        // The yearly tick has not come since the changes: they wait for it.
        assert!(runs_of(&store, "yearly").await.is_empty(), "{}", db.backend);

        // A tick a second: every change is taken once, by the first tick after it.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        s.tick(Utc::now()).await.unwrap();
        let ticked = runs_of(&store, "every_second").await;
        assert!(!ticked.is_empty(), "{}", db.backend);
        let mut seen = Vec::new();
        for run in &ticked {
            assert_eq!(run.run_type, RunType::Scheduled);
            assert_eq!(run.logical_date % 1_000_000, 0, "{}: runs start on a tick", db.backend);
            seen.extend(snapshots_of(&store, run).await);
        }
        let unique: BTreeSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{}: a snapshot triggered two runs", db.backend);
        assert_eq!(unique, BTreeSet::from([s1, s2, s3, s4, s5]), "{}", db.backend);
        assert!(!unique.contains(&before_watching));

        // At most one run an hour: the first change made one at once; the rest wait for the
        // hour to pass, then go together into one run.
        let spaced = runs_of(&store, "spaced").await;
        assert_eq!(spaced.len(), 1, "{}: min_interval holds later changes", db.backend);
        assert_eq!(snapshots_of(&store, &spaced[0]).await, [s1, s2], "{}", db.backend);
        s.tick(Utc::now() + chrono::Duration::minutes(61)).await.unwrap();
        let spaced = runs_of(&store, "spaced").await;
        assert_eq!(spaced.len(), 2, "{}: the hour passed", db.backend);
        assert_eq!(snapshots_of(&store, &spaced[1]).await, [s3, s4, s5], "{}", db.backend);

        // Housekeeping (each tick's, and any later) forgot the change made before any DAG
        // watched, and keeps those the yearly DAG has yet to consume.
        let later = now_micros() + 2 * assets::LATE_COMMIT_MARGIN;
        assert_eq!(assets::forget_consumed(store.write(), later).await.unwrap(), 0);
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM asset_changes")
            .fetch_one(store.read())
            .await
            .unwrap();
        assert_eq!(kept, 5, "{}", db.backend);
        let asset = lakeward::domain::AssetRef::parse(TABLE).unwrap();
        let yearly = assets::pending(store.read(), "yearly", &asset).await.unwrap();
        assert_eq!(yearly.len(), 5, "{}", db.backend);
        store.close().await;
    }
}

#[tokio::test]
async fn a_run_on_data_hands_its_snapshots_to_templates() {
    let db = common::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let folder = dir.path().join("dags");
    std::fs::create_dir_all(&folder).unwrap();
    let source = r#"
        schedule = { on = ["bronze.events"] }
        [tasks.show]
        kind = "shell"
        command = "echo triggered by {{ triggering_snapshots }}"
    "#;
    std::fs::write(folder.join("report.toml"), source).unwrap();
    let options = HarnessOptions {
        warehouse: Some(warehouse.clone()),
        dags_folder: Some(folder),
        ..HarnessOptions::default()
    };
    let h = Harness::start_with(&db, options).await;
    let tables = Tables::open(&h.store, &warehouse, &Default::default()).await.unwrap();
    // The DAG watches from when the scheduler first loads it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let watched: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM asset_watches")
            .fetch_one(h.store.read())
            .await
            .unwrap();
        if watched > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the DAG was never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snapshot = append(&tables, 7).await;
    let run = loop {
        if let Some(run) = runs_of(&h.store, "report").await.pop() {
            break run;
        }
        assert!(tokio::time::Instant::now() < deadline, "no run on data");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let finished = h.wait(&run, Duration::from_secs(30)).await;
    assert_eq!(finished.state, RunState::Success);
    let ti = h.tasks(&run).await.remove(0);
    let log = h.log_text(&ti).await;
    assert!(
        log.contains(&format!("triggered by {{\"bronze.events\":[{snapshot}]}}")),
        "log: {log}"
    );
    h.stop().await;
}
