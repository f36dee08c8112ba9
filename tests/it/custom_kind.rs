//! A task kind written in Rust by a user of the library: validated at load time, its fields
//! rendered as templates, its outputs stored with the task instance.

use crate::common;

use std::time::Duration;

use common::{Harness, HarnessOptions};
use lakeward::dag::compile;
use lakeward::domain::{RunState, TaskState};
use lakeward::jobs::{Job, JobContext, JobError, Progress, Registry, Stage};
use lakeward::scheduler::trigger::RunRequest;
use lakeward::store::tasks;
use serde::Deserialize;
use serde_json::json;

/// Counts items and reports the count as an output.
struct Count;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountConfig {
    items: Vec<String>,
    label: String,
}

/// What `count` publishes; downstream templates read `outputs.<task>.count`.
#[derive(serde::Serialize)]
struct Counted {
    count: usize,
    label: String,
}

impl Job for Count {
    const KIND: &'static str = "count";
    type Config = CountConfig;
    type Output = Counted;

    fn validate(&self, config: &CountConfig, _stage: Stage) -> Vec<String> {
        if config.items.is_empty() {
            vec!["`items` must not be empty".into()]
        } else {
            Vec::new()
        }
    }

    async fn run(&self, config: CountConfig, ctx: JobContext) -> Result<Counted, JobError> {
        ctx.log.info(format!("counting {} items for {}", config.items.len(), config.label));
        Ok(Counted { count: config.items.len(), label: config.label })
    }
}

fn registry() -> Registry {
    let mut registry = Registry::builtin();
    registry.register(Count);
    registry
}

#[test]
fn custom_kinds_are_validated_at_load_time() {
    let source = "[tasks.c]\nkind = \"count\"\nitems = []\nlabel = \"x\"\n";
    let errors = compile("custom.toml", source, "custom", &registry()).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "custom.toml:1:8: task `c` (count): `items` must not be empty"
    );
    let unknown = compile("custom.toml", source, "custom", &Registry::builtin()).unwrap_err();
    assert!(unknown[0].message.starts_with("unknown task kind `count`"), "{unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_kinds_run_with_rendered_fields_and_publish_outputs() {
    let source = r#"
        [tasks.c]
        kind = "count"
        items = ["a", "{{ ds }}"]
        label = "{{ ds }}"

        [tasks.show]
        kind = "shell"
        depends_on = ["c"]
        command = "echo counted {{ outputs.c.count }} for {{ outputs.c.label }}"
    "#;
    let dag = std::sync::Arc::new(compile("custom.toml", source, "custom", &registry()).unwrap());
    for db in common::databases().await {
        let h =
            Harness::start_with(&db, HarnessOptions { registry: registry(), ..Default::default() })
                .await;
        let logical = lakeward::schedule::parse_date("2024-06-01", chrono_tz::UTC).unwrap();
        let run = h.trigger(&dag, RunRequest::manual(logical, Default::default())).await;
        assert_eq!(
            h.wait(&run, Duration::from_secs(30)).await.state,
            RunState::Success,
            "{}",
            db.backend
        );
        let tasks = h.tasks(&run).await;
        let ti = tasks.iter().find(|t| t.task_id == "c").unwrap().clone();
        assert_eq!(ti.state, TaskState::Success);
        let show = tasks.iter().find(|t| t.task_id == "show").unwrap();
        assert_eq!(
            h.log_text(show).await,
            "counted 2 for 2024-06-01\n",
            "downstream templates read outputs"
        );
        assert_eq!(
            serde_json::Value::Object(ti.outputs.clone()),
            json!({"count": 2, "label": "2024-06-01"})
        );
        assert_eq!(h.log_text(&ti).await, "counting 2 items for 2024-06-01\n");
        h.stop().await;
    }
}

/// A long job of the kind streams are: it reports progress until asked to stop.
struct Follow;

/// When each `follow` job returned, by try: the test measures how fast it stopped.
static STOPPED: std::sync::Mutex<Vec<std::time::Instant>> = std::sync::Mutex::new(Vec::new());

