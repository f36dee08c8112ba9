//! `kind = "report"`: SQL metrics over datasets, written as one JSON document.
//!
//! Each metric is a query returning one row: a single column gives the value itself, several
//! columns give an object. The document (for example `gold/kpi_report.json`) is replaced
//! atomically and also stored as the task's outputs.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::frame_json;
use super::sql::{check_inputs, check_path, check_query, register_inputs};
use super::{Job, JobContext, JobError, Quoting, Stage};
use crate::lake::engine::{self, Engine};

/// Fields of a `report` task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Table name in the queries → dataset path.
    pub inputs: IndexMap<String, String>,
    /// Warehouse file to write, e.g. `gold/kpi_report.json`.
    pub output: String,
    /// Metric name → a query returning one row.
    pub metrics: IndexMap<String, String>,
}

pub struct Report;

impl Job for Report {
    const KIND: &'static str = "report";
    type Config = ReportConfig;
    type Output = Reported;
    const QUOTED_FIELDS: &'static [(&'static str, Quoting)] = &[("metrics.*", Quoting::Sql)];

    fn validate(&self, config: &ReportConfig, stage: Stage) -> Vec<String> {
        let mut problems = check_inputs(&config.inputs, stage);
        problems.extend(check_path("output", &config.output, stage));
        let tables: Vec<&str> = config.inputs.keys().map(String::as_str).collect();
        for (name, query) in &config.metrics {
            problems.extend(
                check_query(query, &tables, stage)
                    .into_iter()
                    .map(|p| format!("metric `{name}`: {p}")),
            );
        }
        if config.metrics.is_empty() {
            problems.push("`metrics` must list at least one metric".to_string());
        }
        problems
    }

    async fn run(&self, config: ReportConfig, ctx: JobContext) -> Result<Reported, JobError> {
        let warehouse = ctx.warehouse.clone();
        let logical_date = ctx.logical_date.to_rfc3339();
        let run_id = ctx.run_id.clone();
        let lineage = ctx.lineage.clone();
        let (metrics, bytes) = super::blocking(move || {
            let mut sql = register_inputs(&warehouse, &config.inputs, &lineage)?;
            let mut frames = Vec::new();
            for (name, query) in &config.metrics {
                let frame = sql.execute(query).map_err(|e| in_metric(name, e))?;
                frames.push((frame, Engine::for_sql(query)));
            }
            // All at once: Polars runs them side by side, sharing what their plans share.
            let answers = engine::collect_all(frames);
            let mut metrics = Map::new();
            for ((name, _), answer) in config.metrics.iter().zip(answers) {
                let mut frame = answer.map_err(|e| in_metric(name, e))?;
                if frame.height() != 1 {
                    return Err(JobError::Failed(format!(
                        "metric `{name}` returned {} rows, expected 1",
                        frame.height()
                    )));
                }
                let row = match frame_json::rows(&mut frame) {
                    Value::Array(mut rows) => rows.pop().unwrap_or(Value::Null),
                    other => other,
                };
                let value = match row {
                    Value::Object(columns) if columns.len() == 1 => {
                        columns.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null)
                    }
                    other => other,
                };
                metrics.insert(name.clone(), value);
            }
            let document =
                json!({ "logical_date": logical_date, "run_id": run_id, "metrics": metrics });
            let bytes = warehouse.write_json(&config.output, &document)?;
            Ok::<_, JobError>((metrics, bytes))
        })
        .await?;
        ctx.log.info(format!("{} metrics: {}", metrics.len(), Value::Object(metrics.clone())));
        Ok(Reported { metrics, bytes })
    }
}

fn in_metric(name: &str, error: polars::error::PolarsError) -> JobError {
    JobError::from(error).context(format!("metric `{name}`"))
}

/// The outputs of a `report` task: each metric's value, and the size of the document.
#[derive(Debug, Serialize)]
pub struct Reported {
    pub metrics: Map<String, Value>,
    pub bytes: u64,
}
