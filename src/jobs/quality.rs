//! `kind = "quality"`: declarative data checks. A failed `error` check fails the task with a
//! report naming each failed check, how many rows fail it and a few of them; `warn` checks are
//! reported without failing. Every result is stored in the task's outputs. All checks of a
//! dataset are measured in one scan of it; only failing checks read it again, for samples.
//!
//! ```toml
//! [tasks.validate]
//! kind = "quality"
//! datasets = { orders = "bronze/orders", customers = "bronze/customers" }
//! checks = [
//!   { check = "not_null", dataset = "orders", columns = ["order_id", "customer_id"] },
//!   { check = "unique", dataset = "orders", columns = ["order_id"] },
//!   { check = "accepted_values", dataset = "orders", column = "status", values = ["completed", "pending", "cancelled"] },
//!   { check = "range", dataset = "orders", column = "quantity", min = 1, severity = "warn" },
//!   { check = "row_count", dataset = "orders", min = 1 },
//!   { check = "relationship", dataset = "orders", column = "customer_id", to = "customers", field = "customer_id" },
//!   { check = "sql", dataset = "orders", predicate = "total_amount >= 0" },
//! ]
//! ```

use indexmap::IndexMap;
use polars::prelude::{
    col, len, lit, DataType, Expr, JoinArgs, JoinType, LazyFrame, NamedFrom, Series,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::frame_json;
use super::sql::{check_inputs, scan_input};
use super::{Job, JobContext, JobError, Quoting, Stage};
use crate::lake::Warehouse;

/// Fields of a `quality` task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Name used by the checks → dataset path.
    pub datasets: IndexMap<String, String>,
    pub checks: Vec<Check>,
}

/// Which rule a check applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// `columns` (or `column`) have no nulls.
    NotNull,
    /// No two rows share the values of `columns` (or `column`).
    Unique,
    /// `column` only holds one of `values` (nulls pass).
    AcceptedValues,
    /// `column` lies within `min` and/or `max` (nulls pass).
    Range,
    /// The dataset has between `min` and `max` rows.
    RowCount,
    /// Every non-null `column` value exists in `field` of dataset `to` (a foreign key).
    Relationship,
    /// Every row satisfies the SQL boolean expression `predicate`.
    Sql,
}

impl CheckKind {
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::NotNull => "not_null",
            CheckKind::Unique => "unique",
            CheckKind::AcceptedValues => "accepted_values",
            CheckKind::Range => "range",
            CheckKind::RowCount => "row_count",
            CheckKind::Relationship => "relationship",
            CheckKind::Sql => "sql",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Error,
    Warn,
}

/// One check. Which fields apply depends on `check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub check: CheckKind,
    /// A key of `datasets`.
    pub dataset: String,
    #[serde(default)]
    pub severity: Severity,
    /// Shown in reports; default derived from the check.
    pub name: Option<String>,
    pub column: Option<String>,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<toml::Value>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub to: Option<String>,
    pub field: Option<String>,
    pub predicate: Option<String>,
}

impl Check {
    fn columns(&self) -> Vec<String> {
        let mut columns = self.columns.clone();
        columns.extend(self.column.clone());
        columns
    }

    fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let what = match self.check {
            CheckKind::RowCount => String::new(),
            CheckKind::Sql => format!(" `{}`", self.predicate.as_deref().unwrap_or_default()),
            CheckKind::Relationship => format!(
                " {} -> {}.{}",
                self.column.as_deref().unwrap_or_default(),
                self.to.as_deref().unwrap_or_default(),
                self.field.as_deref().unwrap_or_default()
            ),
            _ => format!(" {}", self.columns().join(", ")),
        };
        format!("{}.{}{what}", self.dataset, self.check.name())
    }

    /// What is missing for this kind of check, if anything.
    fn problems(&self, datasets: &IndexMap<String, String>, stage: Stage) -> Vec<String> {
        let mut problems = Vec::new();
        let label = self.label();
        let mut need = |ok: bool, what: &str| {
            if !ok {
                problems.push(format!("check `{label}`: {what}"));
            }
        };
        need(datasets.contains_key(&self.dataset), &format!("unknown dataset `{}`", self.dataset));
        match self.check {
            CheckKind::NotNull | CheckKind::Unique => {
                need(!self.columns().is_empty(), "needs `column` or `columns`")
            }
            CheckKind::AcceptedValues => {
                need(self.column.is_some(), "needs `column`");
                need(!self.values.is_empty(), "needs `values`");
            }
            CheckKind::Range => {
                need(self.column.is_some(), "needs `column`");
                need(self.min.is_some() || self.max.is_some(), "needs `min` or `max`");
            }
            CheckKind::RowCount => {
                need(self.min.is_some() || self.max.is_some(), "needs `min` or `max`")
            }
            CheckKind::Relationship => {
                need(self.column.is_some() && self.field.is_some(), "needs `column` and `field`");
                let to = self.to.as_deref().unwrap_or_default();
                need(
                    datasets.contains_key(to),
                    &format!("`to` must name one of `datasets`, got `{to}`"),
                );
            }
            CheckKind::Sql => {
                let predicate = self.predicate.as_deref().unwrap_or_default();
                need(!predicate.trim().is_empty(), "needs `predicate`");
                let query = format!("SELECT * FROM t WHERE NOT ({predicate})");
                for problem in super::sql::check_query(&query, &["t"], stage) {
                    need(false, &format!("invalid `predicate`: {problem}"));
                }
            }
        }
        problems
    }
}

pub struct Quality;

impl Job for Quality {
    const KIND: &'static str = "quality";
    type Config = QualityConfig;
    type Output = Checked;
    const QUOTED_FIELDS: &'static [(&'static str, Quoting)] =
        &[("checks.*.predicate", Quoting::Sql)];

    fn validate(&self, config: &QualityConfig, stage: Stage) -> Vec<String> {
        let mut problems = check_inputs(&config.datasets, stage);
        if config.checks.is_empty() {
            problems.push("`checks` must list at least one check".to_string());
        }
        for check in &config.checks {
            problems.extend(check.problems(&config.datasets, stage));
        }
        problems
    }

    async fn run(&self, config: QualityConfig, ctx: JobContext) -> Result<Checked, JobError> {
        let warehouse = ctx.warehouse.clone();
        let log = ctx.log.clone();
        let lineage = ctx.lineage.clone();
        let results = super::blocking(move || run_checks(&warehouse, &config, &lineage)).await?;
        let mut report = Vec::new();
        for r in &results {
            let status = if r.passed {
                "passed"
            } else if r.severity == Severity::Warn {
                "WARNING"
            } else {
                "FAILED"
            };
            log.info(format!("{status:<7} {} ({} failing rows)", r.label, r.failing));
            if !r.passed && r.severity == Severity::Error {
                report.push(format!("{}: {} failing rows, e.g. {}", r.label, r.failing, r.sample));
            }
        }
        let failed = |severity: Severity| {
            results.iter().filter(|r| !r.passed && r.severity == severity).count()
        };
        let outputs = Checked {
            passed: results.iter().filter(|r| r.passed).count(),
            failed_errors: failed(Severity::Error),
            failed_warnings: failed(Severity::Warn),
            checks: results.iter().map(CheckResult::outcome).collect(),
        };
        if !report.is_empty() {
            let message =
                format!("{} quality check(s) failed:\n{}", report.len(), report.join("\n"));
            return Err(JobError::Rejected { message, outputs: super::to_outputs(&outputs)? });
        }
        Ok(outputs)
    }
}

/// The outputs of a `quality` task (also stored with a try that failed its checks).
#[derive(Debug, Serialize)]
pub struct Checked {
    pub checks: Vec<CheckOutcome>,
    pub passed: usize,
    pub failed_errors: usize,
    pub failed_warnings: usize,
}

/// How one check went, with sample rows of a failure.
#[derive(Debug, Serialize)]
pub struct CheckOutcome {
    pub name: String,
    pub check: &'static str,
    pub severity: &'static str,
    pub passed: bool,
    pub failing_rows: u64,
    pub sample: Value,
}

struct CheckResult {
    label: String,
    check: CheckKind,
    severity: Severity,
    passed: bool,
    failing: u64,
    sample: Value,
}

impl CheckResult {
    fn outcome(&self) -> CheckOutcome {
        CheckOutcome {
            name: self.label.clone(),
            check: self.check.name(),
            severity: if self.severity == Severity::Error { "error" } else { "warn" },
            passed: self.passed,
            failing_rows: self.failing,
            sample: self.sample.clone(),
        }
    }
}

