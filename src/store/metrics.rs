//! Metrics jobs reported (see `jobs::Metrics`): written with a try's result, read by
//! `/metrics`. One row per metric name and label set.

use std::collections::BTreeMap;

use sqlx::FromRow;
use sqlx::{Any, AnyConnection, Executor};

use super::Result;
use crate::domain::{MetricKind, MetricSample};
use crate::time::Micros;

/// Adds counters to their stored values and replaces gauges.
pub(super) async fn record(
    tx: &mut AnyConnection,
    samples: &[MetricSample],
    now: Micros,
) -> Result<()> {
    for sample in samples {
        let labels = serde_json::to_string(&sample.labels).unwrap_or_else(|_| "{}".into());
        let update = match sample.kind {
            MetricKind::Counter => "job_metrics.value + excluded.value",
            MetricKind::Gauge => "excluded.value",
        };
        let sql = format!(
            "INSERT INTO job_metrics (name, labels, kind, help, value, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name, labels) DO UPDATE SET value = {update}, kind = excluded.kind, \
             help = excluded.help, updated_at = excluded.updated_at"
        );
        sqlx::query(&sql)
            .bind(&sample.name)
            .bind(labels)
            .bind(sample.kind.as_str())
            .bind(&sample.help)
            .bind(sample.value)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

#[derive(FromRow)]
struct Row {
    name: String,
    labels: String,
    kind: String,
    help: String,
    value: f64,
}

/// Every stored metric, by name then labels.
pub async fn all(db: impl Executor<'_, Database = Any>) -> Result<Vec<MetricSample>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, labels, kind, help, value FROM job_metrics ORDER BY name, labels",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| MetricSample {
            labels: serde_json::from_str::<BTreeMap<String, String>>(&row.labels)
                .unwrap_or_default(),
            kind: if row.kind == "counter" { MetricKind::Counter } else { MetricKind::Gauge },
            name: row.name,
            help: row.help,
            value: row.value,
        })
        .collect())
}
