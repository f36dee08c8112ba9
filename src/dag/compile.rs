//! The DAG compiler: TOML text in, a validated [`Dag`] or every problem found out.
//!
//! Parsing keeps byte spans for every key and value, so each [`Diagnostic`] points at the exact
//! line and column. Fields are decoded one by one, which lets a single pass report an unknown
//! field, a bad cron expression and a cycle together instead of stopping at the first error.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use indexmap::IndexMap;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diagnostic::Reporter;
use super::template::quoting_at;
use super::{
    graph, template, Backoff, Dag, Deadline, DeadlineFrom, Diagnostic, ForEach, ParamSpec,
    ParamType, RunRetention, Subscriptions, Task, TriggerRule,
};
use crate::domain::{AssetRef, DEFAULT_QUEUE};
use crate::jobs::{Quoting, Registry};
use crate::schedule::{self, Schedule};

const DAG_FIELDS: &[&str] = &[
    "id",
    "description",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "min_interval",
    "keep_runs",
    "deadline",
    "paused_on_creation",
    "on_failure",
    "on_success",
    "on_retry",
    "tags",
    "params",
    "defaults",
    "tasks",
];

/// Fields every task has, whatever its kind; all other fields belong to the kind.
const COMMON_TASK_FIELDS: &[&str] = &[
    "kind",
    "depends_on",
    "trigger_rule",
    "retries",
    "retry_delay",
    "retry_backoff",
    "max_retry_delay",
    "timeout",
    "queue",
    "pool",
    "on_failure",
    "on_retry",
    "on_success",
    "for_each",
    "description",
];

type Value<'a> = Spanned<DeValue<'a>>;

/// Longest DAG description kept (it is stored and shown with every DAG list).
pub const MAX_DESCRIPTION_BYTES: usize = 16 * 1024;

/// Compiles one DAG file. `file` is the path shown in messages; `default_id` is used when the
/// file sets no `id` (normally the file stem).
pub fn compile(
    file: &str,
    source: &str,
    default_id: &str,
    registry: &Registry,
) -> Result<Dag, Vec<Diagnostic>> {
    let mut rep = Reporter::new(file, source);
    let (root, syntax_errors) = DeTable::parse_recoverable(source);
    if !syntax_errors.is_empty() {
        for e in syntax_errors {
            rep.error(
                e.span().unwrap_or(0..0),
                format!("TOML syntax error: {}", e.message().trim()),
            );
        }
        return Err(rep.finish());
    }
    let mut fields: IndexMap<String, (Range<usize>, Value<'_>)> = IndexMap::new();
    for (key, value) in root.into_inner() {
        if DAG_FIELDS.contains(&key.get_ref().as_ref()) {
            fields.insert(key.get_ref().to_string(), (key.span(), value));
        } else {
            rep.error(key.span(), unknown_field(key.get_ref(), DAG_FIELDS));
        }
    }
    let mut c = Compiler { rep, fields };

    let id = match c.take::<Spanned<String>>("id") {
        Some(id) => {
            c.check_identifier("DAG id", id.get_ref(), id.span());
            id.into_inner()
        }
        None => default_id.to_string(),
    };
    let description = c.take_with("description", |text: String| {
        if text.len() > MAX_DESCRIPTION_BYTES {
            Err(format!(
                "description is {} bytes long, more than {MAX_DESCRIPTION_BYTES}: keep long \
                 documentation beside the DAG",
                text.len()
            ))
        } else {
            Ok(text)
        }
    });
    let timezone = c.take_with("timezone", |s: String| {
        s.parse::<Tz>().map_err(|_| {
            format!("unknown time zone `{s}` (use an IANA name such as \"Europe/Paris\")")
        })
    });
    let timezone = timezone.unwrap_or(Tz::UTC);
    let (mut schedule, watches) = c.schedule();
    let start_date = c.take_date("start_date", timezone);
    let end_date = c.take_date("end_date", timezone);
    let catchup = c.take::<bool>("catchup").unwrap_or(false);
    let max_active_runs = c.max_active_runs(schedule.as_ref());
    let watch_interval = c.min_interval(schedule.as_mut(), !watches.is_empty());
    let keep_runs = c.take_with("keep_runs", RunRetention::parse);
    let deadline = c.deadline();
    let paused_on_creation = c.take::<bool>("paused_on_creation").unwrap_or(false);
    let notify = c.run_subscriptions();
    let max_active_tasks = c.take_with("max_active_tasks", positive);
    let tags = c.take::<Vec<String>>("tags").unwrap_or_default();
    let params = c.params();
    let defaults = c.defaults();
    let tasks = c.tasks(&defaults, registry);
    let topo_order = c.check_graph(&tasks);

    if c.rep.has_errors() {
        return Err(c.rep.finish());
    }
    let tasks = tasks.into_iter().map(|(id, (_, task))| (id, task)).collect();
    Ok(Dag {
        id,
        file: file.to_string(),
        source: Arc::from(source),
        version: version_of(source),
        description,
        schedule,
        watches,
        watch_interval,
        timezone,
        start_date,
        end_date,
        catchup,
        max_active_runs,
        max_active_tasks,
        keep_runs,
        deadline,
        paused_on_creation,
        notify,
        tags,
        params,
        tasks,
        topo_order,
    })
}

/// The version id of a DAG file's text.
pub fn version_of(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn unknown_field(name: &str, expected: &[&str]) -> String {
    format!("unknown field `{name}`, expected one of: {}", expected.join(", "))
}

fn positive(n: i64) -> Result<u32, String> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("must be a positive whole number, got {n}"))
}

