//! Task kinds: what a task *does* once a worker has claimed it.
//!
//! Each kind is a [`Job`]: a name (`kind = "shell"` in a DAG file), a configuration type
//! deserialized from the task's other fields (its doc comments are the user documentation), a
//! typed output, a load-time `validate`, and an async `run`. Kinds are registered in one place,
//! [`Registry::builtin`]; a program embedding lakeward can add its own with
//! [`Registry::register`]. Jobs never touch the database: they report through [`JobContext`]
//! (log, progress, lineage), honour its cancellation, and return their output. Lake and table
//! errors convert into [`JobError`] keeping their class, so `?` retries exactly the failures a
//! retry can mend.
//!
//! A kind's fields are checked twice: when the DAG file is loaded ([`Stage::Load`], where text
//! still holding templates is left for later) and again once rendered, just before each try
//! ([`Stage::Rendered`], where nothing is skipped), so a run parameter can never smuggle in what
//! the file itself could not. [`Job::QUOTED_FIELDS`] says which fields are SQL or shell text, so
//! template values are written into them as quoted literals.

mod anomaly;
mod control;
mod frame_json;
mod generate;
mod iceberg;
mod ingest;
mod kafka_ingest;
mod kafka_produce;
pub mod launcher;
mod lineage;
mod log;
mod metrics;
mod noop;
mod quality;
mod report;
mod shell;
mod simulate_files;
mod sql;
pub mod supervise;
mod table_upkeep;
pub mod values;
mod window;

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Deserialize as _;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use toml::de::DeValue;
use toml::Spanned;

use crate::domain::ErrorClass;
use crate::lake::tables::TableError;
use crate::lake::LakeError;
use crate::stream::StreamError;

pub use crate::domain::{LogLine, Stream};
pub use anomaly::{Anomaly, AnomalyConfig, Detected};
pub use control::{cancellation, Cancellation, Canceller, Progress, ProgressCell};
pub use generate::{Generate, GenerateConfig};
pub use iceberg::{Iceberg, IcebergConfig};
pub use ingest::{ColumnType, Ingest, IngestConfig, IngestTable};
pub use kafka_ingest::{KafkaIngest, KafkaIngestConfig, KafkaIngested};
pub use kafka_produce::{KafkaProduce, KafkaProduceConfig, ProducePlan, Produced, Source};
pub use lineage::Lineage;
pub use log::LogSink;
pub use metrics::Metrics;
pub use noop::Noop;
pub use quality::{Check, CheckKind, Quality, QualityConfig, Severity};
pub use report::{Report, ReportConfig};
pub use shell::{Shell, ShellConfig};
pub use simulate_files::{Simulate, SimulateConfig};
pub use sql::{Sql, SqlConfig, SqlOutput};
pub use table_upkeep::{Compact, CompactConfig, ExpireConfig, ExpireSnapshots};
pub use window::{Window, WindowConfig, Windowed};

/// When a task's fields are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The DAG file is being loaded: text holding templates (`{{ … }}`) is checked once rendered.
    Load,
    /// Just before a try: every template has been rendered and every field is checked in full.
    Rendered,
}

impl Stage {
    /// Whether the check of `text` waits for rendering (at load time, for templated text).
    pub fn defers(self, text: &str) -> bool {
        self == Stage::Load && (text.contains("{{") || text.contains("{%"))
    }

    /// What is wrong with these Iceberg table names (`namespace.table`), leaving templated
    /// ones for after rendering.
    fn table_name_problems<'a>(self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        names
            .into_iter()
            .filter(|name| !self.defers(name))
            .filter_map(|name| crate::lake::tables::table_ident(name).err())
            .map(|e| e.to_string())
            .collect()
    }
}

/// How a template writes values into a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// As plain text.
    Text,
    /// As SQL literals: `'it''s'`, `42`, `TRUE`, `NULL`, `('a', 'b')` for a list.
    Sql,
    /// As shell words: single-quoted unless made only of `[A-Za-z0-9_.,:/@%+=-]`.
    Shell,
}

