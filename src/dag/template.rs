//! Templates in task fields: `{{ ds }}`, `{{ params.orders }}`, … rendered per task instance.
//!
//! Every string in a task's kind-specific fields is a template (minijinja syntax). Syntax is
//! checked when the DAG is compiled; rendering happens on the worker just before the task runs,
//! with undefined names treated as errors so a typo never renders as an empty string.
//!
//! Values are written into SQL and shell fields as quoted literals (the kind says which fields,
//! [`Job::QUOTED_FIELDS`](crate::jobs::Job::QUOTED_FIELDS)), so a run parameter is data, never
//! code: `WHERE status = {{ params.status }}` renders `WHERE status = 'shipped'`, and
//! `echo {{ params.region }}` renders `echo 'eu; rm -rf /'` for a hostile value. `| safe` inserts
//! a value raw. A template placed inside quotes of such a field is refused at load time, since
//! the quoting could not protect it there.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::{json, Map, Value};

use crate::jobs::Quoting;

const SQL: &str = "sql";
const SHELL: &str = "shell";

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // The template's name selects how values are quoted (see `template_name`).
    env.set_auto_escape_callback(|name| match name {
        SQL => AutoEscape::Custom(SQL),
        SHELL => AutoEscape::Custom(SHELL),
        _ => AutoEscape::None,
    });
    env.set_formatter(|out, state, value| {
        // `| safe` values, and fields of no quoting, are written as they are.
        let text = match state.auto_escape() {
            AutoEscape::Custom(SQL) if !value.is_safe() => sql_literal(value)?,
            AutoEscape::Custom(SHELL) if !value.is_safe() => shell_words(value),
            _ => return minijinja::escape_formatter(out, state, value),
        };
        out.write_str(&text).map_err(minijinja::Error::from)
    });
    env
}

fn template_name(quoting: Quoting) -> &'static str {
    match quoting {
        Quoting::Text => "text",
        Quoting::Sql => SQL,
        Quoting::Shell => SHELL,
    }
}

/// A value as a SQL literal: strings single-quoted (quotes doubled), numbers and booleans as
/// themselves, none as `NULL`, a list as `(a, b, …)` for `IN`, a map as a JSON string.
fn sql_literal(value: &minijinja::Value) -> Result<String, minijinja::Error> {
    let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
    Ok(match value.kind() {
        ValueKind::Undefined | ValueKind::None => "NULL".to_string(),
        ValueKind::Bool => if value.is_true() { "TRUE" } else { "FALSE" }.to_string(),
        ValueKind::Number => {
            let text = value.to_string();
            if text.parse::<f64>().is_ok_and(f64::is_finite) {
                text
            } else {
                quote(&text)
            }
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items = value.try_iter()?.map(|v| sql_literal(&v));
            format!("({})", items.collect::<Result<Vec<_>, _>>()?.join(", "))
        }
        ValueKind::Map => quote(&serde_json::to_string(value).unwrap_or_default()),
        _ => quote(&value.to_string()),
    })
}

/// A value as shell words: each left bare when made only of characters the shell does not
/// interpret, single-quoted otherwise; a list becomes one word per item.
fn shell_words(value: &minijinja::Value) -> String {
    let word = |text: &str| {
        let bare = !text.is_empty()
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "_.,:/@%+=-".contains(c));
        if bare {
            text.to_string()
        } else {
            format!("'{}'", text.replace('\'', r"'\''"))
        }
    };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => word(""),
        ValueKind::Seq | ValueKind::Iterable => match value.try_iter() {
            Ok(items) => items.map(|v| shell_words(&v)).collect::<Vec<_>>().join(" "),
            Err(_) => word(&value.to_string()),
        },
        ValueKind::Map => word(&serde_json::to_string(value).unwrap_or_default()),
        _ => word(&value.to_string()),
    }
}

