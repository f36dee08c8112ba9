//! The DAG model: what a DAG file means once it has been compiled and validated.
//!
//! A DAG file is TOML (see the README for the format). [`compile`] turns its text into a
//! [`Dag`] or into every [`Diagnostic`] it can find; [`folder`] loads a whole folder, keeping
//! broken files as import errors, and [`watch`] tells when the folder changed. This module knows nothing of the database, HTTP or execution.

pub mod compile;
pub mod diagnostic;
pub mod folder;
pub mod graph;
pub mod params;
pub mod template;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use indexmap::IndexMap;
use serde::Deserialize;

pub use compile::compile;
pub use diagnostic::Diagnostic;
pub use params::{ParamSpec, ParamType};

use crate::domain::AssetRef;
use crate::schedule::Schedule;

/// A validated DAG, ready to be scheduled.
#[derive(Debug, Clone)]
pub struct Dag {
    pub id: String,
    /// Path of the file it came from, as shown to users.
    pub file: String,
    /// The file's text; stored with every run so a run always executes the version it started with.
    pub source: Arc<str>,
    /// Hash of `source`: the DAG version.
    pub version: String,
    pub description: Option<String>,
    /// The time part of the schedule: alone, or with `watches` the ticks at which a change of
    /// the watched data makes a run.
    pub schedule: Option<Schedule>,
    /// The tables and datasets whose changes trigger runs (`schedule = { on = [...] }`).
    pub watches: Vec<AssetRef>,
    /// With `watches` and no cron: the shortest time between two runs made by data
    /// (`min_interval`); changes meanwhile wait for the next.
    pub watch_interval: std::time::Duration,
    pub timezone: Tz,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
    pub max_active_runs: u32,
    /// Task instances of this DAG queued or running at once, over all its runs; `None`: no limit.
    pub max_active_tasks: Option<u32>,
    /// Which finished runs the scheduler deletes (`keep_runs`); `None`: all are kept.
    pub keep_runs: Option<RunRetention>,
    /// When a run should have finished (`deadline`): past it, the scheduler records the miss
    /// once and says so (Airflow 3.1's deadline alerts).
    pub deadline: Option<Deadline>,
    /// Whether the DAG is paused when the database first hears of it (Airflow's
    /// `is_paused_upon_creation`); later changes of the file leave the flag alone.
    pub paused_on_creation: bool,
    /// Channels told when a run fails (or misses its deadline) or succeeds.
    pub notify: Subscriptions,
    pub tags: Vec<String>,
    pub params: IndexMap<String, ParamSpec>,
    /// Tasks in the order the file declares them.
    pub tasks: IndexMap<String, Task>,
    /// Task ids in a dependency-respecting order (upstreams first).
    pub topo_order: Vec<String>,
}

/// One task of a DAG.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub kind: String,
    pub depends_on: Vec<String>,
    pub trigger_rule: TriggerRule,
    pub retries: u32,
    /// Wait before the first retry.
    pub retry_delay: Duration,
    pub retry_backoff: Backoff,
    /// Upper bound of the wait with exponential backoff (default 24 hours).
    pub max_retry_delay: Option<Duration>,
    pub timeout: Option<Duration>,
    /// Queue the task is sent to; workers claim from the queues they serve.
    pub queue: String,
    /// Named pool (defined in `lakeward.toml`) whose slots bound how many tasks using it run
    /// at once, across all DAGs.
    pub pool: Option<String>,
    /// Channels told when a try fails and is retried, when the task fails, when it succeeds.
    pub notify: Subscriptions,
    /// Dynamic task mapping: one instance of the task per item of this list.
    pub for_each: Option<ForEach>,
    /// The kind-specific fields, with their templates not yet rendered.
    pub config: toml::Table,
}

impl Task {
    /// How many tries the task gets in all: the first plus its retries.
    pub fn max_tries(&self) -> u32 {
        self.retries + 1
    }

    /// The wait after failed try number `try_number` (1-based) before the next one: the retry
    /// delay, doubled after each further failure with exponential backoff, up to the maximum.
    pub fn retry_delay_after(&self, try_number: i64) -> Duration {
        match self.retry_backoff {
            Backoff::Fixed => self.retry_delay,
            Backoff::Exponential => {
                let doublings =
                    u32::try_from(try_number.saturating_sub(1)).unwrap_or(u32::MAX).min(32);
                let max = self.max_retry_delay.unwrap_or(Duration::from_secs(24 * 3600));
                self.retry_delay.saturating_mul(1u32 << doublings.min(31)).min(max)
            }
        }
    }
}