/// A job's published results as stored with the task instance (see [`Job::Output`]).
pub type Outputs = serde_json::Map<String, Value>;

/// Why a job did not succeed.
#[derive(Debug, Error)]
pub enum JobError {
    /// The configuration is wrong even after rendering: a retry cannot help.
    #[error("invalid task configuration: {0}")]
    Config(String),
    /// A command exited with a non-zero code.
    #[error("command exited with code {code}")]
    Exit { code: i32 },
    /// The job ran and failed; a retry may succeed.
    #[error("{0}")]
    Failed(String),
    /// The job ran and found the data wrong (failed checks). Retrying the same data cannot
    /// help; `outputs` say what was found and are stored with the failed try.
    #[error("{message}")]
    Rejected { message: String, outputs: Outputs },
    /// lakeward broke one of its own rules: a retry would fail the same way.
    #[error("internal error (please report it): {0}")]
    Bug(String),
    /// The job stopped because it was asked to (see [`JobContext::cancelled`]).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// The job found it has nothing to do yet (Airflow's `AirflowSkipException`): the task
    /// ends `skipped`, not failed, and its downstream tasks follow their trigger rules.
    #[error("skipped: {0}")]
    Skipped(String),
}

impl JobError {
    /// The same error, its message prefixed by `what` (`"{what}: {message}"`).
    pub fn context(self, what: impl std::fmt::Display) -> JobError {
        match self {
            JobError::Config(m) => JobError::Config(format!("{what}: {m}")),
            JobError::Failed(m) => JobError::Failed(format!("{what}: {m}")),
            JobError::Bug(m) => JobError::Bug(format!("{what}: {m}")),
            other => other,
        }
    }

    /// The job error for a failure of class `class` described by `message`.
    pub fn of_class(class: ErrorClass, message: String) -> JobError {
        match class {
            ErrorClass::Definition => JobError::Config(message),
            ErrorClass::Transient => JobError::Failed(message),
            ErrorClass::Bug => JobError::Bug(message),
        }
    }
}

impl From<LakeError> for JobError {
    fn from(error: LakeError) -> JobError {
        JobError::of_class(error.class(), error.to_string())
    }
}

impl From<TableError> for JobError {
    fn from(error: TableError) -> JobError {
        JobError::of_class(error.class(), error.to_string())
    }
}

impl From<StreamError> for JobError {
    fn from(error: StreamError) -> JobError {
        match error {
            StreamError::Cancelled => JobError::Cancelled("asked to stop".into()),
            other => JobError::of_class(other.class(), other.to_string()),
        }
    }
}

impl From<polars::error::PolarsError> for JobError {
    fn from(error: polars::error::PolarsError) -> JobError {
        JobError::of_class(crate::lake::polars_class(&error), error.to_string())
    }
}

impl JobError {
    /// Whether trying again could give a different result.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            JobError::Config(_)
                | JobError::Rejected { .. }
                | JobError::Bug(_)
                | JobError::Cancelled(_)
                | JobError::Skipped(_)
        )
    }

    /// A retryable failure described by `e` (for `map_err`).
    pub fn failed(e: impl std::fmt::Display) -> JobError {
        JobError::Failed(e.to_string())
    }

    /// Outputs produced before the failure, if any.
    pub fn outputs(&self) -> Option<&Outputs> {
        match self {
            JobError::Rejected { outputs, .. } => Some(outputs),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            JobError::Exit { code } => Some(*code),
            _ => None,
        }
    }
}

/// Runs CPU-heavy job work (Polars, file generation) on the blocking pool, off the async
/// runtime's workers. A panic in `work` becomes a failed try.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, JobError> {
    crate::process::blocking(work)
        .await
        .map_err(|e| JobError::Failed(format!("the job crashed: {e}")))?
}