/// Refuses a template expression placed inside quotes of a SQL or shell field: its value is
/// quoted already, and inside quotes (a shell's `"…$(…)…"` above all) that quoting is void.
/// Expressions passed through `| safe` are the author's responsibility and pass.
pub fn check_placement(text: &str, quoting: Quoting) -> Result<(), String> {
    if quoting == Quoting::Text || !is_template(text) {
        return Ok(());
    }
    // Quotes, backslashes and braces are ASCII, so a byte scan never splits a character.
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at..].starts_with(b"{{") {
            let end = text[at..].find("}}").map_or(text.len(), |e| at + e);
            let expression = &text[at + 2..end];
            let raw = expression.split('|').skip(1).any(|filter| filter.trim() == "safe");
            if let (Some(q), false) = (quote, raw) {
                let q = char::from(q);
                return Err(format!(
                    "`{{{{{expression}}}}}` stands inside {q}…{q}: values are quoted for you, \
                     so write it without the quotes (or use `| safe` for raw text)"
                ));
            }
            at = end + 2;
            continue;
        }
        match (quote, bytes[at]) {
            (None | Some(b'"'), b'\\') if quoting == Quoting::Shell => at += 1,
            (None, c @ (b'\'' | b'"')) => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        at += 1;
    }
    Ok(())
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

/// The expression of a template that is one expression and nothing else (`"{{ outputs.a.files }}"`
/// is `outputs.a.files`), checked for syntax.
pub fn single_expression(text: &str) -> Result<&str, String> {
    let inner = text.trim().strip_prefix("{{").and_then(|t| t.strip_suffix("}}")).map(str::trim);
    match inner {
        Some(expr) if !expr.is_empty() && !expr.contains("{{") && !expr.contains("}}") => {
            let env = environment();
            env.compile_expression(expr).map(|_| expr).map_err(|e| describe(&e))
        }
        _ => Err(format!(
            "expected one expression such as \"{{{{ outputs.list_files.files }}}}\", got `{text}`"
        )),
    }
}

