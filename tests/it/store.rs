//! The store against SQLite and the real Postgres: uniqueness, atomic claims, guarded results,
//! logs, DAG sync and concurrent migration.

use crate::common;

use std::collections::HashSet;

use lakeward::domain::{RunType, TaskState};
use lakeward::store::{dags, finished, logs, processes, runs, stats, tasks};
use lakeward::store::{DagRecord, DurationsBy, NewRun, Store, TaskOutcome};
use lakeward::time::now_micros;

fn new_run(dag_id: &str, logical_date: i64, tasks: usize) -> NewRun {
    NewRun {
        dag_id: dag_id.into(),
        run_id: format!("manual__{logical_date}"),
        version: "v1".into(),
        run_type: RunType::Manual,
        logical_date,
        interval_start: logical_date,
        interval_end: logical_date,
        params: Default::default(),
        tasks: (0..tasks).map(|i| (format!("t{i}"), "default".to_string(), 2)).collect(),
    }
}

/// A new run of `count` tasks, all queued: its key and the task instances' ids.
async fn queued_run(store: &Store, dag_id: &str, count: usize) -> (i64, Vec<i64>) {
    let run = runs::create(store.write(), &new_run(dag_id, 1, count), now_micros())
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<i64> =
        tasks::of_runs(store.read(), &[run]).await.unwrap().iter().map(|t| t.id).collect();
    assert_eq!(tasks::queue(store.write(), &ids, now_micros()).await.unwrap(), ids.len() as u64);
    (run, ids)
}

#[tokio::test]
async fn one_run_per_dag_and_logical_date() {
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        let first =
            runs::create(store.write(), &new_run("etl", 1_000, 3), now_micros()).await.unwrap();
        assert!(first.is_some(), "{}", db.backend);
        let mut again = new_run("etl", 1_000, 3);
        again.run_id = "another_id".into();
        assert_eq!(
            runs::create(store.write(), &again, now_micros()).await.unwrap(),
            None,
            "{}",
            db.backend
        );
        assert!(runs::create(store.write(), &new_run("other", 1_000, 1), now_micros())
            .await
            .unwrap()
            .is_some());
        let tis = tasks::of_runs(store.read(), &[first.unwrap()]).await.unwrap();
        assert_eq!(tis.len(), 3);
        assert!(tis.iter().all(|t| t.state == TaskState::Scheduled && t.try_number == 0));
    }
}

/// The run count pagers read (kept by triggers) follows every create, refused duplicate,
/// rolled-back create and delete, and agrees with counting the rows.
#[tokio::test]
async fn run_counts_follow_creates_and_deletes() {
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        let count = |dag: &'static str| {
            let store = store.clone();
            async move { stats::count_runs(store.read(), dag).await.unwrap() }
        };
        assert_eq!(count("counted").await, 0, "{}", db.backend);
        let mut pks = Vec::new();
        for date in 0..5 {
            let run = new_run("counted", date, 2);
            pks.push(runs::create(store.write(), &run, 1).await.unwrap().unwrap());
            assert_eq!(runs::create(store.write(), &run, 1).await.unwrap(), None);
        }
        runs::create(store.write(), &new_run("other", 0, 1), 1).await.unwrap().unwrap();
        let mut tx = store.begin().await.unwrap();
        runs::create(&mut *tx, &new_run("counted", 99, 1), 1).await.unwrap().unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(
            count("counted").await,
            5,
            "{}: duplicates and rollbacks do not count",
            db.backend
        );
        runs::delete(store.write(), &pks[..3]).await.unwrap();
        assert_eq!(count("counted").await, 2, "{}", db.backend);
        assert_eq!(count("other").await, 1, "{}", db.backend);
        let rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM dag_runs WHERE dag_id = 'counted'")
                .fetch_one(store.read())
                .await
                .unwrap();
        assert_eq!(rows, 2, "{}", db.backend);
    }
}

