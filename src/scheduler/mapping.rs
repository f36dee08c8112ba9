//! Dynamic task mapping: when a mapped task's upstreams let it run, its `for_each` list is
//! computed (from upstream outputs, the run's params, or written in the file) and the task is
//! expanded into one instance per item, each with its `item` and `index`. An empty list skips
//! the task; a list too long (`[scheduler] max_map_length`) or not a list fails it.

use crate::dag::template;
use crate::dag::{Dag, ForEach, Task};
use crate::store::{tasks, RunRow, Store, StoreError};

/// What a mapped task's list turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Expansion {
    /// The items, as JSON texts.
    Items(Vec<String>),
    Empty,
    /// Why there is no list to map over: the task fails with this.
    Invalid(String),
}

/// Computes the list `task` of `run` maps over.
pub async fn expansion(
    store: &Store,
    dag: &Dag,
    run: &RunRow,
    task: &Task,
    max_length: usize,
) -> Result<Expansion, StoreError> {
    let items = match &task.for_each {
        None => return Ok(Expansion::Invalid(format!("task `{}` is not mapped", task.id))),
        Some(ForEach::Items(items)) => items.clone(),
        Some(ForEach::Expression(expr)) => {
            let info = crate::versions::run_info(run, dag);
            let mut vars = template::context(&info, &task.id, 0);
            if expr.contains("outputs") {
                let outputs = tasks::outputs(store.read(), run.pk).await?;
                vars["outputs"] = serde_json::Value::Object(outputs);
            }
            match template::evaluate(expr, &vars) {
                Ok(serde_json::Value::Array(items)) => items,
                Ok(other) => {
                    return Ok(Expansion::Invalid(format!(
                        "for_each `{expr}` gave {}, not a list",
                        kind_of(&other)
                    )))
                }
                Err(e) => return Ok(Expansion::Invalid(format!("for_each `{expr}`: {e}"))),
            }
        }
    };
    Ok(match items.len() {
        0 => Expansion::Empty,
        n if n > max_length => Expansion::Invalid(format!(
            "for_each gave {n} items, more than [scheduler] max_map_length = {max_length}"
        )),
        _ => Expansion::Items(items.iter().map(ToString::to_string).collect()),
    })
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "nothing (null)",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