/// The list a mapped task runs over (`for_each`), known when the task is due to run.
#[derive(Debug, Clone, PartialEq)]
pub enum ForEach {
    /// `for_each = "{{ outputs.list_files.files }}"` (or `params.regions`): an expression,
    /// evaluated when the task's upstreams allow it to run.
    Expression(String),
    /// `for_each = ["eu", "us"]`.
    Items(Vec<serde_json::Value>),
}

/// The notification channels (`[channels.<name>]` in `lakeward.toml`) told of a task's or a
/// run's events: `on_failure` (and a missed deadline, for a run), `on_retry` (tasks only),
/// `on_success`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscriptions {
    pub on_failure: Vec<String>,
    pub on_retry: Vec<String>,
    pub on_success: Vec<String>,
}

impl Subscriptions {
    pub fn is_empty(&self) -> bool {
        self.on_failure.is_empty() && self.on_retry.is_empty() && self.on_success.is_empty()
    }
}

/// How the wait between tries grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The same `retry_delay` before every retry.
    #[default]
    Fixed,
    /// `retry_delay`, then twice that, four times, … up to `max_retry_delay`.
    Exponential,
}

/// When a task may run, given the states of its upstream tasks (Airflow's trigger rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    #[default]
    AllSuccess,
    AllFailed,
    AllDone,
    OneSuccess,
    OneFailed,
    NoneFailed,
    NoneFailedMinOneSuccess,
    NoneSkipped,
    Always,
}

/// A DAG's deadline: `deadline = "2h"` (after the run was queued) or
/// `deadline = { within = "26h", after = "logical_date" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub within: std::time::Duration,
    pub after: DeadlineFrom,
}

/// What a [`Deadline`] counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineFrom {
    /// When the run was created (queued).
    Queued,
    /// The run's logical date.
    LogicalDate,
}

impl DeadlineFrom {
    fn parse(text: &str) -> Result<DeadlineFrom, String> {
        match text {
            "queued" => Ok(DeadlineFrom::Queued),
            "logical_date" => Ok(DeadlineFrom::LogicalDate),
            other => Err(format!("deadline after `{other}`: use \"queued\" or \"logical_date\"")),
        }
    }
}

/// How many finished runs of a DAG to keep (`keep_runs = 100` or `keep_runs = "2d"`): a
/// continuous DAG makes thousands a day, and its history must not grow without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunRetention {
    /// The newest this many finished runs.
    Count(u32),
    /// Finished runs that ended less than this long ago.
    Age(Duration),
}

impl RunRetention {
    /// Reads a whole number of runs or a duration (`"2d"`, `"12h"`).
    fn parse(value: toml::Value) -> Result<RunRetention, String> {
        match value {
            toml::Value::Integer(n) if n > 0 => {
                u32::try_from(n).map(RunRetention::Count).map_err(|_| format!("{n} runs is too many"))
            }
            toml::Value::String(text) => match crate::time::parse_duration(&text)? {
                age if age.is_zero() => Err("keep_runs must be longer than 0s".into()),
                age => Ok(RunRetention::Age(age)),
            },
            other => Err(format!(
                "keep_runs must be a positive number of runs or a duration such as \"2d\", got {other}"
            )),
        }
    }
}

impl Dag {
    /// The schedule as users read it: `@daily`, `on bronze.orders`,
    /// `0 * * * * on bronze.orders`, or `None` for manual-only DAGs.
    pub fn schedule_text(&self) -> Option<String> {
        let time = self.schedule.as_ref().map(Schedule::expression);
        if self.watches.is_empty() {
            return time.map(str::to_string);
        }
        let names: Vec<&str> = self.watches.iter().map(|a| a.name.as_str()).collect();
        let on = format!("on {}", names.join(", "));
        Some(match time {
            Some(time) => format!("{time} {on}"),
            None => on,
        })
    }

