//! The DAG model: what a DAG file means once it has been compiled and validated.
//!
//! A DAG file is TOML (see the README for the format). [`compile`] turns its text into a
//! [`Dag`] or into every [`Diagnostic`] it can find; [`folder`] loads a whole folder, keeping
//! broken files as import errors. This module knows nothing of the database, HTTP or execution.

pub mod compile;
pub mod diagnostic;
pub mod folder;
pub mod graph;
pub mod params;
pub mod template;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use indexmap::IndexMap;
use serde::Deserialize;

pub use compile::compile;
pub use diagnostic::Diagnostic;
pub use params::{ParamSpec, ParamType};

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
    pub schedule: Option<Schedule>,
    pub timezone: Tz,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
    pub max_active_runs: u32,
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
    pub retry_delay: Duration,
    pub timeout: Option<Duration>,
    /// Queue the task is sent to; workers claim from the queues they serve.
    pub queue: String,
    /// The kind-specific fields, with their templates not yet rendered.
    pub config: toml::Table,
}

impl Task {
    /// How many tries the task gets in all: the first plus its retries.
    pub fn max_tries(&self) -> u32 {
        self.retries + 1
    }
}

/// When a task may run, given the states of its upstream tasks (Airflow's trigger rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
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

impl Dag {
    /// Tasks that list `task_id` in their `depends_on`.
    pub fn downstream_of<'a>(&'a self, task_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks.values().filter(move |t| t.depends_on.iter().any(|d| d == task_id))
    }
}
