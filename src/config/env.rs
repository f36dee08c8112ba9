//! Settings from the environment: every setting `section.key` (or top-level `key`) can be set
//! by `LAKEWARD_SECTION_KEY` (`LAKEWARD_KEY`), the name derived from the setting's, and a pool
//! by `LAKEWARD_POOLS_NAME`. A value is read as the setting's type: a number, a boolean
//! (`true/false`, `yes/no`, `1/0`), a list (comma-separated) or text.

use serde_json::Value;

/// Variables starting with `LAKEWARD_` that are not settings.
const NOT_SETTINGS: &[&str] = &["LAKEWARD_CONFIG", "LAKEWARD_LOG", "LAKEWARD_BIN"];

/// One setting set from the environment or the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Where the value came from, for messages: the variable or the flag.
    pub source: String,
    /// The setting's path, e.g. `["worker", "slots"]`.
    pub path: Vec<String>,
    pub value: toml::Value,
}

impl Override {
    /// A setting given on the command line as `flag`.
    pub fn flag(flag: &str, path: &[&str], value: toml::Value) -> Override {
        Override {
            source: flag.to_string(),
            path: path.iter().map(ToString::to_string).collect(),
            value,
        }
    }
}

/// The overrides the `LAKEWARD_*` variables in `vars` ask for, against `defaults` (the default
/// configuration as JSON, which names every setting and its type), and the problems found.
pub fn overrides(
    vars: impl IntoIterator<Item = (String, String)>,
    defaults: &Value,
) -> (Vec<Override>, Vec<String>) {
    let mut settings = Vec::new();
    collect_settings(defaults, &mut Vec::new(), &mut settings);
    let (mut found, mut problems) = (Vec::new(), Vec::new());
    for (variable, text) in vars {
        let Some(name) = variable.strip_prefix("LAKEWARD_") else { continue };
        if NOT_SETTINGS.contains(&variable.as_str()) || name.starts_with("TEST_") {
            continue;
        }
        let (path, kind) = if let Some(pool) = name.strip_prefix("POOLS_") {
            (vec!["pools".to_string(), pool.to_ascii_lowercase()], &Value::from(0))
        } else if let Some((path, kind)) = settings.iter().find(|(path, _)| env_name(path) == name)
        {
            (path.clone(), *kind)
        } else {
            problems.push(format!("{variable}: no such setting"));
            continue;
        };
        match typed(&text, kind) {
            Ok(value) => found.push(Override { source: variable, path, value }),
            Err(expected) => problems.push(format!("{variable}={text}: expected {expected}")),
        }
    }
    (found, problems)
}

/// Every leaf setting under `value`, with its default (which gives its type).
fn collect_settings<'a>(
    value: &'a Value,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, &'a Value)>,
) {
    match value {
        // Pools are a map with names of the user's choosing: handled apart. Channels are
        // set in the file only (their secrets come from variables they name).
        Value::Object(map) if path.first().is_none_or(|p| p != "pools" && p != "channels") => {
            for (key, inner) in map {
                path.push(key.clone());
                collect_settings(inner, path, out);
                path.pop();
            }
        }
        Value::Object(_) => {}
        leaf => out.push((path.clone(), leaf)),
    }
}

fn env_name(path: &[String]) -> String {
    path.join("_").to_ascii_uppercase()
}

/// `text` as a TOML value of the type of `default`, or what was expected.
fn typed(text: &str, default: &Value) -> Result<toml::Value, &'static str> {
    match default {
        Value::Number(_) => {
            text.trim().parse::<i64>().map(toml::Value::Integer).map_err(|_| "a whole number")
        }
        Value::Bool(_) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "no" | "0" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err("true or false"),
        },
        Value::Array(_) => Ok(toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_string()))
                .collect(),
        )),
        _ => Ok(toml::Value::String(text.to_string())),
    }
}

/// Sets `value` at `path` in `table`, creating sections on the way.
pub fn apply(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, sections)) = path.split_last() else { return };
    let mut current = table;
    for section in sections {
        let entry = current
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        if !entry.is_table() {
            *entry = toml::Value::Table(Default::default());
        }
        let toml::Value::Table(inner) = entry else { unreachable!("made a table above") };
        current = inner;
    }
    current.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Value {
        serde_json::json!({
            "home": "/x",
            "database_url": null,
            "worker": { "slots": 16, "queues": ["default"] },
            "web": { "bind": "127.0.0.1:8080", "secure_cookies": false },
            "pools": {},
        })
    }

    #[test]
    fn variables_are_named_after_settings_and_typed_like_them() {
        let vars = [
            ("LAKEWARD_WORKER_SLOTS", "4"),
            ("LAKEWARD_WORKER_QUEUES", "etl, reports"),
            ("LAKEWARD_WEB_SECURE_COOKIES", "yes"),
            ("LAKEWARD_DATABASE_URL", "postgres://db/lw"),
            ("LAKEWARD_POOLS_WAREHOUSE", "3"),
            ("LAKEWARD_LOG", "debug"),
            ("LAKEWARD_TEST_POSTGRES_URL", "ignored"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let (found, problems) = overrides(vars, &defaults());
        assert!(problems.is_empty(), "{problems:?}");
        let set: Vec<(String, String)> =
            found.iter().map(|o| (o.path.join("."), o.value.to_string())).collect();
        assert_eq!(
            set,
            [
                ("worker.slots".to_string(), "4".to_string()),
                ("worker.queues".into(), "[\"etl\", \"reports\"]".into()),
                ("web.secure_cookies".into(), "true".into()),
                ("database_url".into(), "\"postgres://db/lw\"".into()),
                ("pools.warehouse".into(), "3".into()),
            ]
        );
    }

    #[test]
    fn unknown_variables_and_bad_values_are_each_reported() {
        let vars = [("LAKEWARD_WORKER_SLOT", "4"), ("LAKEWARD_WORKER_SLOTS", "many")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let (_, problems) = overrides(vars, &defaults());
        assert_eq!(
            problems,
            [
                "LAKEWARD_WORKER_SLOT: no such setting",
                "LAKEWARD_WORKER_SLOTS=many: expected a whole number"
            ]
        );
    }
}