impl Job for Follow {
    const KIND: &'static str = "follow";
    type Config = serde_json::Map<String, serde_json::Value>;
    type Output = ();

    async fn run(&self, _config: Self::Config, ctx: JobContext) -> Result<(), JobError> {
        let mut rows = 0;
        while !ctx.is_cancelled() {
            rows += 10;
            ctx.report_progress(Progress {
                rows: Some(rows),
                bytes: Some(rows * 100),
                message: Some(format!("following, {rows} rows so far")),
            });
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = ctx.cancelled() => {}
            }
        }
        STOPPED.lock().unwrap().push(std::time::Instant::now());
        Err(JobError::Cancelled("asked to stop".into()))
    }
}

/// Progress a running job reports is visible through the API while it runs; marking the task
/// by hand cancels the job, which stops within a second, and its try is recorded as cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_reports_progress_and_stops_when_cancelled() {
    use axum::http::Method;
    use lakeward::domain::Role;
    use lakeward::users::{create_api_token, create_user};

    let mut registry = Registry::builtin();
    registry.register(Follow);
    let source = "[tasks.follow]\nkind = \"follow\"\n";
    let dag = std::sync::Arc::new(compile("follow.toml", source, "follow", &registry).unwrap());
    for db in common::databases().await {
        let options = HarnessOptions { registry: registry.clone(), ..Default::default() };
        let h = Harness::start_with(&db, options).await;
        let router = lakeward::web::app(lakeward::web::AppState::new(
            h.store.clone(),
            h.versions.clone(),
            &lakeward::config::Config::default(),
        ));
        create_user(&h.store, "robot", "robot-password", Role::Admin).await.unwrap();
        let token = create_api_token(&h.store, "robot", "tests", None).await.unwrap();
        let logical = lakeward::schedule::parse_date("2024-06-01", chrono_tz::UTC).unwrap();
        let run = h.trigger(&dag, RunRequest::manual(logical, Default::default())).await;
        let path = format!("/api/v1/dags/follow/runs/{}/tasks/follow", run.run_id);

        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let progress = loop {
            let request = common::web::api_request(Method::GET, &path, &token, None);
            let task = common::web::send(&router, request).await.json();
            if task["progress"]["rows"].as_u64().unwrap_or(0) >= 20 {
                break task;
            }
            assert!(std::time::Instant::now() < deadline, "no progress shown: {task}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(progress["state"], "running", "{}", db.backend);
        assert!(progress["progress"]["message"].as_str().unwrap().starts_with("following, "));
        assert!(progress["progress_at"].is_string(), "{progress}");
        let page = path.trim_start_matches("/api/v1");
        let request = common::web::api_request(Method::GET, page, &token, None);
        let html = common::web::send(&router, request).await.body;
        assert!(html.contains("id=\"progress\"") && html.contains(" rows · "), "{html}");

        let before = STOPPED.lock().unwrap().len();
        let ti = tasks::get(h.store.read(), run.pk, "follow", -1).await.unwrap().unwrap();
        let marked = std::time::Instant::now();
        lakeward::scheduler::control::mark_task(&h.store, &ti, TaskState::Failed).await.unwrap();
        let stopped = loop {
            if let Some(at) = STOPPED.lock().unwrap().get(before) {
                break *at;
            }
            assert!(marked.elapsed() < Duration::from_secs(5), "the job never stopped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // The worker notices at its next heartbeat (every 200 ms here); the job then stops.
        let took = stopped.duration_since(marked);
        assert!(took < Duration::from_secs(1), "{}: stopped after {took:?}", db.backend);
        let tries = tasks::tries(h.store.read(), ti.id).await.unwrap();
        assert_eq!(tries.len(), 1);
        assert_eq!(tries[0].state, "cancelled", "{}: {tries:?}", db.backend);
        let ti = tasks::get(h.store.read(), run.pk, "follow", -1).await.unwrap().unwrap();
        assert_eq!(ti.state, TaskState::Failed, "marked failed by hand");
        h.stop().await;
    }
}