/// `/metrics`' counters of finished work are the same whether the work is rolled up or counted
/// on the fly, a roll-up in bounded steps adds each instance once (also when repeated), and
/// deleting the runs afterwards does not lower them.
#[tokio::test]
async fn finished_counters_add_each_finish_once_and_never_go_down() {
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        let mut pks = Vec::new();
        for date in 0..4 {
            pks.push(
                runs::create(store.write(), &new_run("done", date, 3), 1).await.unwrap().unwrap(),
            );
        }
        // Run `date` ends at 1,000 + date s; its tasks ran 0.2 s, 2 s and never (skipped).
        let second = 1_000_000_i64;
        for (date, pk) in pks.iter().enumerate() {
            let end = (1_000 + date as i64) * second;
            let state = if date == 3 { "failed" } else { "success" };
            for (task, started, task_state) in [
                ("t0", Some(end - second / 5), state),
                ("t1", Some(end - 2 * second), "success"),
                ("t2", None, "skipped"),
            ] {
                sqlx::query("UPDATE task_instances SET state = $1, started_at = $2, ended_at = $3 WHERE run_pk = $4 AND task_id = $5")
                    .bind(task_state).bind(started).bind(end).bind(pk).bind(task)
                    .execute(store.write()).await.unwrap();
            }
            sqlx::query("UPDATE dag_runs SET state = $1, ended_at = $2 WHERE id = $3")
                .bind(state)
                .bind(end)
                .bind(pk)
                .execute(store.write())
                .await
                .unwrap();
        }
        let on_the_fly = finished::counts(store.read(), DurationsBy::Task).await.unwrap();
        assert_eq!(on_the_fly.runs.get("success"), Some(&3), "{}", db.backend);
        assert_eq!(on_the_fly.runs.get("failed"), Some(&1), "{}", db.backend);
        let states = on_the_fly.task_states();
        assert_eq!(
            (states["success"], states["failed"], states["skipped"]),
            (7, 1, 4),
            "{}",
            db.backend
        );
        let histograms = on_the_fly.duration_histograms();
        let t0 = histograms.iter().find(|h| h.task_id.as_deref() == Some("t0")).unwrap();
        assert_eq!(
            (t0.count, t0.buckets[0], t0.buckets[1]),
            (4, 0, 4),
            "{}: 0.2 s is in the 0.5 s bucket",
            db.backend
        );
        // Per DAG (the default): the DAG's tasks in one histogram, the same state counts.
        let per_dag = finished::counts(store.read(), DurationsBy::Dag).await.unwrap();
        assert_eq!(per_dag.task_states(), states, "{}", db.backend);
        let [dag] = per_dag.duration_histograms().try_into().unwrap();
        assert_eq!((dag.dag_id.as_str(), dag.task_id), ("done", None), "{}", db.backend);
        assert_eq!(
            (dag.count, dag.buckets[0], dag.buckets[1], dag.buckets[2], dag.buckets[3]),
            (8, 0, 4, 4, 8),
            "{}: t0's 0.2 s and t1's 2 s",
            db.backend
        );

        // Part of the way, in steps of at most 5 instances, then all of it, then again.
        assert!(!finished::roll_up(store.write(), 1_002 * second, 5).await.unwrap());
        // Scrapes while the mark moves one instance at a time: every one exact.
        let rolling = async {
            while !finished::roll_up(store.write(), 1_002 * second, 1).await.unwrap() {
                tokio::task::yield_now().await;
            }
        };
        let scraping = async {
            for _ in 0..20 {
                let counted = finished::counts(store.read(), DurationsBy::Task).await.unwrap();
                assert_eq!(counted, on_the_fly, "{}: while rolling up", db.backend);
            }
        };
        tokio::join!(rolling, scraping);
        assert_eq!(
            finished::counts(store.read(), DurationsBy::Task).await.unwrap(),
            on_the_fly,
            "{}",
            db.backend
        );
        assert!(finished::roll_up(store.write(), 2_000 * second, 5).await.unwrap());
        assert!(finished::roll_up(store.write(), 2_000 * second, 5).await.unwrap());
        assert_eq!(
            finished::counts(store.read(), DurationsBy::Task).await.unwrap(),
            on_the_fly,
            "{}",
            db.backend
        );
        assert_eq!(
            finished::counts(store.read(), DurationsBy::Dag).await.unwrap(),
            per_dag,
            "{}",
            db.backend
        );
        let rolled: i64 =
            sqlx::query_scalar("SELECT CAST(SUM(count) AS BIGINT) FROM finished_tasks")
                .fetch_one(store.read())
                .await
                .unwrap();
        assert_eq!(rolled, 12, "{}: each finish added once", db.backend);

        runs::delete(store.write(), &pks).await.unwrap();
        assert_eq!(
            finished::counts(store.read(), DurationsBy::Task).await.unwrap(),
            on_the_fly,
            "{}",
            db.backend
        );
        assert!(stats::unfinished_runs(store.read()).await.unwrap().is_empty());
    }
}

