//! Dynamic task mapping end to end on SQLite and Postgres: a task mapped over a list an
//! upstream publishes (and one over a param list) runs one instance per item with its `item`
//! and `index`; the reducer downstream waits for all and reads their outputs as a list;
//! trigger rules apply to the set; clearing one instance re-runs only it; an empty list skips
//! the task, a list over the cap or not a list fails it with a clear message; the run page
//! folds the instances under one row.

use std::time::Duration;

use lakeward::domain::{RunState, TaskState};
use lakeward::store::TaskInstanceRow;

use crate::common::{self, Harness, HarnessOptions};

fn instances<'a>(tis: &'a [TaskInstanceRow], task: &str) -> Vec<&'a TaskInstanceRow> {
    let mut found: Vec<&TaskInstanceRow> = tis.iter().filter(|t| t.task_id == task).collect();
    found.sort_by_key(|t| t.map_index);
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_fans_out_over_a_runtime_list_and_fans_back_in() {
    for db in common::databases().await {
        let h = Harness::start(&db).await;
        let dag = common::dag(
            r#"
            id = "fan"
            [params]
            regions = { type = "array", default = ["eu", "us", "apac"] }
            [tasks.list_files]
            kind = "shell"
            command = '''echo '{"files": ["a.csv", "b.csv", "c.csv", "d.csv"]}' > "$LAKEWARD_OUTPUTS"'''
            [tasks.process]
            kind = "shell"
            depends_on = ["list_files"]
            for_each = "{{ outputs.list_files.files }}"
            command = '''printf '{"name": "%s-%s"}' {{ item }} {{ index }} > "$LAKEWARD_OUTPUTS"'''
            [tasks.per_region]
            kind = "shell"
            for_each = "{{ params.regions }}"
            command = "echo region {{ item }}"
            [tasks.reduce]
            kind = "shell"
            depends_on = ["process", "per_region"]
            command = '''printf '{"names": "%s"}' {{ outputs.process | map(attribute="name") | join(",") }} > "$LAKEWARD_OUTPUTS"'''
            "#,
        );
        let tis = h.run_to_success(&dag, Duration::from_secs(60)).await;
        let process = instances(&tis, "process");
        let indexes: Vec<i64> = process.iter().map(|t| t.map_index).collect();
        assert_eq!(indexes, [0, 1, 2, 3], "{}", db.backend);
        assert_eq!(process[2].outputs["name"], "c.csv-2");
        assert_eq!(instances(&tis, "per_region").len(), 3);
        let region = h.log_text(instances(&tis, "per_region")[1]).await;
        assert!(region.contains("region us"), "{region}");
        let reduce = instances(&tis, "reduce");
        assert_eq!(reduce.len(), 1);
        assert_eq!(reduce[0].map_index, -1);
        assert_eq!(reduce[0].outputs["names"], "a.csv-0,b.csv-1,c.csv-2,d.csv-3");
        // The reducer started after the last mapped instance ended.
        let last = process.iter().filter_map(|t| t.ended_at).max().unwrap();
        assert!(reduce[0].started_at.unwrap() >= last);

        // The run page folds the instances under one row; each has its own page and log.
        let (router, token) = common::web::viewer_router(&h).await;
        let run_id = &tis[0].run_pk;
        let run = lakeward::store::runs::by_pk(h.store.read(), *run_id).await.unwrap().unwrap();
        let path = format!("/dags/fan/runs/{}", run.run_id);
        let request = common::web::api_request(axum::http::Method::GET, &path, &token, None);
        let page = common::web::send(&router, request).await;
        assert!(page.body.contains("id=\"mapped-process\""), "{}", page.body);
        assert!(page.body.contains("4 mapped instances: 4 success"), "{}", page.body);
        let instance = format!("{path}/tasks/process%5B2%5D");
        let request = common::web::api_request(axum::http::Method::GET, &instance, &token, None);
        let page = common::web::send(&router, request).await;
        assert_eq!(page.status.as_u16(), 200, "{}", page.body);
        assert!(page.body.contains("process[2]"), "{}", page.body);
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_instance_is_cleared_alone_and_lists_are_checked() {
    for db in common::databases().await {
        let options = HarnessOptions { max_map_length: 5, ..HarnessOptions::default() };
        let h = Harness::start_with(&db, options).await;
        let flag = tempfile::tempdir().unwrap();
        let flag = flag.path().join("ready");
        let dag = common::dag(&format!(
            r#"
            id = "partly"
            [tasks.work]
            kind = "shell"
            for_each = [0, 1, 2]
            command = "test {{{{ item }}}} != 1 || test -e {flag}"
            [tasks.after]
            kind = "noop"
            depends_on = ["work"]
            "#,
            flag = flag.display()
        ));
        let run = h.trigger(&dag, common::manual(serde_json::json!({}))).await;
        let done = h.wait(&run, Duration::from_secs(60)).await;
        assert_eq!(done.state, RunState::Failed, "{}", db.backend);
        let tis = h.tasks(&run).await;
        let work: Vec<TaskState> = instances(&tis, "work").iter().map(|t| t.state).collect();
        assert_eq!(work, [TaskState::Success, TaskState::Failed, TaskState::Success]);
        assert_eq!(instances(&tis, "after")[0].state, TaskState::UpstreamFailed);

        std::fs::write(&flag, "").unwrap();
        let cleared =
            lakeward::scheduler::control::clear(&h.store, &dag, &done, "work[1]", true).await;
        assert_eq!(cleared.unwrap(), ["work[1]", "after"]);
        let done = h.wait(&run, Duration::from_secs(60)).await;
        assert_eq!(done.state, RunState::Success);
        let tis = h.tasks(&run).await;
        let tries: Vec<i64> = instances(&tis, "work").iter().map(|t| t.try_number).collect();
        assert_eq!(tries, [1, 2, 1], "only the cleared instance ran again");

        // An empty list skips the task (and its downstream); too long a list, or something
        // that is not a list, fails it and says why.
        let lists = common::dag(
            r#"
            id = "lists"
            [params]
            items = { type = "array", default = [] }
            [tasks.mapped]
            kind = "noop"
            for_each = "{{ params.items }}"
            [tasks.next]
            kind = "noop"
            depends_on = ["mapped"]
            [tasks.not_a_list]
            kind = "noop"
            for_each = "{{ params.items | length }}"
            "#,
        );
        let outcome = |items: serde_json::Value| {
            let h = &h;
            let lists = lists.clone();
            async move {
                let run = h.trigger(&lists, common::manual(serde_json::json!({ "items": items })));
                let run = h.wait(&run.await, Duration::from_secs(60)).await;
                (run.state, h.tasks(&run).await)
            }
        };
        let (state, tis) = outcome(serde_json::json!([])).await;
        assert_eq!(instances(&tis, "mapped")[0].state, TaskState::Skipped);
        assert_eq!(instances(&tis, "next")[0].state, TaskState::Skipped);
        let not_a_list = instances(&tis, "not_a_list")[0];
        assert_eq!((state, not_a_list.state), (RunState::Failed, TaskState::Failed));
        let error = not_a_list.error.clone().unwrap();
        assert!(error.contains("gave a number, not a list"), "{error}");

        let (_, tis) = outcome(serde_json::json!([1, 2, 3, 4, 5, 6])).await;
        let mapped = instances(&tis, "mapped");
        assert_eq!((mapped.len(), mapped[0].state), (1, TaskState::Failed));
        let error = mapped[0].error.clone().unwrap();
        assert!(error.contains("6 items, more than [scheduler] max_map_length = 5"), "{error}");
        assert_eq!(instances(&tis, "next")[0].state, TaskState::UpstreamFailed);
        h.stop().await;
    }
}