fn count(frame: LazyFrame) -> Result<u64, JobError> {
    let counted = frame.select([len().alias("n")]).collect()?;
    Ok(counted.column("n")?.get(0)?.extract::<u64>().unwrap_or(0))
}

const SAMPLE_ROWS: u32 = 5;

/// How a check is measured in its dataset's one scan.
enum Measure {
    /// Rows for which this condition is true fail (nulls do not).
    Condition(Expr),
    /// A single-column `unique`: the column's distinct count says whether any key repeats
    /// (the failing rows are then found with a group-by).
    Distinct(String),
    /// The dataset's row count.
    Rows,
    /// Only by a query of its own (multi-column `unique`, a predicate Polars cannot turn
    /// into an expression).
    Apart,
}

/// Runs the checks with one scan per dataset: every row condition, distinct count and row
/// count of a dataset's checks is an aggregate of the same `select`. Only checks that fail
/// (and those with no row condition) read their dataset again, for their failing rows.
fn run_checks(
    warehouse: &Warehouse,
    config: &QualityConfig,
    lineage: &super::Lineage,
) -> Result<Vec<CheckResult>, JobError> {
    let mut frames = IndexMap::new();
    for (name, path) in &config.datasets {
        frames.insert(name.clone(), scan_input(warehouse, path, lineage)?);
    }
    let measures =
        config.checks.iter().map(|check| measure(check, &frames)).collect::<Result<Vec<_>, _>>()?;
    let mut values: Vec<u64> = vec![0; config.checks.len()];
    let mut rows: IndexMap<&str, u64> = IndexMap::new();
    for (name, frame) in &frames {
        let own: Vec<(usize, &Measure)> = measures
            .iter()
            .enumerate()
            .filter(|(i, _)| &config.checks[*i].dataset == name)
            .collect();
        if own.is_empty() {
            continue;
        }
        let alias = |i: usize| format!("_check_{i}");
        let mut aggregates = vec![len().alias("_rows")];
        for (i, measure) in &own {
            match measure {
                Measure::Condition(failing) => {
                    aggregates.push(failing.clone().sum().alias(alias(*i)))
                }
                Measure::Distinct(column) => {
                    aggregates.push(col(column.as_str()).n_unique().alias(alias(*i)))
                }
                Measure::Rows | Measure::Apart => {}
            }
        }
        let scanned = frame.clone().select(aggregates).collect()?;
        let value = |column: &str| -> Result<u64, JobError> {
            Ok(scanned.column(column)?.get(0)?.extract::<u64>().unwrap_or(0))
        };
        rows.insert(name.as_str(), value("_rows")?);
        for (i, measure) in own {
            if matches!(measure, Measure::Condition(_) | Measure::Distinct(_)) {
                values[i] = value(&alias(i))?;
            }
        }
    }
    let mut results = Vec::new();
    for (i, (check, measure)) in config.checks.iter().zip(measures).enumerate() {
        let data = frames[&check.dataset].clone();
        let dataset_rows = rows.get(check.dataset.as_str()).copied().unwrap_or(0);
        let (failing, failing_rows) = match measure {
            Measure::Rows => {
                let within = check.min.is_none_or(|m| dataset_rows as f64 >= m)
                    && check.max.is_none_or(|m| dataset_rows as f64 <= m);
                results.push(CheckResult {
                    label: check.label(),
                    check: check.check,
                    severity: check.severity,
                    passed: within,
                    failing: if within { 0 } else { dataset_rows },
                    sample: json!({ "rows": dataset_rows, "min": check.min, "max": check.max }),
                });
                continue;
            }
            Measure::Condition(failing) => (values[i], data.filter(failing)),
            Measure::Distinct(_) if values[i] == dataset_rows => (0, data),
            Measure::Distinct(_) | Measure::Apart => {
                let failing_rows = failing_rows(check, data)?;
                (count(failing_rows.clone())?, failing_rows)
            }
        };
        let sample = if failing == 0 {
            Value::Array(Vec::new())
        } else {
            let mut rows = failing_rows.limit(SAMPLE_ROWS).collect()?;
            frame_json::rows(&mut rows)
        };
        results.push(CheckResult {
            label: check.label(),
            check: check.check,
            severity: check.severity,
            passed: failing == 0,
            failing,
            sample,
        });
    }
    Ok(results)
}