/// The store's functions take the executor they run on, so several of them (even ones that
/// open a transaction of their own, which nests as a savepoint) make one atomic change.
#[tokio::test]
async fn store_functions_compose_in_one_transaction() {
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        let dag = DagRecord {
            dag_id: "composed".into(),
            file_path: "composed.toml".into(),
            version: "v1".into(),
            source: String::new(),
            description: None,
            schedule: None,
            tags: vec![],
            paused_on_creation: false,
        };
        for commit in [false, true] {
            let mut tx = store.begin().await.unwrap();
            dags::register(&mut *tx, &dag, 1).await.unwrap();
            let pk = runs::create(&mut *tx, &new_run("composed", 7, 2), 1).await.unwrap().unwrap();
            let ids: Vec<i64> =
                tasks::of_runs(&mut *tx, &[pk]).await.unwrap().iter().map(|t| t.id).collect();
            assert_eq!(tasks::queue(&mut *tx, &ids, 2).await.unwrap(), 2, "{}", db.backend);
            // The transaction sees its own writes; nobody else does until it commits.
            assert!(runs::by_pk(&mut *tx, pk).await.unwrap().is_some());
            assert!(runs::by_pk(store.read(), pk).await.unwrap().is_none(), "{}", db.backend);
            if commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            let run = runs::at(store.read(), "composed", 7).await.unwrap();
            let dag_row = dags::get(store.read(), "composed").await.unwrap();
            assert_eq!(run.is_some(), commit, "{}: run after commit={commit}", db.backend);
            assert_eq!(dag_row.is_some(), commit, "{}: dag after commit={commit}", db.backend);
            if let Some(run) = run {
                let queued = tasks::of_runs(store.read(), &[run.pk]).await.unwrap();
                assert!(queued.iter().all(|t| t.state == TaskState::Queued), "{}", db.backend);
            }
        }
    }
}

/// Rows map with derived `FromRow`: a stored value the row type cannot hold is reported as a
/// corrupt value that names its column, not as a database failure.
#[tokio::test]
async fn a_stored_value_of_no_known_kind_is_reported_with_its_column() {
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        let pk = runs::create(store.write(), &new_run("odd", 1, 1), 1).await.unwrap().unwrap();
        sqlx::query("UPDATE dag_runs SET state = 'paused_forever' WHERE id = $1")
            .bind(pk)
            .execute(store.write())
            .await
            .unwrap();
        let error = runs::by_pk(store.read(), pk).await.unwrap_err();
        assert!(matches!(error, lakeward::store::StoreError::Corrupt(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("state") && message.contains("paused_forever"), "{message}");
        assert!(!error.is_unavailable());
    }
}

/// Several workers, each with its own connection pool, race to claim one queue: every task
/// instance must be claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_workers_never_claim_the_same_task_twice() {
    const TASKS: usize = 400;
    const WORKERS: usize = 6;
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        let (run, queued) = queued_run(&store, "race", TASKS).await;
        let mut claimers = Vec::new();
        for w in 0..WORKERS {
            let url = db.url.clone();
            claimers.push(tokio::spawn(async move {
                let store = Store::connect(&url).await.unwrap();
                let worker = format!("worker-{w}");
                let mut mine = Vec::new();
                loop {
                    let queues = ["default".to_string()];
                    let claimed = tasks::claim(store.write(), &worker, &queues, 7, now_micros())
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.iter().map(|c| (c.id, c.try_number)));
                }
            }));
        }
        let mut all = Vec::new();
        for claimer in claimers {
            all.extend(claimer.await.unwrap());
        }
        let distinct: HashSet<i64> = all.iter().map(|(id, _)| *id).collect();
        assert_eq!(all.len(), TASKS, "{}: claims {} for {TASKS} tasks", db.backend, all.len());
        assert_eq!(distinct, queued.into_iter().collect(), "{}", db.backend);
        assert!(all.iter().all(|(_, try_number)| *try_number == 1));
        let tis = tasks::of_runs(store.read(), &[run]).await.unwrap();
        assert!(tis.iter().all(|t| t.state == TaskState::Running && t.worker_id.is_some()));
    }
}