/// The value of expression `expr` with `vars` (a list stays a list, a number a number).
pub fn evaluate(expr: &str, vars: &Value) -> Result<Value, String> {
    let env = environment();
    let compiled = env.compile_expression(expr).map_err(|e| describe(&e))?;
    let value = compiled.eval(minijinja::Value::from_serialize(vars)).map_err(|e| describe(&e))?;
    serde_json::to_value(&value).map_err(|e| e.to_string())
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

/// How values are quoted in the field at `path` (keys from the task's fields down; list items
/// as `*`), given a kind's `(pattern, quoting)` list where `*` matches any one segment.
pub fn quoting_at(path: &[&str], quoted: &[(&str, Quoting)]) -> Quoting {
    let matches = |pattern: &str| {
        let segments: Vec<&str> = pattern.split('.').collect();
        segments.len() == path.len()
            && segments.iter().zip(path).all(|(want, got)| *want == "*" || want == got)
    };
    quoted.iter().find(|(pattern, _)| matches(pattern)).map_or(Quoting::Text, |(_, q)| *q)
}

/// What [`visit_strings`] calls for each string: its path, its quoting, the string.
type StringVisitor<'a> = dyn FnMut(&[&str], Quoting, &mut String) -> Result<(), String> + 'a;

/// Calls `visit` with every string inside `config` (recursively), its path and its quoting,
/// stopping at the first error.
fn visit_strings(
    config: &mut toml::Table,
    quoted: &[(&str, Quoting)],
    visit: &mut StringVisitor<'_>,
) -> Result<(), String> {
    fn walk(
        path: &mut Vec<String>,
        value: &mut toml::Value,
        quoted: &[(&str, Quoting)],
        visit: &mut StringVisitor<'_>,
    ) -> Result<(), String> {
        match value {
            toml::Value::String(text) => {
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                visit(&path, quoting_at(&path, quoted), text)
            }
            toml::Value::Array(items) => items.iter_mut().try_for_each(|item| {
                path.push("*".to_string());
                let done = walk(path, item, quoted, visit);
                path.pop();
                done
            }),
            toml::Value::Table(table) => table.iter_mut().try_for_each(|(key, item)| {
                path.push(key.clone());
                let done = walk(path, item, quoted, visit);
                path.pop();
                done
            }),
            _ => Ok(()),
        }
    }
    config
        .iter_mut()
        .try_for_each(|(key, value)| walk(&mut vec![key.clone()], value, quoted, visit))
}

/// Renders every string inside `config` (recursively) with `vars`, quoting values as the
/// kind's `quoted` fields say.
pub fn render_config(
    config: &toml::Table,
    vars: &Value,
    quoted: &[(&str, Quoting)],
) -> Result<toml::Table, String> {
    let env = environment();
    let ctx = minijinja::Value::from_serialize(vars);
    let mut out = config.clone();
    visit_strings(&mut out, quoted, &mut |path, quoting, text| {
        if is_template(text) {
            *text = env
                .render_named_str(template_name(quoting), text, &ctx)
                .map_err(|e| format!("field `{}`: {}", path[0], describe(&e)))?;
        }
        Ok(())
    })?;
    Ok(out)
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
        let rendered = render_config(&config, &vars, &[]).unwrap();
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
        let err = render_config(&config, &vars, &[]).unwrap_err();
        assert!(err.starts_with("field `command`: undefined value"), "{err}");
    }

    fn render_one(field: &str, text: &str, params: Value, quoted: &[(&str, Quoting)]) -> String {
        let params = params.as_object().unwrap().clone();
        let vars = context(&run_info(&params), "t", 1);
        let mut config = toml::Table::new();
        config.insert(field.into(), text.into());
        render_config(&config, &vars, quoted).unwrap()[field].as_str().unwrap().to_string()
    }

    #[test]
    fn sql_fields_get_literals_not_text() {
        let sql = [("query", Quoting::Sql)];
        let hostile = json!({"s": "x' OR 1=1 --", "n": 5, "b": true, "l": ["a", "b'"], "z": null});
        let all =
            "{{ params.s }} {{ params.n }} {{ params.b }} {{ params.l }} {{ params.z }} {{ ds }}";
        assert_eq!(
            render_one("query", all, hostile.clone(), &sql),
            "'x'' OR 1=1 --' 5 TRUE ('a', 'b''') NULL '2024-03-01'"
        );
        let raw = render_one("query", "{{ params.s | safe }}", hostile.clone(), &sql);
        assert_eq!(raw, "x' OR 1=1 --");
        assert_eq!(render_one("other", "{{ params.s }}", hostile, &sql), "x' OR 1=1 --");
    }

    #[test]
    fn shell_fields_get_words_not_code() {
        let shell = [("command", Quoting::Shell)];
        let params = json!({"r": "eu; touch /tmp/x", "q": "it's", "ok": "eu-west-1", "e": ""});
        let all = "echo {{ params.r }} {{ params.q }} {{ params.ok }} {{ params.e }} {{ ds }}";
        assert_eq!(
            render_one("command", all, params.clone(), &shell),
            r"echo 'eu; touch /tmp/x' 'it'\''s' eu-west-1 '' 2024-03-01"
        );
        let raw = render_one("command", "{{ params.r | safe }}", params, &shell);
        assert_eq!(raw, "eu; touch /tmp/x");
    }

    #[test]
    fn templates_inside_quotes_of_quoted_fields_are_refused() {
        assert!(check_placement("echo {{ ds }} '{{ ds | safe }}'", Quoting::Shell).is_ok());
        assert!(check_placement(r#"echo "{{ params.x }}""#, Quoting::Shell).is_err());
        assert!(check_placement(r"echo 'a\' {{ x }} \' {{ y }}", Quoting::Shell).is_ok());
        let quoted_date = check_placement("WHERE d = '{{ ds }}'", Quoting::Sql).unwrap_err();
        assert!(quoted_date.contains("without the quotes"), "{quoted_date}");
        assert!(check_placement("WHERE d = {{ ds }} AND s = 'it''s'", Quoting::Sql).is_ok());
        assert!(check_placement(r#"echo "{{ x }}""#, Quoting::Text).is_ok());
    }

    #[test]
    fn field_paths_match_patterns() {
        let quoted = [("outputs.*.query", Quoting::Sql), ("command", Quoting::Shell)];
        assert_eq!(quoting_at(&["outputs", "gold/x.json", "query"], &quoted), Quoting::Sql);
        assert_eq!(quoting_at(&["outputs", "gold/x", "partition_by"], &quoted), Quoting::Text);
        assert_eq!(quoting_at(&["command"], &quoted), Quoting::Shell);
        assert_eq!(quoting_at(&["env", "A"], &quoted), Quoting::Text);
    }

    #[test]
    fn syntax_errors_are_caught() {
        assert!(check_syntax("echo {{ ds }}").is_ok());
        assert!(check_syntax("echo {{ ds ").is_err());
        assert!(check_syntax("no templates here").is_ok());
    }
}