/// What a running job may know and use.
pub struct JobContext {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: u32,
    /// The run's logical date.
    pub logical_date: chrono::DateTime<chrono::Utc>,
    /// The task's log; lines written here are readable from any lakeward process.
    pub log: LogSink,
    /// Where datasets live.
    pub warehouse: crate::lake::Warehouse,
    /// The Iceberg table catalog (opened on first use).
    pub tables: crate::lake::tables::TablesHandle,
    /// Set when the job must stop: its task was marked or cleared, it timed out, or its worker
    /// is shutting down. A long job checks it and returns [`JobError::Cancelled`].
    pub cancellation: Cancellation,
    /// Where the job reports its progress (see [`control`]).
    pub progress: ProgressCell,
    /// Where the job records the dataset versions and table snapshots it read and wrote.
    pub lineage: Lineage,
    /// Where the job reports metrics for `/metrics`.
    pub metrics: Metrics,
    /// The deployment's Kafka cluster (`[kafka] brokers`, or standalone's demo broker), for
    /// tasks that do not name their own.
    pub kafka: Option<crate::stream::Brokers>,
}

impl JobContext {
    /// Whether the job has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_requested()
    }

    /// Returns once the job has been asked to stop.
    pub async fn cancelled(&self) {
        self.cancellation.clone().wait().await
    }

    /// Reports how far the job has got; also tells the worker the job is alive.
    pub fn report_progress(&self, progress: Progress) {
        self.progress.report(progress);
    }
}

/// A task kind. Implement this to add a custom kind, then [`Registry::register`] it.
pub trait Job: Send + Sync + 'static {
    /// The name DAG files use in `kind = "..."`.
    const KIND: &'static str;
    /// The task's kind-specific fields. Use `#[serde(deny_unknown_fields)]` so typos are errors.
    type Config: DeserializeOwned + Send + 'static;
    /// What a successful try publishes: a struct serialized as a JSON object (`()` for
    /// nothing). Downstream templates read its fields as `outputs.<task>.<field>`.
    type Output: Serialize + Send + 'static;

    /// Fields whose template values are quoted, as dotted paths where `*` matches any key or
    /// list index: `("outputs.*.query", Quoting::Sql)`. Other fields get plain text. A value
    /// passed through `| safe` is inserted raw, and then only the rendered check guards it.
    const QUOTED_FIELDS: &'static [(&'static str, Quoting)] = &[];

    /// Checks beyond what the types express, run when the DAG is loaded and again on the
    /// rendered fields before each try (see [`Stage`]). One message per problem.
    fn validate(&self, _config: &Self::Config, _stage: Stage) -> Vec<String> {
        Vec::new()
    }

    /// Runs one try of the task with its templates rendered; its outputs are stored with the
    /// task instance (as JSON) and readable by downstream templates as `outputs.<task>`.
    fn run(
        &self,
        config: Self::Config,
        ctx: JobContext,
    ) -> impl Future<Output = Result<Self::Output, JobError>> + Send;
}

/// The outputs of a kind as stored: a JSON object (`()` and `null` are no outputs).
pub fn to_outputs(output: &impl Serialize) -> Result<Outputs, JobError> {
    match serde_json::to_value(output) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Outputs::new()),
        Ok(other) => Err(JobError::Bug(format!("outputs must be a JSON object, not {other}"))),
        Err(e) => Err(JobError::Bug(format!("outputs cannot be stored: {e}"))),
    }
}

/// A problem in a task's kind-specific fields; `span` is a byte range in the DAG file.
pub struct ConfigIssue {
    pub span: Option<Range<usize>>,
    pub message: String,
}

type JobFuture = Pin<Box<dyn Future<Output = Result<Outputs, JobError>> + Send>>;

/// A [`Job`] with its types erased, so kinds can live in one map.
trait ErasedJob: Send + Sync {
    fn quoted_fields(&self) -> &'static [(&'static str, Quoting)];
    fn check(&self, config: Spanned<DeValue<'_>>) -> Vec<ConfigIssue>;
    fn run(&self, config: toml::Table, ctx: JobContext) -> JobFuture;
}

struct Erased<J>(Arc<J>);