/// How `check` is measured; a relationship reads its target's keys here.
fn measure(check: &Check, frames: &IndexMap<String, LazyFrame>) -> Result<Measure, JobError> {
    let measure = match check.check {
        CheckKind::RowCount => Measure::Rows,
        CheckKind::Unique => match check.columns().as_slice() {
            [column] => Measure::Distinct(column.clone()),
            _ => Measure::Apart,
        },
        CheckKind::Relationship => {
            let (column, field) = (
                check.column.as_deref().unwrap_or_default(),
                check.field.as_deref().unwrap_or_default(),
            );
            let to = frames[check.to.as_deref().unwrap_or_default()].clone();
            let keys = to.select([col(field)]).unique(None, Default::default()).collect()?;
            let keys = keys.column(field)?.as_materialized_series().clone();
            let known = col(column).is_in(lit(keys).implode(false), false);
            Measure::Condition(col(column).is_not_null().and(known.not()))
        }
        // Polars' own SQL expressions (lakeward's additions need the query path).
        CheckKind::Sql => match polars::sql::sql_expr(check.predicate.as_deref().unwrap_or("true"))
        {
            Ok(holds) => Measure::Condition(holds.not()),
            Err(_) => Measure::Apart,
        },
        _ => Measure::Condition(row_fails(check)?),
    };
    // A condition naming a missing column would fail the whole scan: say which check it is.
    if let Measure::Condition(failing) = &measure {
        let data = frames[&check.dataset].clone();
        data.select([failing.clone()])
            .collect_schema()
            .map_err(|e| JobError::Failed(format!("check `{}`: {e}", check.label())))?;
    }
    Ok(measure)
}

/// The rows failing a check measured apart (see [`Measure::Apart`]) or a repeated key.
fn failing_rows(check: &Check, data: LazyFrame) -> Result<LazyFrame, JobError> {
    Ok(match check.check {
        CheckKind::Unique => {
            let keys: Vec<Expr> = check.columns().iter().map(|c| col(c.as_str())).collect();
            let repeated = data
                .clone()
                .group_by(keys.clone())
                .agg([len().alias("_rows")])
                .filter(col("_rows").gt(lit(1)))
                .select(keys.clone());
            data.join(repeated, keys.clone(), keys, JoinArgs::new(JoinType::Semi))
        }
        _ => {
            let mut sql = crate::lake::sql_functions::QueryContext::new();
            sql.register("t", data);
            let predicate = check.predicate.as_deref().unwrap_or("true");
            sql.execute(&format!("SELECT * FROM t WHERE NOT ({predicate})"))
                .map_err(|e| JobError::Failed(format!("check `{}`: {e}", check.label())))?
        }
    })
}

/// The condition a row fails for the column-wise checks.
fn row_fails(check: &Check) -> Result<Expr, JobError> {
    let column = || col(check.column.clone().unwrap_or_default().as_str());
    Ok(match check.check {
        CheckKind::NotNull => check
            .columns()
            .iter()
            .map(|c| col(c.as_str()).is_null())
            .reduce(|a, b| a.or(b))
            .unwrap_or(lit(false)),
        CheckKind::AcceptedValues => {
            let values = allowed_values(&check.values)?;
            column().is_not_null().and(column().is_in(lit(values).implode(false), false).not())
        }
        CheckKind::Range => {
            let value = column().cast(DataType::Float64);
            let low = check.min.map(|m| value.clone().lt(lit(m)));
            let high = check.max.map(|m| value.clone().gt(lit(m)));
            [low, high].into_iter().flatten().reduce(|a, b| a.or(b)).unwrap_or(lit(false))
        }
        _ => lit(false),
    })
}

fn allowed_values(values: &[toml::Value]) -> Result<Series, JobError> {
    if values.iter().all(|v| v.is_str()) {
        let strings: Vec<&str> = values.iter().filter_map(|v| v.as_str()).collect();
        Ok(Series::new("values".into(), strings))
    } else if values.iter().all(|v| v.is_integer()) {
        let ints: Vec<i64> = values.iter().filter_map(|v| v.as_integer()).collect();
        Ok(Series::new("values".into(), ints))
    } else {
        Err(JobError::Config("`values` must be all strings or all integers".to_string()))
    }
}