fn duration(text: String) -> Result<Duration, String> {
    crate::time::parse_duration(&text)
}

/// The task settings `[defaults]` can give and each task can override.
#[derive(Default, Clone)]
struct Settings {
    retries: Option<u32>,
    retry_delay: Option<Duration>,
    retry_backoff: Option<Backoff>,
    max_retry_delay: Option<Duration>,
    timeout: Option<Duration>,
    queue: Option<String>,
    pool: Option<String>,
    on_failure: Option<Vec<String>>,
    on_retry: Option<Vec<String>>,
    on_success: Option<Vec<String>>,
}

/// The keys of [`Settings`].
const SETTING_FIELDS: &[&str] = &[
    "retries",
    "retry_delay",
    "retry_backoff",
    "max_retry_delay",
    "timeout",
    "queue",
    "pool",
    "on_failure",
    "on_retry",
    "on_success",
];

struct Compiler<'a> {
    rep: Reporter<'a>,
    fields: IndexMap<String, (Range<usize>, Value<'a>)>,
}

impl<'a> Compiler<'a> {
    /// Decodes a value into `T`, reporting a located error on failure.
    fn decode<T: DeserializeOwned>(&mut self, value: &Value<'a>) -> Option<T> {
        match T::deserialize(value.clone().into_deserializer()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.rep.error(
                    e.span().unwrap_or_else(|| value.span()),
                    e.message().trim().to_string(),
                );
                None
            }
        }
    }

    /// Decodes `value` and converts it, reporting the conversion's error at the value.
    fn decode_with<T: DeserializeOwned, U>(
        &mut self,
        value: &Value<'a>,
        convert: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<U> {
        let raw = self.decode::<T>(value)?;
        match convert(raw) {
            Ok(v) => Some(v),
            Err(message) => {
                self.rep.error(value.span(), message);
                None
            }
        }
    }

    fn take<T: DeserializeOwned>(&mut self, field: &str) -> Option<T> {
        let (_, value) = self.fields.shift_remove(field)?;
        self.decode(&value)
    }

    fn take_with<T: DeserializeOwned, U>(
        &mut self,
        field: &str,
        convert: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<U> {
        let (_, value) = self.fields.shift_remove(field)?;
        self.decode_with(&value, convert)
    }

    /// `deadline`: `"2h"` after the run was queued, or `{ within = "26h", after = "queued" |
    /// "logical_date" }`.
    fn deadline(&mut self) -> Option<Deadline> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Within {
            within: String,
            #[serde(default)]
            after: Option<String>,
        }
        let (_, value) = self.fields.shift_remove("deadline")?;
        if !matches!(value.get_ref(), DeValue::Table(_)) {
            return self.decode_with(&value, |s: String| {
                Ok(Deadline { within: duration(s)?, after: DeadlineFrom::Queued })
            });
        }
        self.decode_with(&value, |w: Within| {
            let after = w.after.as_deref().map_or(Ok(DeadlineFrom::Queued), DeadlineFrom::parse)?;
            Ok(Deadline { within: duration(w.within)?, after })
        })
    }

    /// `schedule`: a cron expression or preset, or `{ on = [tables and datasets] }` with an
    /// optional `cron` whose ticks make a run only once the data changed.
    fn schedule(&mut self) -> (Option<Schedule>, Vec<AssetRef>) {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct OnData {
            on: Vec<Spanned<String>>,
            cron: Option<Spanned<String>>,
        }
        let Some((_, value)) = self.fields.shift_remove("schedule") else {
            return (None, Vec::new());
        };
        if !matches!(value.get_ref(), DeValue::Table(_)) {
            return (self.decode_with(&value, |s: String| Schedule::parse(&s)), Vec::new());
        }
        let Some(on_data) = self.decode::<OnData>(&value) else { return (None, Vec::new()) };
        if on_data.on.is_empty() {
            self.rep.error(value.span(), "`on` must name at least one table or dataset");
        }
        let mut watches: Vec<AssetRef> = Vec::new();
        for name in &on_data.on {
            match AssetRef::parse(name.get_ref()) {
                Ok(asset) if !watches.contains(&asset) => watches.push(asset),
                Ok(_) => {}
                Err(message) => self.rep.error(name.span(), message),
            }
        }
        let cron = on_data.cron.and_then(|text| match Schedule::parse(text.get_ref()) {
            Ok(cron @ Schedule::Cron { .. }) => Some(cron),
            Ok(other) => {
                self.rep.error(
                    text.span(),
                    format!(
                        "`{}` cannot gate a data schedule: use a cron expression or preset such \
                         as \"@hourly\"",
                        other.expression()
                    ),
                );
                None
            }
            Err(message) => {
                self.rep.error(text.span(), message);
                None
            }
        });
        (cron, watches)
    }

    /// `max_active_runs`: 16 by default; a continuous DAG runs one run at a time.
    fn max_active_runs(&mut self, schedule: Option<&Schedule>) -> u32 {
        let continuous = matches!(schedule, Some(Schedule::Continuous { .. }));
        let span = self.fields.get("max_active_runs").map(|(_, value)| value.span());
        match (self.take_with("max_active_runs", positive), span) {
            (Some(n), Some(span)) if continuous && n != 1 => {
                self.rep.error(
                    span,
                    "a continuous DAG runs one run at a time: max_active_runs must be 1 or left out",
                );
                1
            }
            (Some(n), _) => n,
            (None, _) if continuous => 1,
            (None, _) => 16,
        }
    }

    /// `min_interval`, the shortest time between the starts of two runs of a continuous DAG,
    /// or between two runs made by data (returned) when the schedule is data without a cron.
    fn min_interval(
        &mut self,
        schedule: Option<&mut Schedule>,
        watches: bool,
    ) -> std::time::Duration {
        let span = self.fields.get("min_interval").map(|(_, value)| value.span());
        let Some(interval) = self.take_with("min_interval", duration) else {
            return std::time::Duration::ZERO;
        };
        match schedule {
            Some(Schedule::Continuous { min_interval }) => *min_interval = interval,
            None if watches => return interval,
            _ => self.rep.error(
                span.unwrap_or(0..0),
                "min_interval applies only to schedule = \"@continuous\" and to \
                 schedule = { on = [...] } without cron",
            ),
        }
        std::time::Duration::ZERO
    }

    /// A date (`2024-01-01`, read as midnight in the DAG's time zone) or a full timestamp.
    fn take_date(&mut self, field: &str, tz: Tz) -> Option<DateTime<Utc>> {
        let (_, value) = self.fields.shift_remove(field)?;
        let text = match value.get_ref() {
            DeValue::Datetime(d) => d.to_string(),
            _ => self.decode::<String>(&value)?,
        };
        match schedule::parse_date(&text, tz) {
            Some(date) => Some(date),
            None => {
                self.rep.error(
                    value.span(),
                    format!("invalid date `{text}` (expected YYYY-MM-DD or an RFC 3339 timestamp)"),
                );
                None
            }
        }
    }

    fn check_identifier(&mut self, what: &str, id: &str, span: Range<usize>) {
        let valid = !id.is_empty()
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !id.starts_with('.');
        if !valid {
            self.rep.error(
                span,
                format!("invalid {what} `{id}`: use letters, digits, `_`, `-` and `.` only"),
            );
        }
    }

    /// A sub-table such as `[params]`, as (key span, key, value) entries.
    fn take_table(&mut self, field: &str) -> Vec<(Range<usize>, String, Value<'a>)> {
        let Some((_, value)) = self.fields.shift_remove(field) else { return Vec::new() };
        let span = value.span();
        match value.into_inner() {
            DeValue::Table(table) => {
                table.into_iter().map(|(k, v)| (k.span(), k.get_ref().to_string(), v)).collect()
            }
            other => {
                self.rep
                    .error(span, format!("`{field}` must be a table, found {}", other.type_str()));
                Vec::new()
            }
        }
    }

    fn params(&mut self) -> IndexMap<String, ParamSpec> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawParam {
            #[serde(rename = "type")]
            ty: ParamType,
            default: Option<serde_json::Value>,
            description: Option<String>,
        }
        let mut params = IndexMap::new();
        for (key_span, name, value) in self.take_table("params") {
            self.check_identifier("param name", &name, key_span);
            let Some(raw) = self.decode::<RawParam>(&value) else { continue };
            if let Some(default) = &raw.default {
                if !raw.ty.accepts(default) {
                    self.rep.error(
                        value.span(),
                        format!(
                            "default of param `{name}` must be of type {}, got {default}",
                            raw.ty.name()
                        ),
                    );
                }
            }
            params.insert(
                name,
                ParamSpec { ty: raw.ty, default: raw.default, description: raw.description },
            );
        }
        params
    }

    /// Decodes `name` into `settings` if it is a settings key; false if it is not.
    fn setting(&mut self, settings: &mut Settings, name: &str, value: &Value<'a>) -> bool {
        match name {
            "retries" => settings.retries = self.decode(value).or(settings.retries),
            "retry_delay" => {
                settings.retry_delay = self.decode_with(value, duration).or(settings.retry_delay)
            }
            "retry_backoff" => {
                settings.retry_backoff = self.decode(value).or(settings.retry_backoff)
            }
            "max_retry_delay" => {
                settings.max_retry_delay =
                    self.decode_with(value, duration).or(settings.max_retry_delay)
            }
            "timeout" => settings.timeout = self.decode_with(value, duration).or(settings.timeout),
            "queue" => settings.queue = self.decode(value).or(settings.queue.take()),
            "pool" => settings.pool = self.decode(value).or(settings.pool.take()),
            "on_failure" => {
                settings.on_failure = self.channels(value).or(settings.on_failure.take())
            }
            "on_retry" => settings.on_retry = self.channels(value).or(settings.on_retry.take()),
            "on_success" => {
                settings.on_success = self.channels(value).or(settings.on_success.take())
            }
            _ => return false,
        }
        true
    }

    /// `for_each`: a list, or a template that is one expression giving a list.
    fn for_each(&mut self, value: &Value<'a>) -> Option<ForEach> {
        if let DeValue::String(text) = value.get_ref() {
            return match template::single_expression(text) {
                Ok(expr) => Some(ForEach::Expression(expr.to_string())),
                Err(message) => {
                    self.rep.error(value.span(), format!("for_each: {message}"));
                    None
                }
            };
        }
        self.decode_with(value, |items: serde_json::Value| match items {
            serde_json::Value::Array(items) => Ok(ForEach::Items(items)),
            other => Err(format!(
                "for_each must be a list or one expression such as \"{{{{ params.regions }}}}\", \
                 got {other}"
            )),
        })
    }

    /// Channel names: `"ops"` or `["ops", "team"]`.
    fn channels(&mut self, value: &Value<'a>) -> Option<Vec<String>> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Names {
            One(String),
            Many(Vec<String>),
        }
        let names = match self.decode::<Names>(value)? {
            Names::One(name) => vec![name],
            Names::Many(names) => names,
        };
        for name in &names {
            self.check_identifier("channel name", name, value.span());
        }
        Some(names)
    }

    /// The DAG's own `on_failure` (a failed run, a missed deadline) and `on_success`;
    /// `on_retry` belongs to tasks.
    fn run_subscriptions(&mut self) -> Subscriptions {
        if let Some((key, _)) = self.fields.shift_remove("on_retry") {
            self.rep.error(key, "runs are not retried: set on_retry in [defaults] or on a task");
        }
        let take = |c: &mut Self, field: &str| match c.fields.shift_remove(field) {
            Some((_, value)) => c.channels(&value).unwrap_or_default(),
            None => Vec::new(),
        };
        let on_failure = take(self, "on_failure");
        let on_success = take(self, "on_success");
        Subscriptions { on_failure, on_retry: Vec::new(), on_success }
    }

    fn defaults(&mut self) -> Settings {
        let mut defaults = Settings::default();
        for (key_span, name, value) in self.take_table("defaults") {
            if !self.setting(&mut defaults, &name, &value) {
                self.rep.error(key_span, unknown_field(&name, SETTING_FIELDS));
            }
        }
        defaults
    }

    fn tasks(
        &mut self,
        defaults: &Settings,
        registry: &Registry,
    ) -> IndexMap<String, (TaskSpans, Task)> {
        let entries = self.take_table("tasks");
        let mut tasks = IndexMap::new();
        for (key_span, id, value) in entries {
            self.check_identifier("task id", &id, key_span.clone());
            let table_span = value.span();
            let DeValue::Table(table) = value.into_inner() else {
                self.rep.error(key_span, format!("task `{id}` must be a table (`[tasks.{id}]`)"));
                continue;
            };
            if let Some(task) =
                self.task(&id, key_span.clone(), table_span, table, defaults, registry)
            {
                tasks.insert(id, task);
            }
        }
        if tasks.is_empty() && !self.rep.has_errors() {
            self.rep.error(0..0, "a DAG needs at least one task (`[tasks.<id>]`)");
        }
        tasks
    }

    fn task(
        &mut self,
        id: &str,
        key_span: Range<usize>,
        table_span: Range<usize>,
        table: DeTable<'a>,
        defaults: &Settings,
        registry: &Registry,
    ) -> Option<(TaskSpans, Task)> {
        let mut kind: Option<Spanned<String>> = None;
        let mut depends_on: Vec<Spanned<String>> = Vec::new();
        let mut trigger_rule = TriggerRule::default();
        let mut settings = defaults.clone();
        let mut kind_fields = DeTable::new();
        let mut for_each = None;
        for (key, value) in table {
            match key.get_ref().as_ref() {
                "kind" => kind = self.decode(&value),
                "for_each" => for_each = self.for_each(&value),
                "depends_on" => depends_on = self.decode(&value).unwrap_or_default(),
                "trigger_rule" => trigger_rule = self.decode(&value).unwrap_or_default(),
                "description" => {
                    self.decode::<String>(&value);
                }
                name => {
                    if !self.setting(&mut settings, name, &value) {
                        kind_fields.insert(key, value);
                    }
                }
            }
        }
        let Some(kind) = kind else {
            self.rep.error(key_span, format!("task `{id}` is missing required field `kind`"));
            return None;
        };
        self.check_templates(&kind_fields, registry.quoted_fields(kind.get_ref()));
        let config_value = Spanned::new(table_span.clone(), DeValue::Table(kind_fields));
        match registry.check(kind.get_ref(), config_value.clone()) {
            None => {
                let known: Vec<_> = registry.kind_names().collect();
                self.rep.error(
                    kind.span(),
                    format!(
                        "unknown task kind `{}`, expected one of: {}",
                        kind.get_ref(),
                        known.join(", ")
                    ),
                );
            }
            Some(issues) => {
                for issue in issues {
                    let mut message =
                        format!("task `{id}` ({}): {}", kind.get_ref(), issue.message.trim());
                    if issue.message.starts_with("unknown field") {
                        message.push_str("; fields every task takes: ");
                        message.push_str(&COMMON_TASK_FIELDS.join(", "));
                    }
                    let span =
                        issue.span.filter(|s| *s != table_span).unwrap_or_else(|| key_span.clone());
                    self.rep.error(span, message);
                }
            }
        }
        let config = toml::Table::deserialize(config_value.into_deserializer()).unwrap_or_default();
        let spans =
            TaskSpans { key: key_span, depends_on: depends_on.iter().map(|d| d.span()).collect() };
        let task = Task {
            id: id.to_string(),
            kind: kind.into_inner(),
            depends_on: depends_on.into_iter().map(Spanned::into_inner).collect(),
            trigger_rule,
            retries: settings.retries.unwrap_or(0),
            retry_delay: settings.retry_delay.unwrap_or(Duration::from_secs(30)),
            retry_backoff: settings.retry_backoff.unwrap_or_default(),
            max_retry_delay: settings.max_retry_delay,
            timeout: settings.timeout,
            queue: settings.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
            pool: settings.pool,
            notify: Subscriptions {
                on_failure: settings.on_failure.unwrap_or_default(),
                on_retry: settings.on_retry.unwrap_or_default(),
                on_success: settings.on_success.unwrap_or_default(),
            },
            for_each,
            config,
        };
        Some((spans, task))
    }

    /// Every string among a task's kind-specific fields must parse as a template, and one in a
    /// SQL or shell field must not place an expression inside quotes.
    fn check_templates(&mut self, fields: &DeTable<'a>, quoted: &[(&str, Quoting)]) {
        fn walk<'k>(
            c: &mut Compiler<'_>,
            path: &mut Vec<&'k str>,
            value: &'k Value<'_>,
            quoted: &[(&str, Quoting)],
        ) {
            match value.get_ref() {
                DeValue::String(text) => {
                    let placed = template::check_syntax(text)
                        .and_then(|()| template::check_placement(text, quoting_at(path, quoted)));
                    if let Err(e) = placed {
                        c.rep.error(value.span(), format!("invalid template: {e}"));
                    }
                }
                DeValue::Array(items) => items.iter().for_each(|item| {
                    path.push("*");
                    walk(c, path, item, quoted);
                    path.pop();
                }),
                DeValue::Table(table) => table.iter().for_each(|(key, item)| {
                    path.push(key.get_ref());
                    walk(c, path, item, quoted);
                    path.pop();
                }),
                _ => {}
            }
        }
        for (key, value) in fields {
            walk(self, &mut vec![key.get_ref()], value, quoted);
        }
    }

    /// Checks `depends_on` names and cycles; returns the dependency order.
    fn check_graph(&mut self, tasks: &IndexMap<String, (TaskSpans, Task)>) -> Vec<String> {
        for (spans, task) in tasks.values() {
            for (dep, span) in task.depends_on.iter().zip(&spans.depends_on) {
                if !tasks.contains_key(dep) {
                    self.rep.error(
                        span.clone(),
                        format!(
                            "task `{}` depends on `{dep}`, which is not a task of this DAG",
                            task.id
                        ),
                    );
                }
            }
        }
        let upstreams =
            tasks.iter().map(|(id, (_, t))| (id.clone(), t.depends_on.clone())).collect();
        match graph::topo_order(&upstreams) {
            Ok(order) => order,
            Err(cycles) => {
                for cycle in cycles {
                    let span = tasks[&cycle[0]].0.key.clone();
                    self.rep.error(span, format!("dependency cycle: {}", cycle.join(" -> ")));
                }
                Vec::new()
            }
        }
    }
}

/// Where a task's parts are in the file, for graph errors found after decoding.
struct TaskSpans {
    key: Range<usize>,
    depends_on: Vec<Range<usize>>,
}