/// A worker presumed dead comes back with a result for an old try: it must be discarded.
#[tokio::test]
async fn late_result_of_an_abandoned_try_is_discarded() {
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        let (run, _) = queued_run(&store, "late", 1).await;
        let queues = ["default".to_string()];
        // Stamps follow the queueing time: a claim is never recorded before it.
        let t = now_micros() + 1_000_000;
        let old = tasks::claim(store.write(), "a", &queues, 1, t + 1_000).await.unwrap().remove(0);

        // Worker a goes silent; the scheduler fails its try and the retry is claimed by b.
        let stale = tasks::stale(store.read(), t + 2_000).await.unwrap();
        assert_eq!(stale.len(), 1);
        let retry = TaskOutcome::failure(
            1,
            2,
            Some(std::time::Duration::ZERO),
            "silent".into(),
            None,
            t + 2_000,
        );
        assert!(tasks::fail_stale(store.write(), &stale[0], &retry, t + 2_000, t + 2_000)
            .await
            .unwrap());
        assert_eq!(tasks::requeue_retries(store.write(), &[old.id], t + 3_000).await.unwrap(), 1);
        let new = tasks::claim(store.write(), "b", &queues, 1, t + 3_000).await.unwrap().remove(0);
        assert_eq!(new.try_number, 2);

        let late = TaskOutcome::success(Default::default());
        assert!(
            !tasks::finish(store.write(), &old, "a", &late, t + 4_000).await.unwrap(),
            "{}",
            db.backend
        );
        let failed = TaskOutcome::failure(2, 2, None, "boom".into(), Some(3), t + 5_000);
        assert!(tasks::finish(store.write(), &new, "b", &failed, t + 5_000).await.unwrap());
        let ti = tasks::get(store.read(), run, "t0", -1).await.unwrap().unwrap();
        assert_eq!((ti.state, ti.try_number, ti.exit_code), (TaskState::Failed, 2, Some(3)));
        assert_eq!(ti.error.as_deref(), Some("boom"));
    }
}

/// A worker records the tries that ended and refills their slots in one transaction: each
/// result applies (or not) as it would alone, and the claim skips nothing.
#[tokio::test]
async fn results_and_the_next_claim_share_one_transaction() {
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        let (run, _) = queued_run(&store, "refill", 5).await;
        let queues = ["default".to_string()];
        let t = now_micros() + 1_000_000;
        let first = tasks::claim(store.write(), "w", &queues, 2, t).await.unwrap();
        let done = TaskOutcome::success(Default::default());
        let failed = TaskOutcome::failure(1, 1, None, "boom".into(), Some(2), t + 1_000);
        // Another worker's try is not this worker's to record: its result does not apply.
        let foreign = tasks::claim(store.write(), "x", &queues, 1, t).await.unwrap().remove(0);
        let ended = [(&first[0], &done), (&first[1], &failed), (&foreign, &done)];
        let (applied, next) =
            tasks::finish_and_claim(store.write(), "w", &ended, &queues, 3, t + 1_000)
                .await
                .unwrap();
        assert_eq!(applied, [true, true, false], "{}", db.backend);
        assert_eq!(next.len(), 2, "{}: two tasks were left to claim", db.backend);
        let tis = tasks::of_runs(store.read(), &[run]).await.unwrap();
        let state_of = |id: i64| tis.iter().find(|t| t.id == id).unwrap().state;
        assert_eq!(state_of(first[0].id), TaskState::Success);
        assert_eq!(state_of(first[1].id), TaskState::Failed);
        assert_eq!(state_of(foreign.id), TaskState::Running);
        assert!(next.iter().all(|t| state_of(t.id) == TaskState::Running));
        let tries = tasks::tries(store.read(), first[1].id).await.unwrap();
        assert_eq!((tries.len(), tries[0].state.as_str()), (1, "failed"), "{}", db.backend);
        // Nothing to record and nothing to claim writes nothing.
        let (applied, next) =
            tasks::finish_and_claim(store.write(), "w", &[], &queues, 0, t).await.unwrap();
        assert!(applied.is_empty() && next.is_empty());
    }
}

