//! Scheduler and workers together, against SQLite and the real Postgres: dependency order,
//! failure propagation, templates, retries, timeouts, dead workers and DAG folder reloads.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{dag, manual, Harness, HarnessOptions};
use lakeward::domain::{RunState, TaskState};
use lakeward::scheduler::trigger::RunRequest;
use lakeward::store::TaskInstanceRow;
use lakeward::store::{dags, logs, runs, tasks};
use lakeward::time::now_micros;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);

fn by_task(tis: Vec<TaskInstanceRow>) -> HashMap<String, TaskInstanceRow> {
    tis.into_iter().map(|t| (t.task_id.clone(), t)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diamond_runs_in_dependency_order() {
    let diamond = dag(r#"
        [tasks.a]
        kind = "shell"
        command = "sleep 0.05"
        [tasks.b]
        kind = "shell"
        command = "sleep 0.05"
        depends_on = ["a"]
        [tasks.c]
        kind = "noop"
        depends_on = ["a"]
        [tasks.d]
        kind = "noop"
        depends_on = ["b", "c"]
    "#);
    for db in common::databases().await {
        let h = Harness::start(&db).await;
        let run = h.trigger(&diamond, manual(json!({}))).await;
        let done = h.wait(&run, LIMIT).await;
        assert_eq!(done.state, RunState::Success, "{}", db.backend);
        let tis = by_task(h.tasks(&run).await);
        for (task, ups) in [("b", &["a"][..]), ("c", &["a"]), ("d", &["b", "c"])] {
            for up in ups {
                assert!(
                    tis[task].started_at.unwrap() >= tis[*up].ended_at.unwrap(),
                    "{}: {task} started before {up} ended",
                    db.backend
                );
            }
        }
        assert!(tis.values().all(|t| t.state == TaskState::Success && t.try_number == 1));
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_propagates_downstream_per_trigger_rule() {
    let failing = dag(r#"
        [tasks.extract]
        kind = "shell"
        command = "echo about to fail; exit 3"
        [tasks.transform]
        kind = "noop"
        depends_on = ["extract"]
        [tasks.load]
        kind = "noop"
        depends_on = ["transform"]
        [tasks.cleanup]
        kind = "noop"
        depends_on = ["extract"]
        trigger_rule = "all_done"
        [tasks.alert]
        kind = "noop"
        depends_on = ["extract"]
        trigger_rule = "one_failed"
        [tasks.celebrate]
        kind = "noop"
        depends_on = ["cleanup"]
        trigger_rule = "one_failed"
    "#);
    for db in common::databases().await {
        let h = Harness::start(&db).await;
        let run = h.trigger(&failing, manual(json!({}))).await;
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Failed, "{}", db.backend);
        let tis = by_task(h.tasks(&run).await);
        let state = |t: &str| tis[t].state;
        assert_eq!(state("extract"), TaskState::Failed);
        assert_eq!(tis["extract"].exit_code, Some(3));
        assert_eq!(state("transform"), TaskState::UpstreamFailed);
        assert_eq!(state("load"), TaskState::UpstreamFailed);
        assert_eq!(state("cleanup"), TaskState::Success);
        assert_eq!(state("alert"), TaskState::Success);
        assert_eq!(state("celebrate"), TaskState::Skipped);
        let log = h.log_text(&tis["extract"]).await;
        assert!(
            log.contains("about to fail\n") && log.contains("command exited with code 3"),
            "{log}"
        );
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_see_the_run_dates_and_params() {
    let templated = dag(r#"
        schedule = "0 2 * * *"
        timezone = "Europe/Paris"
        [params]
        orders = { type = "integer", default = 5000 }
        region = { type = "string", default = "eu" }
        [tasks.show]
        kind = "shell"
        command = "echo {{ ds }} {{ ds_nodash }} {{ params.orders }} {{ dag.id }} {{ task.id }} {{ run_id }}; echo $START $REGION"
        env = { START = "{{ data_interval_start }}", REGION = "{{ params.region }}" }
    "#);
    for db in common::databases().await {
        let h = Harness::start(&db).await;
        let logical =
            lakeward::schedule::parse_date("2024-03-01", chrono_tz::Europe::Paris).unwrap();
        let params = json!({"orders": 42}).as_object().cloned().unwrap();
        let run = h.trigger(&templated, RunRequest::manual(logical, params)).await;
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Success, "{}", db.backend);
        let tis = h.tasks(&run).await;
        assert_eq!(
            h.log_text(&tis[0]).await,
            "2024-03-01 20240301 42 test_dag show manual__2024-02-29T23:00:00Z\n\
             2024-03-01T00:00:00+01:00 eu\n"
        );
        assert_eq!(run.params, *json!({"orders": 42, "region": "eu"}).as_object().unwrap());
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_try_is_retried_and_each_try_keeps_its_log() {
    for db in common::databases().await {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let flaky = dag(&format!(
            r#"
            [tasks.flaky]
            kind = "shell"
            retries = 2
            retry_delay = "0s"
            command = "if [ -f {m} ]; then echo second time lucky; else touch {m}; echo first try fails; exit 1; fi"
            "#,
            m = marker.display()
        ));
        let h = Harness::start(&db).await;
        let run = h.trigger(&flaky, manual(json!({}))).await;
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Success, "{}", db.backend);
        let ti = h.tasks(&run).await.remove(0);
        assert_eq!((ti.state, ti.try_number, ti.max_tries), (TaskState::Success, 2, 3));
        let first = logs::read(h.store.read(), ti.id, Some(1), 0, 100).await.unwrap();
        let second = logs::read(h.store.read(), ti.id, Some(2), 0, 100).await.unwrap();
        assert_eq!(first[0].line, "first try fails");
        assert_eq!(
            second.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            ["second time lucky"]
        );
        // Each try keeps its own timing after the next one ran.
        let tries = tasks::tries(h.store.read(), ti.id).await.unwrap();
        assert_eq!(tries.len(), 2, "{}", db.backend);
        assert_eq!((tries[0].try_number, tries[0].state.as_str()), (1, "up_for_retry"));
        assert_eq!((tries[1].try_number, tries[1].state.as_str()), (2, "success"));
        let first_end = tries[0].ended_at.expect("the first try's end is kept");
        assert!(tries[0].started_at <= first_end && first_end <= tries[1].started_at);
        assert_eq!(tries[1].ended_at, ti.ended_at);
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_whole_command() {
    for db in common::databases().await {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let slow = dag(&format!(
            r#"
            [tasks.slow]
            kind = "shell"
            timeout = "300ms"
            command = "sleep 30 & echo $! > {}; wait"
            "#,
            pid_file.display()
        ));
        let h = Harness::start(&db).await;
        let started = std::time::Instant::now();
        let run = h.trigger(&slow, manual(json!({}))).await;
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Failed, "{}", db.backend);
        assert!(started.elapsed() < Duration::from_secs(10));
        let ti = h.tasks(&run).await.remove(0);
        assert!(
            ti.error.as_deref().unwrap_or_default().starts_with("timed out after 300ms"),
            "{ti:?}"
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap_or_default();
        assert!(
            status.is_empty() || status.contains("State:\tZ"),
            "the backgrounded sleep survived its task: {status}"
        );
        h.stop().await;
    }
}

/// A worker that claimed a task and went silent: after the heartbeat timeout the try is failed
/// and the task is retried by a live worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_s_task_is_retried_elsewhere() {
    let one = dag(r#"
        [tasks.only]
        kind = "shell"
        command = "echo ran by a live worker"
        retries = 1
        retry_delay = "0s"
    "#);
    for db in common::databases().await {
        // Claim the task as a "ghost" worker before the real worker exists.
        let store = lakeward::store::Store::open(&db.url).await.unwrap();
        let versions = lakeward::versions::DagVersions::new(
            store.clone(),
            lakeward::jobs::Registry::builtin(),
        );
        dags::register(store.write(), &(&*one).into(), now_micros()).await.unwrap();
        versions.insert(one.clone());
        let run = lakeward::scheduler::trigger::create_run(&store, &one, manual(json!({})))
            .await
            .unwrap();
        let ti = tasks::of_runs(store.read(), &[run.pk]).await.unwrap().remove(0);
        runs::set_state(store.write(), run.pk, RunState::Queued, RunState::Running, now_micros())
            .await
            .unwrap();
        tasks::queue(store.write(), &[ti.id], now_micros()).await.unwrap();
        let ghost = tasks::claim(store.write(), "ghost", &["default".into()], 1, now_micros())
            .await
            .unwrap();
        assert_eq!(ghost.len(), 1);

        let options =
            HarnessOptions { heartbeat_timeout: Duration::from_millis(500), ..Default::default() };
        let h = Harness::start_with(&db, options).await;
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Success, "{}", db.backend);
        let ti = h.tasks(&run).await.remove(0);
        assert_eq!((ti.state, ti.try_number), (TaskState::Success, 2));
        let first = logs::read(h.store.read(), ti.id, Some(1), 0, 10).await.unwrap();
        assert!(first[0].line.contains("worker ghost stopped heartbeating"), "{first:?}");
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_folder_changes_take_effect_while_running() {
    for db in common::databases().await {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("hello.toml");
        let write = |text: &str| std::fs::write(&file, text).unwrap();
        write("schedule = \"@once\"\nstart_date = \"2024-01-01\"\n[tasks.hi]\nkind = \"noop\"\n");
        // Housekeeping once an hour: only the folder's file notifications can tell the
        // scheduler of the changes below.
        let options = HarnessOptions {
            dags_folder: Some(folder.path().to_path_buf()),
            dag_refresh_interval: Duration::from_secs(3600),
            ..Default::default()
        };
        let h = Harness::start_with(&db, options).await;
        eventually(&h.store, db.backend, "hello ran once").await;
        let second = folder.path().join("team/second.toml");
        std::fs::create_dir(folder.path().join("team")).unwrap();
        std::fs::write(&second, "[tasks.x]\nkind = \"noop\"\n").unwrap();
        eventually(&h.store, db.backend, "second is registered").await;
        write("[tasks.hi]\nkind = \"noop\"\n[tasks.there]\nkind = \"noop\"\n");
        eventually(&h.store, db.backend, "hello has a new version").await;
        write("[tasks.hi]\nkind = \"nope\"\n");
        eventually(&h.store, db.backend, "hello.toml has an import error").await;
        std::fs::remove_file(&file).unwrap();
        eventually(&h.store, db.backend, "hello is inactive").await;
        h.stop().await;
    }
}

/// `@continuous`: each run starts once the previous one has ended (never two at once), with no
/// gap beyond the scheduler's reaction; `keep_runs` deletes the finished runs beyond the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_dag_runs_back_to_back_one_at_a_time_and_keeps_its_newest_runs() {
    for db in common::databases().await {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(
            folder.path().join("stream.toml"),
            "schedule = \"@continuous\"\nkeep_runs = 3\n\
             [tasks.tick]\nkind = \"shell\"\ncommand = \"sleep 0.1\"\n",
        )
        .unwrap();
        let options =
            HarnessOptions { dags_folder: Some(folder.path().to_path_buf()), ..Default::default() };
        let h = Harness::start_with(&db, options).await;
        // Sample the runs while they follow one another: never more than one unfinished.
        let mut most_unfinished = 0;
        let mut finished_seen = std::collections::BTreeSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while finished_seen.len() < 8 {
            assert!(tokio::time::Instant::now() < deadline, "{}: too few runs", db.backend);
            let all = runs::list(h.store.read(), "stream", 100, 0).await.unwrap();
            let unfinished = all.iter().filter(|r| !r.state.is_finished()).count();
            most_unfinished = most_unfinished.max(unfinished);
            finished_seen.extend(all.iter().filter(|r| r.state.is_finished()).map(|r| r.pk));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        h.stop().await;
        assert_eq!(most_unfinished, 1, "{}: runs overlapped", db.backend);
        let store = lakeward::store::Store::open(&db.url).await.unwrap();
        let left = runs::list(store.read(), "stream", 100, 0).await.unwrap();
        let finished: Vec<_> = left.iter().filter(|r| r.state.is_finished()).collect();
        assert!(left.len() - finished.len() <= 1, "{}: {left:?}", db.backend);
        assert!(finished.iter().all(|r| r.state == RunState::Success), "{}", db.backend);
        // Housekeeping runs every 200 ms here; at most a few runs finished since the last one.
        assert!(left.len() <= 3 + 3, "{}: {} runs kept", db.backend, left.len());
        // Each run's interval starts where the previous one's ended: no time is left out.
        let mut by_date = left.clone();
        by_date.sort_by_key(|r| r.logical_date);
        let mut gaps = Vec::new();
        for pair in by_date.windows(2) {
            assert_eq!(pair[1].interval_start, pair[0].interval_end, "{}", db.backend);
            assert_eq!(pair[1].logical_date, pair[1].interval_end, "{}", db.backend);
            if let Some(ended) = pair[0].ended_at {
                gaps.push(pair[1].created_at - ended);
            }
        }
        // Reported, not asserted: the time from one run's end to the next run's creation.
        eprintln!("{}: gaps between continuous runs (µs): {gaps:?}", db.backend);
        store.close().await;
    }
}

/// Waits up to five seconds for `what` to hold.
async fn eventually(store: &lakeward::store::Store, backend: &str, what: &str) {
    for _ in 0..200 {
        if what_holds(store, what).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{backend}: `{what}` never became true");
}

async fn what_holds(store: &lakeward::store::Store, what: &str) -> bool {
    let dag = dags::get(store.read(), "hello").await.unwrap();
    match what {
        "hello ran once" => {
            let runs = runs::list(store.read(), "hello", 10, 0).await.unwrap();
            runs.len() == 1 && runs[0].state == RunState::Success
        }
        "hello has a new version" => dag.is_some_and(|d| {
            d.version
                == lakeward::dag::compile::version_of(
                    "[tasks.hi]\nkind = \"noop\"\n[tasks.there]\nkind = \"noop\"\n",
                )
        }),
        "hello.toml has an import error" => dags::import_errors(store.read())
            .await
            .unwrap()
            .iter()
            .any(|e| e.message.contains("unknown task kind `nope`")),
        "hello is inactive" => dag.is_some_and(|d| !d.is_active),
        "second is registered" => dags::get(store.read(), "second").await.unwrap().is_some(),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_a_failed_task_reruns_it_and_its_downstreams() {
    for db in common::databases().await {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("fixed");
        let dag = dag(&format!(
            r#"
            [tasks.flaky]
            kind = "shell"
            command = "test -f {}"
            [tasks.after]
            kind = "noop"
            depends_on = ["flaky"]
            [tasks.aside]
            kind = "noop"
            "#,
            marker.display()
        ));
        let h = Harness::start(&db).await;
        let run = h.trigger(&dag, manual(json!({}))).await;
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Failed, "{}", db.backend);

        std::fs::write(&marker, "").unwrap();
        let cleared =
            lakeward::scheduler::control::clear(&h.store, &dag, &run, "flaky", true).await.unwrap();
        assert_eq!(cleared, ["flaky", "after"]);
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Success, "{}", db.backend);
        let tis = by_task(h.tasks(&run).await);
        assert_eq!((tis["flaky"].state, tis["flaky"].try_number), (TaskState::Success, 2));
        assert_eq!(tis["after"].state, TaskState::Success);
        assert_eq!(tis["aside"].try_number, 1, "tasks outside the selection are not re-run");
        let first_try = logs::read(h.store.read(), tis["flaky"].id, Some(1), 0, 10).await.unwrap();
        assert!(first_try.iter().any(|l| l.line.contains("exited with code 1")), "{first_try:?}");

        lakeward::scheduler::control::mark(&h.store, &run, RunState::Failed).await.unwrap();
        assert_eq!(
            runs::by_pk(h.store.read(), run.pk).await.unwrap().unwrap().state,
            RunState::Failed
        );
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_tasks_caps_parallel_tasks_of_a_dag() {
    let mut source = String::from("max_active_tasks = 2\n");
    for i in 0..6 {
        source.push_str(&format!("[tasks.t{i}]\nkind = \"shell\"\ncommand = \"sleep 0.2\"\n"));
    }
    let capped = dag(&source);
    for db in common::databases().await {
        let h = Harness::start(&db).await;
        let run = h.trigger(&capped, manual(json!({}))).await;
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Success, "{}", db.backend);
        let tis = h.tasks(&run).await;
        let most_at_once = tis
            .iter()
            .map(|a| {
                let at = a.started_at.unwrap();
                tis.iter()
                    .filter(|b| b.started_at.unwrap() <= at && at < b.ended_at.unwrap())
                    .count()
            })
            .max()
            .unwrap();
        assert_eq!(
            most_at_once, 2,
            "{}: at most two tasks at once, and two do run together",
            db.backend
        );
        h.stop().await;
    }
}

/// Most task instances running at the same moment.
fn most_at_once(tis: &[TaskInstanceRow]) -> usize {
    tis.iter()
        .map(|a| {
            let at = a.started_at.unwrap();
            tis.iter().filter(|b| b.started_at.unwrap() <= at && at < b.ended_at.unwrap()).count()
        })
        .max()
        .unwrap_or(0)
}

fn dag_named(id: &str, source: &str) -> std::sync::Arc<lakeward::dag::Dag> {
    let registry = lakeward::jobs::Registry::builtin();
    std::sync::Arc::new(lakeward::dag::compile("test.toml", source, id, &registry).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_caps_its_tasks_across_dags() {
    let pooled = |id: &str| {
        let mut source = String::from("[defaults]\npool = \"warehouse\"\n");
        for i in 0..3 {
            source.push_str(&format!("[tasks.t{i}]\nkind = \"shell\"\ncommand = \"sleep 0.2\"\n"));
        }
        dag_named(id, &source)
    };
    let (first, second) = (pooled("loads_a"), pooled("loads_b"));
    let undefined = dag_named("misconfigured", "[tasks.t]\nkind = \"noop\"\npool = \"nope\"\n");
    for db in common::databases().await {
        let options = HarnessOptions {
            pools: [("warehouse".to_string(), 2)].into_iter().collect(),
            ..HarnessOptions::default()
        };
        let h = Harness::start_with(&db, options).await;
        let a = h.trigger(&first, manual(json!({}))).await;
        let b = h.trigger(&second, manual(json!({}))).await;
        assert_eq!(h.wait(&a, LIMIT).await.state, RunState::Success, "{}", db.backend);
        assert_eq!(h.wait(&b, LIMIT).await.state, RunState::Success, "{}", db.backend);
        let mut tis = h.tasks(&a).await;
        tis.extend(h.tasks(&b).await);
        assert_eq!(most_at_once(&tis), 2, "{}: two pool slots over both DAGs", db.backend);

        let bad = h.trigger(&undefined, manual(json!({}))).await;
        assert_eq!(h.wait(&bad, LIMIT).await.state, RunState::Failed, "{}", db.backend);
        let ti = h.tasks(&bad).await.remove(0);
        assert_eq!(ti.state, TaskState::Failed);
        assert!(ti.error.unwrap().contains("pool `nope`, which lakeward.toml does not define"));
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_a_task_lets_the_run_carry_on() {
    let two_step = dag(r#"
        [tasks.extract]
        kind = "shell"
        command = "exit 3"
        [tasks.load]
        kind = "noop"
        depends_on = ["extract"]
        trigger_rule = "none_failed"
    "#);
    for db in common::databases().await {
        let h = Harness::start(&db).await;
        let run = h.trigger(&two_step, manual(json!({}))).await;
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Failed, "{}", db.backend);
        let extract = by_task(h.tasks(&run).await).remove("extract").unwrap();
        lakeward::scheduler::control::mark_task(&h.store, &extract, TaskState::Success)
            .await
            .unwrap();
        // The run is settled again: with extract marked success the run succeeds.
        let done = h.wait(&run, LIMIT).await;
        let tis = by_task(h.tasks(&run).await);
        assert_eq!(tis["extract"].state, TaskState::Success, "{}", db.backend);
        assert_eq!(tis["extract"].try_number, 1, "marking runs nothing");
        assert_eq!(
            done.state,
            RunState::Failed,
            "{}: load stays upstream_failed until cleared",
            db.backend
        );
        assert_eq!(tis["load"].state, TaskState::UpstreamFailed);
        let dag = two_step.clone();
        let run = runs::by_pk(h.store.read(), run.pk).await.unwrap().unwrap();
        lakeward::scheduler::control::clear(&h.store, &dag, &run, "load", false).await.unwrap();
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Success, "{}", db.backend);
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_clean_deletes_only_old_finished_runs_in_batches() {
    let quick = dag("[tasks.say]\nkind = \"shell\"\ncommand = \"echo hello\"\n");
    for db in common::databases().await {
        let h = Harness::start(&db).await;
        let mut runs = Vec::new();
        for day in 1..=5 {
            let date = chrono::NaiveDate::from_ymd_opt(2024, 1, day).unwrap();
            let at = date.and_hms_opt(0, 0, 0).unwrap().and_utc();
            let run = h.trigger(&quick, RunRequest::manual(at, Default::default())).await;
            runs.push(h.wait(&run, LIMIT).await);
        }
        let ti = h.tasks(&runs[0]).await.remove(0);
        assert!(!logs::read(h.store.read(), ti.id, None, 0, 10).await.unwrap().is_empty());
        // Everything ended just now: a cutoff in the past deletes nothing.
        let kept =
            lakeward::scheduler::control::clean(&h.store, now_micros() - 60_000_000, 2, |_| {})
                .await
                .unwrap();
        assert_eq!(kept, 0);
        let mut batches = Vec::new();
        let deleted =
            lakeward::scheduler::control::clean(&h.store, now_micros() + 1, 2, |n| batches.push(n))
                .await
                .unwrap();
        assert_eq!(deleted, 5, "{}", db.backend);
        // Batches never exceed the size asked for; a slow delete (a loaded machine) makes
        // them smaller, so only the bound and the total are fixed.
        let sizes: Vec<u64> =
            batches.iter().scan(0, |before, &n| Some(n - std::mem::replace(before, n))).collect();
        assert!(sizes.iter().all(|&n| (1..=2).contains(&n)), "batches of two: {batches:?}");
        assert_eq!(batches.last(), Some(&5), "{batches:?}");
        assert!(runs::by_pk(h.store.read(), runs[0].pk).await.unwrap().is_none());
        assert!(tasks::get(h.store.read(), runs[0].pk, "say", -1).await.unwrap().is_none());
        assert!(logs::read(h.store.read(), ti.id, None, 0, 10).await.unwrap().is_empty());
        assert!(tasks::tries(h.store.read(), ti.id).await.unwrap().is_empty());

        // A run still going is never deleted, however old.
        let slow = dag("[tasks.wait]\nkind = \"shell\"\ncommand = \"sleep 2\"\n");
        let old =
            chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
        let running = h.trigger(&slow, RunRequest::manual(old.and_utc(), Default::default())).await;
        let deleted = lakeward::scheduler::control::clean(&h.store, now_micros() + 1, 2, |_| {})
            .await
            .unwrap();
        assert_eq!(deleted, 0);
        assert!(runs::by_pk(h.store.read(), running.pk).await.unwrap().is_some());
        h.stop().await;
    }
}

/// A worker with two slots never runs more than two tries at once, however many are queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_no_more_tries_than_its_slots() {
    let mut source = String::new();
    for i in 0..8 {
        source.push_str(&format!("[tasks.t{i}]\nkind = \"shell\"\ncommand = \"sleep 0.2\"\n"));
    }
    let wide = dag(&source);
    for db in common::databases().await {
        let h = Harness::start_with(&db, HarnessOptions { slots: 2, ..Default::default() }).await;
        let run = h.trigger(&wide, manual(json!({}))).await;
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Success, "{}", db.backend);
        assert_eq!(most_at_once(&h.tasks(&run).await), 2, "{}", db.backend);
        h.stop().await;
    }
}

/// Marking a running task by hand stops its command at the worker's next heartbeat, like
/// Airflow does, instead of letting it run on with a result nobody will record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_a_running_task_stops_its_command() {
    for db in common::databases().await {
        let dir = tempfile::tempdir().unwrap();
        let ticks = dir.path().join("ticks");
        let endless = dag(&format!(
            "[tasks.endless]\nkind = \"shell\"\ncommand = \"while true; do echo tick >> {}; sleep 0.05; done\"\n",
            ticks.display()
        ));
        let h = Harness::start(&db).await;
        let run = h.trigger(&endless, manual(json!({}))).await;
        let count = || std::fs::read_to_string(&ticks).map(|t| t.lines().count()).unwrap_or(0);
        while count() < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ti = h.tasks(&run).await.remove(0);
        lakeward::scheduler::control::mark_task(&h.store, &ti, TaskState::Failed).await.unwrap();
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Failed, "{}", db.backend);
        tokio::time::sleep(Duration::from_millis(600)).await; // heartbeats every 200 ms
        let stopped_at = count();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(count(), stopped_at, "{}: the marked task's command still runs", db.backend);
        let log = h.log_text(&ti).await;
        assert!(log.contains("no longer this worker's"), "{}: {log}", db.backend);
        h.stop().await;
    }
}

/// A worker shutting down asks its running tries to stop (a shell command gets SIGTERM), then
/// records them as cancelled, not failed, and the tasks are retried at once elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_shutting_down_cancels_its_tries_for_a_retry() {
    for db in common::databases().await {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let slow = dag(&format!(
            "[tasks.slow]\nkind = \"shell\"\ncommand = \"sleep 30 & echo $! > {}; wait\"\n",
            pid_file.display()
        ));
        let h = Harness::start(&db).await;
        let run = h.trigger(&slow, manual(json!({}))).await;
        while !pid_file.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let store = h.store.clone();
        let stopping = std::time::Instant::now();
        h.stop().await;
        assert!(stopping.elapsed() < Duration::from_secs(5), "{}", db.backend);
        let store = lakeward::store::Store::open(store.url()).await.unwrap();
        let ti = tasks::get(store.read(), run.pk, "slow", -1).await.unwrap().unwrap();
        // The scheduler may already have queued the retry before it stopped too.
        let retried = matches!(ti.state, TaskState::UpForRetry | TaskState::Queued);
        assert!(retried, "{}: {ti:?}", db.backend);
        assert!(ti.next_try_at.is_some_and(|at| at <= now_micros()), "retried at once");
        let tries = tasks::tries(store.read(), ti.id).await.unwrap();
        assert_eq!(tries[0].state, "cancelled", "{}: {tries:?}", db.backend);
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap_or_default();
        assert!(status.is_empty() || status.contains("State:\tZ"), "the command survived");
        store.close().await;
    }
}

/// A result the database refuses (a trigger here) is retried on its own and holds back no
/// other result, nor the worker; once the database takes it, it is recorded as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_database_refuses_holds_back_no_other() {
    for db in common::databases().await {
        let two = dag("[tasks.refused]\nkind = \"noop\"\n[tasks.fine]\nkind = \"noop\"\n");
        let h = Harness::start(&db).await;
        let refuse: &[&str] = match db.backend {
            "sqlite" => &["CREATE TRIGGER lw_refuse BEFORE UPDATE ON task_tries \
                WHEN NEW.state <> 'running' AND NEW.ti_id IN \
                (SELECT id FROM task_instances WHERE task_id = 'refused') \
                BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"],
            _ => &[
                "CREATE FUNCTION lw_refuse() RETURNS trigger AS $$ BEGIN \
                 IF NEW.state <> 'running' AND NEW.ti_id IN \
                 (SELECT id FROM task_instances WHERE task_id = 'refused') THEN \
                 RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER lw_refuse BEFORE UPDATE ON task_tries \
                 FOR EACH ROW EXECUTE FUNCTION lw_refuse()",
            ],
        };
        for statement in refuse {
            sqlx::query(statement).execute(h.store.write()).await.unwrap();
        }
        let run = h.trigger(&two, manual(json!({}))).await;
        let started = std::time::Instant::now();
        loop {
            let tis = by_task(h.tasks(&run).await);
            if tis["fine"].state == TaskState::Success {
                assert_eq!(tis["refused"].state, TaskState::Running, "{}", db.backend);
                break;
            }
            assert!(started.elapsed() < LIMIT, "{}: {tis:?}", db.backend);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The worker goes on taking work meanwhile.
        let source = "[tasks.other]\nkind = \"noop\"\n";
        let registry = lakeward::jobs::Registry::builtin();
        let other = lakeward::dag::compile("other.toml", source, "other", &registry).unwrap();
        let later = h.trigger(&std::sync::Arc::new(other), manual(json!({}))).await;
        assert_eq!(h.wait(&later, LIMIT).await.state, RunState::Success, "{}", db.backend);
        assert_eq!(
            runs::by_pk(h.store.read(), run.pk).await.unwrap().unwrap().state,
            RunState::Running
        );
        let accept = match db.backend {
            "sqlite" => "DROP TRIGGER lw_refuse",
            _ => "DROP TRIGGER lw_refuse ON task_tries",
        };
        sqlx::query(accept).execute(h.store.write()).await.unwrap();
        assert_eq!(h.wait(&run, LIMIT).await.state, RunState::Success, "{}", db.backend);
        let refused = by_task(h.tasks(&run).await).remove("refused").unwrap();
        assert_eq!(refused.try_number, 1, "{}: recorded, not retried", db.backend);
        h.stop().await;
    }
}

/// A run still going at its DAG's deadline is recorded as late once, while it carries on to
/// its end; `/metrics` counts it, and a DAG that finishes in time records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_is_recorded_once_and_carries_on() {
    for db in common::databases().await {
        let harness = Harness::start(&db).await;
        let late = common::dag(
            r#"
            id = "late"
            deadline = { within = "1s", after = "logical_date" }
            on_failure = "ops"
            [tasks.slow]
            kind = "shell"
            command = "sleep 3"
            "#,
        );
        let run = harness.trigger(&late, common::manual(serde_json::json!({}))).await;
        let started = std::time::Instant::now();
        let missed = loop {
            let now = runs::by_pk(harness.store.read(), run.pk).await.unwrap().unwrap();
            if let Some(at) = now.deadline_missed_at {
                assert_eq!(now.state, RunState::Running, "recorded while the run goes on");
                break at;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the missed deadline was not recorded"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(missed >= run.logical_date + 1_000_000, "not before the deadline");
        let done = harness.wait(&run, Duration::from_secs(30)).await;
        assert_eq!(done.state, RunState::Success, "a missed deadline does not stop the run");
        assert_eq!(done.deadline_missed_at, Some(missed), "recorded once");
        assert_eq!(runs::count_missed_deadlines(harness.store.read()).await.unwrap(), 1);
        // `on_failure` is told (once: the run's success afterwards is told to nobody).
        let told =
            lakeward::store::notifications::of_run(harness.store.read(), "late", &run.run_id);
        let told: Vec<(String, String)> =
            told.await.unwrap().into_iter().map(|n| (n.event, n.channel)).collect();
        assert_eq!(told, [("deadline_missed".to_string(), "ops".to_string())]);
        // The run page says so.
        let state = lakeward::web::AppState::new(
            harness.store.clone(),
            harness.versions.clone(),
            &lakeward::config::Config::default(),
        );
        let router = lakeward::web::app(state);
        let role = lakeward::domain::Role::Viewer;
        lakeward::users::create_user(&harness.store, "eve", "eve-password-1", role).await.unwrap();
        let token =
            lakeward::users::create_api_token(&harness.store, "eve", "t", None).await.unwrap();
        let path = format!("/dags/late/runs/{}", done.run_id);
        let request = common::web::api_request(axum::http::Method::GET, &path, &token, None);
        let page = common::web::send(&router, request).await;
        assert!(page.body.contains("id=\"run-deadline\""), "{}", page.body);
        assert!(page.body.contains("id=\"notifications\""), "{}", page.body);
        assert!(page.body.contains("deadline missed"), "{}", page.body);

        let on_time = common::dag(
            r#"
            id = "on_time"
            deadline = "1h"
            [tasks.quick]
            kind = "noop"
            "#,
        );
        let run = harness.trigger(&on_time, common::manual(serde_json::json!({}))).await;
        let done = harness.wait(&run, Duration::from_secs(30)).await;
        assert_eq!(
            (done.state, done.deadline_missed_at),
            (RunState::Success, None),
            "{}",
            db.backend
        );
        harness.stop().await;
    }
}