impl<J: Job> ErasedJob for Erased<J> {
    fn quoted_fields(&self) -> &'static [(&'static str, Quoting)] {
        J::QUOTED_FIELDS
    }

    fn check(&self, config: Spanned<DeValue<'_>>) -> Vec<ConfigIssue> {
        match J::Config::deserialize(config.into_deserializer()) {
            Err(e) => vec![ConfigIssue { span: e.span(), message: e.message().to_string() }],
            Ok(config) => self
                .0
                .validate(&config, Stage::Load)
                .into_iter()
                .map(|message| ConfigIssue { span: None, message })
                .collect(),
        }
    }

    fn run(&self, config: toml::Table, ctx: JobContext) -> JobFuture {
        let job = self.0.clone();
        Box::pin(async move {
            let config = J::Config::deserialize(toml::Value::Table(config))
                .map_err(|e| JobError::Config(e.message().to_string()))?;
            let problems = job.validate(&config, Stage::Rendered);
            if !problems.is_empty() {
                return Err(JobError::Config(problems.join("; ")));
            }
            to_outputs(&job.run(config, ctx).await?)
        })
    }
}

/// The task kinds a process knows, by name.
#[derive(Clone)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn ErasedJob>>,
}

impl Registry {
    /// A registry with no kinds at all.
    pub fn empty() -> Registry {
        Registry { kinds: BTreeMap::new() }
    }

    /// Every kind that ships with lakeward.
    pub fn builtin() -> Registry {
        let mut registry = Registry::empty();
        registry.register(Anomaly);
        registry.register(Compact);
        registry.register(ExpireSnapshots);
        registry.register(Generate);
        registry.register(Iceberg);
        registry.register(Ingest);
        registry.register(KafkaIngest);
        registry.register(KafkaProduce);
        registry.register(Noop);
        registry.register(Quality);
        registry.register(Report);
        registry.register(Shell);
        registry.register(Simulate);
        registry.register(Sql);
        registry.register(Window);
        registry
    }

    /// Adds a kind; a kind of the same name is replaced.
    pub fn register<J: Job>(&mut self, job: J) {
        self.kinds.insert(J::KIND, Arc::new(Erased(Arc::new(job))));
    }

    pub fn kind_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    pub fn contains(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    /// How templates quote values in the fields of `kind` (empty for an unknown kind).
    pub fn quoted_fields(&self, kind: &str) -> &'static [(&'static str, Quoting)] {
        self.kinds.get(kind).map_or(&[], |job| job.quoted_fields())
    }

    /// Checks a task's kind-specific fields at DAG load time. `None` if the kind is unknown.
    pub fn check(&self, kind: &str, config: Spanned<DeValue<'_>>) -> Option<Vec<ConfigIssue>> {
        self.kinds.get(kind).map(|job| job.check(config))
    }

    /// Runs one try of a task whose fields have been rendered.
    pub async fn run(
        &self,
        kind: &str,
        config: toml::Table,
        ctx: JobContext,
    ) -> Result<Outputs, JobError> {
        match self.kinds.get(kind) {
            Some(job) => job.run(config, ctx).await,
            None => Err(JobError::Config(format!("unknown task kind `{kind}`"))),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same class of error is retried, or not, whichever kind meets it.
    #[test]
    fn lake_and_table_errors_keep_their_class_as_job_errors() {
        let cases: Vec<(JobError, bool)> = vec![
            (LakeError::InvalidPath("/etc".into()).into(), false),
            (LakeError::Missing("bronze/orders".into()).into(), true),
            (LakeError::Remote("timed out".into()).into(), true),
            (TableError::Invalid("incompatible type change".into()).into(), false),
            (TableError::Lake(LakeError::InvalidPath("..".into())).into(), false),
            (TableError::Conflict("bronze.orders".into()).into(), true),
            (TableError::Store(crate::store::StoreError::Corrupt("x".into())).into(), false),
            (polars::error::PolarsError::ColumnNotFound("nope".into()).into(), false),
        ];
        for (error, retried) in cases {
            assert_eq!(error.is_retryable(), retried, "{error}");
        }
        let located = JobError::from(TableError::Invalid("bad".into())).context("table `t`");
        assert!(matches!(&located, JobError::Config(m) if m == "table `t`: bad"), "{located}");
    }
}