#[tokio::test]
async fn logs_are_kept_per_try_and_read_incrementally() {
    use lakeward::jobs::{LogLine, Stream};
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        let run = runs::create(store.write(), &new_run("logs", 1, 1), now_micros())
            .await
            .unwrap()
            .unwrap();
        let ti = tasks::of_runs(store.read(), &[run]).await.unwrap()[0].id;
        let line = |text: &str| LogLine { at: 1, stream: Stream::Stdout, text: text.into() };
        let many: Vec<LogLine> = (0..450).map(|i| line(&format!("line {i}"))).collect();
        logs::append(store.write(), ti, 1, &many).await.unwrap();
        logs::append(store.write(), ti, 2, &[line("second try")]).await.unwrap();

        let first = logs::read(store.read(), ti, Some(1), 0, 1000).await.unwrap();
        assert_eq!(first.len(), 450);
        assert_eq!(first[449].line, "line 449");
        let after = logs::read(store.read(), ti, Some(1), first[99].id, 10).await.unwrap();
        assert_eq!(after[0].line, "line 100");
        let second = logs::read(store.read(), ti, Some(2), 0, 1000).await.unwrap();
        assert_eq!(second.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(), vec!["second try"]);
        assert_eq!(logs::read(store.read(), ti, None, 0, 1000).await.unwrap().len(), 451);
    }
}

#[tokio::test]
async fn dag_sync_tracks_files_import_errors_and_keeps_pauses() {
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        let record = |id: &str, version: &str| DagRecord {
            dag_id: id.into(),
            file_path: format!("dags/{id}.toml"),
            version: version.into(),
            source: format!("# {version}"),
            description: None,
            schedule: Some("@daily".into()),
            tags: vec!["t".into()],
            paused_on_creation: id == "paused",
        };
        let errors =
            vec![("dags/broken.toml".to_string(), "dags/broken.toml:1:1: oops".to_string())];
        dags::sync(store.write(), &[record("a", "v1"), record("b", "v1")], &errors, 1)
            .await
            .unwrap();
        assert!(dags::set_paused(store.write(), "a", true).await.unwrap());
        assert!(!dags::set_paused(store.write(), "missing", true).await.unwrap());

        dags::sync(store.write(), &[record("a", "v2")], &[], 2).await.unwrap();
        let dags = dags::list(store.read()).await.unwrap();
        let a = dags.iter().find(|d| d.dag_id == "a").unwrap();
        let b = dags.iter().find(|d| d.dag_id == "b").unwrap();
        assert!(a.is_paused && a.is_active && a.version == "v2" && a.tags == vec!["t"]);
        assert!(!b.is_active, "{}: b's file is gone", db.backend);
        assert!(dags::import_errors(store.read()).await.unwrap().is_empty());
        // Old versions stay readable for the runs that use them.
        assert_eq!(dags::source(store.read(), "a", "v1").await.unwrap().unwrap().1, "# v1");

        // A DAG asking to start paused does, once; unpaused, a new version leaves it so.
        dags::sync(store.write(), &[record("paused", "v1")], &[], 3).await.unwrap();
        assert!(dags::get(store.read(), "paused").await.unwrap().unwrap().is_paused);
        dags::set_paused(store.write(), "paused", false).await.unwrap();
        dags::sync(store.write(), &[record("paused", "v2")], &[], 4).await.unwrap();
        assert!(!dags::get(store.read(), "paused").await.unwrap().unwrap().is_paused);
    }
}

