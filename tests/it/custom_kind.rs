//! A task kind written in Rust by a user of the library: validated at load time, its fields
//! rendered as templates, its outputs stored with the task instance.

use crate::common;

use std::time::Duration;

use common::{Harness, HarnessOptions};
use lakeward::dag::compile;
use lakeward::domain::{RunState, TaskState};
use lakeward::jobs::{Job, JobContext, JobError, Outputs, Registry, Stage};
use lakeward::scheduler::trigger::RunRequest;
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

impl Job for Count {
    const KIND: &'static str = "count";
    type Config = CountConfig;

    fn validate(&self, config: &CountConfig, _stage: Stage) -> Vec<String> {
        if config.items.is_empty() {
            vec!["`items` must not be empty".into()]
        } else {
            Vec::new()
        }
    }

    async fn run(&self, config: CountConfig, ctx: JobContext) -> Result<Outputs, JobError> {
        ctx.log.info(format!("counting {} items for {}", config.items.len(), config.label));
        let outputs = json!({ "count": config.items.len(), "label": config.label });
        Ok(outputs.as_object().cloned().unwrap())
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