    /// The DAG's calendar; `None` for manual-only DAGs and DAGs that run on data alone. (For
    /// a DAG that also watches data, its ticks are when a change may make a run.)
    pub fn timetable(&self) -> Option<crate::schedule::Timetable<'_>> {
        self.schedule.as_ref().map(|schedule| crate::schedule::Timetable {
            schedule,
            timezone: self.timezone,
            start_date: self.start_date,
            end_date: self.end_date,
            catchup: self.catchup,
        })
    }

    /// The dependency edges `(upstream, task)` that no longer path implies: what a drawing of
    /// the DAG needs to show its order without clutter.
    pub fn essential_edges(&self) -> Vec<(String, String)> {
        let upstreams =
            self.tasks.iter().map(|(id, task)| (id.clone(), task.depends_on.clone())).collect();
        graph::transitive_reduction(&self.topo_order, &upstreams)
    }

    /// Tasks that list `task_id` in their `depends_on`.
    pub fn downstream_of<'a>(&'a self, task_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks.values().filter(move |t| t.depends_on.iter().any(|d| d == task_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_doubles_up_to_the_maximum() {
        let dag = compile(
            "t.toml",
            "[tasks.t]\nkind = \"noop\"\nretries = 9\nretry_delay = \"10s\"\nretry_backoff = \"exponential\"\nmax_retry_delay = \"1m\"\n",
            "t",
            &crate::jobs::Registry::builtin(),
        )
        .unwrap();
        let task = &dag.tasks["t"];
        let waits: Vec<u64> = (1..=5).map(|n| task.retry_delay_after(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60]);
        let fixed = Task { retry_backoff: Backoff::Fixed, ..task.clone() };
        assert_eq!(fixed.retry_delay_after(4).as_secs(), 10);
    }

    #[test]
    fn notification_channels_for_runs_and_tasks() {
        let source = "on_failure = \"ops\"\non_success = [\"team\"]\n\
                      [defaults]\non_failure = [\"ops\", \"pager\"]\n\
                      [tasks.a]\nkind = \"noop\"\non_retry = \"team\"\n\
                      [tasks.b]\nkind = \"noop\"\non_failure = []\non_success = \"team\"\n";
        let dag = compile("t.toml", source, "t", &crate::jobs::Registry::builtin()).unwrap();
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(dag.notify.on_failure, names(&["ops"]));
        assert_eq!(dag.notify.on_success, names(&["team"]));
        let a = &dag.tasks["a"].notify;
        assert_eq!(
            (a.on_failure.clone(), a.on_retry.clone()),
            (names(&["ops", "pager"]), names(&["team"]))
        );
        let b = &dag.tasks["b"].notify;
        assert!(b.on_failure.is_empty() && b.on_success == names(&["team"]));

        for (bad, says) in [
            ("on_retry = \"ops\"\n", "runs are not retried"),
            ("on_failure = \"no spaces\"\n", "invalid channel name"),
            ("on_failure = 3\n", "did not match any variant"),
        ] {
            let source = format!("{bad}[tasks.t]\nkind = \"noop\"\n");
            let errors = compile("t.toml", &source, "t", &crate::jobs::Registry::builtin());
            let text: Vec<String> = errors.unwrap_err().iter().map(ToString::to_string).collect();
            assert!(text.join("\n").contains(says) && text[0].starts_with("t.toml:1:"), "{text:?}");
        }
    }

    #[test]
    fn deadlines_count_from_the_queued_time_or_the_logical_date() {
        let compile_with = |line: &str| {
            let source = format!("{line}\n[tasks.t]\nkind = \"noop\"\n");
            compile("t.toml", &source, "t", &crate::jobs::Registry::builtin())
        };
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        let queued = compile_with("deadline = \"2h\"").unwrap().deadline.unwrap();
        assert_eq!(queued, Deadline { within: hours(2), after: DeadlineFrom::Queued });
        let logical = compile_with("deadline = { within = \"26h\", after = \"logical_date\" }");
        let logical = logical.unwrap().deadline.unwrap();
        assert_eq!(logical, Deadline { within: hours(26), after: DeadlineFrom::LogicalDate });
        assert_eq!(compile_with("").unwrap().deadline, None);
        for (bad, says) in [
            ("deadline = \"soon\"", "invalid duration"),
            ("deadline = { within = \"1h\", after = \"start\" }", "\"queued\" or \"logical_date\""),
            ("deadline = { after = \"queued\" }", "within"),
        ] {
            let errors = compile_with(bad).unwrap_err();
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            let text = text.join("\n");
            assert!(text.contains(says) && text.starts_with("t.toml:1:"), "{bad}: {text}");
        }
    }
}