/// Many processes starting at once against one Postgres: migrations run once, nobody fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_start_ups_migrate_once() {
    for db in common::databases().await {
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { Store::open(&url).await })
            })
            .collect();
        for open in opens {
            open.await.unwrap().unwrap_or_else(|e| panic!("{}: {e}", db.backend));
        }
    }
}

/// Workers ask for as many tasks as they have free slots. However Postgres plans the claim,
/// and however many claims race, no claim may return more than it asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_never_takes_more_tasks_than_it_asked_for() {
    const TASKS: usize = 300;
    const WORKERS: usize = 8;
    const SLOTS: usize = 2;
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        queued_run(&store, "slots", TASKS).await;
        let claimers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let url = db.url.clone();
                tokio::spawn(async move {
                    let store = Store::connect(&url).await.unwrap();
                    let queues = ["default".to_string()];
                    let mut sizes = Vec::new();
                    loop {
                        let claimed = tasks::claim(
                            store.write(),
                            &format!("worker-{w}"),
                            &queues,
                            SLOTS,
                            now_micros(),
                        )
                        .await
                        .unwrap();
                        if claimed.is_empty() {
                            return sizes;
                        }
                        sizes.push(claimed.len());
                    }
                })
            })
            .collect();
        let mut sizes = Vec::new();
        for claimer in claimers {
            sizes.extend(claimer.await.unwrap());
        }
        let largest = sizes.iter().copied().max().unwrap_or(0);
        assert!(largest <= SLOTS, "{}: a claim for {SLOTS} took {largest}", db.backend);
        assert_eq!(sizes.iter().sum::<usize>(), TASKS, "{}", db.backend);
    }
}

/// Processes that stopped heartbeating long ago are forgotten; a heartbeat never moves back.
#[tokio::test]
async fn silent_processes_are_forgotten_and_heartbeats_never_go_back() {
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        processes::heartbeat(store.write(), "dead", "worker", "h", 1_000, None).await.unwrap();
        processes::heartbeat(store.write(), "alive", "worker", "h", 9_000, None).await.unwrap();
        // A heartbeat prepared before an outage and sent after it carries an older processes::heartbeat(time.store.write(), "alive", "worker", "h", 5_000, None).await.unwrap();
        assert_eq!(
            processes::latest_heartbeat(store.read(), "worker").await.unwrap(),
            Some(9_000),
            "{}",
            db.backend
        );
        assert_eq!(
            processes::forget_silent(store.write(), 5_000).await.unwrap(),
            1,
            "{}",
            db.backend
        );
        assert_eq!(processes::forget_silent(store.write(), 5_000).await.unwrap(), 0);
        assert_eq!(processes::latest_heartbeat(store.read(), "worker").await.unwrap(), Some(9_000));
    }
}

