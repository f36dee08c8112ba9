//! Templates in task fields: `{{ ds }}`, `{{ params.orders }}`, … rendered per task instance.
//!
//! Every string in a task's kind-specific fields is a template (minijinja syntax). Syntax is
//! checked when the DAG is compiled; rendering happens on the worker just before the task runs,
//! with undefined names treated as errors so a typo never renders as an empty string.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{json, Map, Value};

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env
}

fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Checks that `text` parses as a template.
pub fn check_syntax(text: &str) -> Result<(), String> {
    if !is_template(text) {
        return Ok(());
    }
    let env = environment();
    env.template_from_str(text).map(|_| ()).map_err(|e| describe(&e))
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// What a template can see about the run it renders for.
pub struct RunInfo<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    /// The DAG's time zone: `ds` is the logical date's calendar day there.
    pub timezone: Tz,
    pub params: &'a Map<String, Value>,
}

/// Builds the variables of a task instance's templates (Airflow's names).
pub fn context(run: &RunInfo<'_>, task_id: &str, try_number: u32) -> Value {
    let local = |t: DateTime<Utc>| t.with_timezone(&run.timezone).to_rfc3339();
    let logical_local = run.logical_date.with_timezone(&run.timezone);
    json!({
        "ds": logical_local.format("%Y-%m-%d").to_string(),
        "ds_nodash": logical_local.format("%Y%m%d").to_string(),
        "ts": run.logical_date.to_rfc3339(),
        "ts_nodash": run.logical_date.format("%Y%m%dT%H%M%S").to_string(),
        "logical_date": local(run.logical_date),
        "data_interval_start": local(run.data_interval_start),
        "data_interval_end": local(run.data_interval_end),
        "run_id": run.run_id,
        "dag": { "id": run.dag_id },
        "task": { "id": task_id },
        "try_number": try_number,
        "params": run.params,
    })
}

/// Whether any string inside `config` mentions `name` (so costly variables are only built
/// for the tasks that use them).
pub fn mentions(config: &toml::Table, name: &str) -> bool {
    fn walk(value: &toml::Value, name: &str) -> bool {
        match value {
            toml::Value::String(text) => is_template(text) && text.contains(name),
            toml::Value::Array(items) => items.iter().any(|v| walk(v, name)),
            toml::Value::Table(table) => table.values().any(|v| walk(v, name)),
            _ => false,
        }
    }
    config.values().any(|v| walk(v, name))
}

/// Renders every string inside `config` (recursively) with `vars`.
pub fn render_config(config: &toml::Table, vars: &Value) -> Result<toml::Table, String> {
    let env = environment();
    let ctx = minijinja::Value::from_serialize(vars);
    let mut out = config.clone();
    for (key, value) in out.iter_mut() {
        render_value(&env, &ctx, value).map_err(|e| format!("field `{key}`: {e}"))?;
    }
    Ok(out)
}

fn render_value(
    env: &Environment<'_>,
    ctx: &minijinja::Value,
    value: &mut toml::Value,
) -> Result<(), String> {
    match value {
        toml::Value::String(text) if is_template(text) => {
            *text = env.render_str(text, ctx).map_err(|e| describe(&e))?;
        }
        toml::Value::Array(items) => {
            for item in items {
                render_value(env, ctx, item)?;
            }
        }
        toml::Value::Table(table) => {
            for (_, item) in table.iter_mut() {
                render_value(env, ctx, item)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run_info(params: &Map<String, Value>) -> RunInfo<'_> {
        RunInfo {
            dag_id: "etl",
            run_id: "scheduled__2024-03-01",
            logical_date: Utc.with_ymd_and_hms(2024, 2, 29, 23, 0, 0).unwrap(),
            data_interval_start: Utc.with_ymd_and_hms(2024, 2, 29, 23, 0, 0).unwrap(),
            data_interval_end: Utc.with_ymd_and_hms(2024, 3, 1, 23, 0, 0).unwrap(),
            timezone: chrono_tz::Europe::Paris,
            params,
        }
    }

    #[test]
    fn renders_airflow_names_in_the_dag_time_zone() {
        let params = json!({"orders": 5000}).as_object().unwrap().clone();
        let vars = context(&run_info(&params), "extract", 1);
        let mut config = toml::Table::new();
        config.insert(
            "command".into(),
            "echo {{ ds }} {{ ds_nodash }} {{ params.orders }} {{ dag.id }}.{{ task.id }} {{ run_id }}".into(),
        );
        config.insert(
            "env".into(),
            toml::Value::Table(toml::toml! { START = "{{ data_interval_start }}" }),
        );
        let rendered = render_config(&config, &vars).unwrap();
        assert_eq!(
            rendered["command"].as_str().unwrap(),
            "echo 2024-03-01 20240301 5000 etl.extract scheduled__2024-03-01"
        );
        assert_eq!(rendered["env"]["START"].as_str().unwrap(), "2024-03-01T00:00:00+01:00");
    }

    #[test]
    fn undefined_names_are_errors() {
        let params = Map::new();
        let vars = context(&run_info(&params), "t", 1);
        let mut config = toml::Table::new();
        config.insert("command".into(), "echo {{ params.missing }}".into());
        let err = render_config(&config, &vars).unwrap_err();
        assert!(err.starts_with("field `command`: undefined value"), "{err}");
    }

    #[test]
    fn syntax_errors_are_caught() {
        assert!(check_syntax("echo {{ ds }}").is_ok());
        assert!(check_syntax("echo {{ ds ").is_err());
        assert!(check_syntax("no templates here").is_ok());
    }
}