/// The SQLite and Postgres schemas say the same: the same migrations, tables, columns (type
/// class, nullability, primary key), unique constraints, foreign keys and indexes. A migration
/// added to one dialect and not the other, or written differently, fails here.
#[tokio::test]
async fn the_sqlite_and_postgres_schemas_do_not_drift_apart() {
    use lakeward::store::migrations::{POSTGRES, SQLITE};
    use sqlx::Connection;
    let names = |set: &[(i64, &str, &str)]| {
        set.iter().map(|(v, n, _)| (*v, n.to_string())).collect::<Vec<_>>()
    };
    assert_eq!(names(SQLITE), names(POSTGRES), "the same migrations, in the same order");
    let Some(pg) = common::postgres().await else { return };
    let lite = common::sqlite();
    Store::open(&lite.url).await.unwrap().close().await;
    Store::open(&pg.url).await.unwrap().close().await;

    let mut conn = sqlx::SqliteConnection::connect(&lite.url).await.unwrap();
    let sqlite: Vec<String> = sqlx::query_scalar(
        "SELECT 'column ' || m.name || '.' || p.name || ' ' || \
           CASE WHEN upper(p.type) LIKE '%INT%' THEN 'integer' WHEN upper(p.type) LIKE '%CHAR%' \
                OR upper(p.type) = 'TEXT' THEN 'text' ELSE lower(p.type) END || \
           CASE WHEN p.\"notnull\" = 1 OR p.pk > 0 THEN ' not null' ELSE ' null' END || \
           CASE WHEN p.pk > 0 THEN ' key' ELSE '' END \
         FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%' \
         UNION ALL \
         SELECT 'unique ' || m.name || ' (' || (SELECT group_concat(c.name, ', ') FROM \
           (SELECT name FROM pragma_index_info(l.name) ORDER BY seqno) c) || ')' \
         FROM sqlite_master m JOIN pragma_index_list(m.name) l \
         WHERE m.type = 'table' AND l.origin = 'u' \
         UNION ALL \
         SELECT 'foreign ' || m.name || '.' || f.\"from\" || ' -> ' || f.\"table\" || '.' || f.\"to\" \
         FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table' \
         UNION ALL \
         SELECT 'index ' || name || ' on ' || tbl_name FROM sqlite_master \
         WHERE type = 'index' AND sql IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();

    let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    let postgres: Vec<String> = sqlx::query_scalar(
        "SELECT 'column ' || c.table_name || '.' || c.column_name || ' ' || \
           CASE WHEN c.data_type IN ('integer', 'bigint', 'smallint') THEN 'integer' \
                WHEN c.data_type IN ('text', 'character varying') THEN 'text' ELSE c.data_type END || \
           CASE WHEN c.is_nullable = 'NO' THEN ' not null' ELSE ' null' END || \
           CASE WHEN EXISTS (SELECT 1 FROM information_schema.key_column_usage k \
                JOIN information_schema.table_constraints t ON t.constraint_name = k.constraint_name \
                 AND t.table_schema = k.table_schema \
                WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_schema = c.table_schema \
                  AND k.table_name = c.table_name AND k.column_name = c.column_name) \
                THEN ' key' ELSE '' END \
         FROM information_schema.columns c \
         WHERE c.table_schema = current_schema() AND c.table_name NOT LIKE '_sqlx%' \
         UNION ALL \
         SELECT 'unique ' || r.relname || ' (' || (SELECT string_agg(a.attname, ', ' ORDER BY k.n) \
           FROM unnest(x.conkey) WITH ORDINALITY AS k(attnum, n) \
           JOIN pg_attribute a ON a.attrelid = x.conrelid AND a.attnum = k.attnum) || ')' \
         FROM pg_constraint x JOIN pg_class r ON r.oid = x.conrelid \
         WHERE x.contype = 'u' AND r.relnamespace = current_schema()::regnamespace \
         UNION ALL \
         SELECT 'foreign ' || r.relname || '.' || a.attname || ' -> ' || f.relname || '.' || b.attname \
         FROM pg_constraint x JOIN pg_class r ON r.oid = x.conrelid JOIN pg_class f ON f.oid = x.confrelid \
         JOIN pg_attribute a ON a.attrelid = x.conrelid AND a.attnum = x.conkey[1] \
         JOIN pg_attribute b ON b.attrelid = x.confrelid AND b.attnum = x.confkey[1] \
         WHERE x.contype = 'f' AND r.relnamespace = current_schema()::regnamespace \
         UNION ALL \
         SELECT 'index ' || i.indexname || ' on ' || i.tablename FROM pg_indexes i \
         WHERE i.schemaname = current_schema() AND NOT EXISTS (SELECT 1 FROM pg_constraint x \
           WHERE x.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let sorted = |mut lines: Vec<String>| {
        lines.sort();
        lines
    };
    let (sqlite, postgres) = (sorted(sqlite), sorted(postgres));
    let only = |a: &[String], b: &[String]| {
        a.iter().filter(|l| !b.contains(l)).cloned().collect::<Vec<_>>()
    };
    assert!(
        sqlite == postgres,
        "schemas differ\nonly in SQLite:\n  {}\nonly in Postgres:\n  {}",
        only(&sqlite, &postgres).join("\n  "),
        only(&postgres, &sqlite).join("\n  ")
    );
    assert!(sqlite.iter().any(|l| l.starts_with("column task_instances.progress ")), "{sqlite:?}");
}

/// The SQL console's history: newest first, each text once, the latest hundred per user.
#[tokio::test]
async fn query_history_keeps_each_users_latest_queries() {
    use lakeward::store::queries::{self, QueryRow, KEPT_PER_USER};
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        let row = |user: &str, query: String, outcome: &str, at: i64| QueryRow {
            username: user.into(),
            query,
            ran_at: at,
            outcome: outcome.into(),
            row_count: 1,
            elapsed_us: 10,
            error: (outcome != "ok").then(|| "bad".to_string()),
        };
        let total = KEPT_PER_USER + 20;
        for i in 0..total {
            let outcome = if i % 10 == 0 { "error" } else { "ok" };
            queries::record(store.write(), &row("ana", format!("SELECT {i}"), outcome, i))
                .await
                .unwrap();
        }
        queries::record(store.write(), &row("ana", "SELECT 5".into(), "ok", total)).await.unwrap();
        queries::record(store.write(), &row("ana", "SELECT 5".into(), "ok", total + 1))
            .await
            .unwrap();
        queries::record(store.write(), &row("bo", "SELECT 'bo'".into(), "timeout", 0))
            .await
            .unwrap();

        let recent = queries::recent(store.read(), "ana", 3).await.unwrap();
        let texts: Vec<&str> = recent.iter().map(|r| r.query.as_str()).collect();
        let newest = format!("SELECT {}", total - 1);
        assert_eq!(
            texts,
            ["SELECT 5", newest.as_str(), &format!("SELECT {}", total - 2)],
            "{}",
            db.backend
        );
        let all = queries::recent(store.read(), "ana", 1_000).await.unwrap();
        assert!(all.len() as i64 <= KEPT_PER_USER, "{} kept", all.len());
        assert!(all.iter().all(|r| r.query != "SELECT 0"), "the oldest are forgotten");
        assert_eq!(queries::recent(store.read(), "bo", 10).await.unwrap().len(), 1, "per user");
        let bo = queries::recent(store.read(), "bo", 10).await.unwrap();
        assert_eq!((bo[0].outcome.as_str(), bo[0].error.as_deref()), ("timeout", Some("bad")));
    }
}

/// A page of a DAG's runs is the same whichever end of the history it is counted from (see
/// `runs::list`): every offset and size gives what an `OFFSET` over the runs gives.
#[tokio::test]
async fn run_pages_are_the_runs_an_offset_would_skip_to() {
    for db in common::databases().await {
        let store = Store::open(&db.url).await.unwrap();
        for date in 0..23 {
            runs::create(store.write(), &new_run("paged", date * 10, 1), 1).await.unwrap();
            if date % 7 == 0 {
                runs::create(store.write(), &new_run("other", date * 10 + 5, 1), 1).await.unwrap();
            }
        }
        let all: Vec<i64> =
            runs::list(store.read(), "paged", 100, 0).await.unwrap().iter().map(|r| r.pk).collect();
        assert_eq!(all.len(), 23, "{}", db.backend);
        for limit in [1, 5, 10, 30] {
            for offset in 0..26 {
                let page: Vec<i64> = runs::list(store.read(), "paged", limit, offset)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.pk)
                    .collect();
                let expected: Vec<i64> =
                    all.iter().skip(offset as usize).take(limit as usize).copied().collect();
                assert_eq!(page, expected, "{}: limit {limit}, offset {offset}", db.backend);
            }
        }
    }
}

/// Postgres connections run without JIT compilation (see `Store::connect`): `/metrics`'
/// statement over the roll-up mark spent 230 of its 270 ms compiling at 10M task instances.
#[tokio::test]
async fn postgres_connections_run_without_jit() {
    let Some(db) = common::postgres().await else { return };
    let store = Store::open(&db.url).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = store.read().acquire().await.unwrap();
        let jit: String = sqlx::query_scalar("SHOW jit").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(jit, "off");
        held.push(conn);
    }
}
