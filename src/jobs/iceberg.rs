//! `kind = "iceberg"`: promotes a Parquet dataset (usually an upstream task's output) into an
//! Iceberg table, creating the namespace and table on first run. The new snapshot's id is in
//! the task's outputs, so a run links to the exact table version it produced.

use serde::{Deserialize, Serialize};

use super::{Job, JobContext, JobError, Stage};
use crate::lake::tables::{table_ident, PartitionField, WriteMode};

/// ```toml
/// [tasks.promote_orders]
/// kind = "iceberg"
/// table = "bronze.orders"
/// input = "bronze/orders"
/// partition_by = ["day(order_date)"]
/// mode = "replace_partitions"   # or "append" (default), "overwrite"
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcebergConfig {
    /// `namespace.table`.
    pub table: String,
    /// Dataset path in the warehouse.
    pub input: String,
    /// Partition fields, used when the table is created.
    #[serde(default)]
    pub partition_by: Vec<String>,
    #[serde(default = "append")]
    pub mode: WriteMode,
}

fn append() -> WriteMode {
    WriteMode::Append
}

pub struct Iceberg;

impl Job for Iceberg {
    const KIND: &'static str = "iceberg";
    type Config = IcebergConfig;
    type Output = Promoted;

    fn validate(&self, config: &IcebergConfig, stage: Stage) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = table_ident(&config.table) {
            problems.push(e.to_string());
        }
        problems.extend(super::sql::check_path("input", &config.input, stage));
        for field in &config.partition_by {
            if let Err(e) = PartitionField::parse(field) {
                problems.push(e);
            }
        }
        problems
    }

    async fn run(&self, config: IcebergConfig, ctx: JobContext) -> Result<Promoted, JobError> {
        let partition_by =
            PartitionField::parse_all(&config.partition_by).map_err(JobError::Config)?;
        let dataset = ctx.warehouse.dataset(&config.input)?;
        let lineage = ctx.lineage.clone();
        let data = super::blocking(move || {
            let data = dataset.current()?;
            lineage.read_dataset(&dataset)?;
            Ok::<_, JobError>(data)
        })
        .await?;
        let tables = ctx.tables.get().await?;
        let done = tables.promote(&config.table, &data, &partition_by, config.mode).await?;
        let (operation, files) = (config.mode.as_str(), done.files as u64);
        ctx.lineage.wrote_table(&config.table, done.snapshot_id, operation, done.rows, files);
        if done.created {
            ctx.log.info(format!("created table {}", config.table));
        }
        if !done.added_columns.is_empty() {
            ctx.log.info(format!("added columns {}", done.added_columns.join(", ")));
        }
        ctx.log.info(format!(
            "{:?} of {} rows in {} files into {}: snapshot {}",
            config.mode, done.rows, done.files, config.table, done.snapshot_id
        ));
        Ok(Promoted {
            table: config.table,
            snapshot_id: done.snapshot_id,
            rows: done.rows,
            files: done.files,
            added_columns: done.added_columns,
        })
    }
}

/// The outputs of an `iceberg` task.
#[derive(Debug, Serialize)]
pub struct Promoted {
    pub table: String,
    /// The snapshot this try committed.
    pub snapshot_id: i64,
    pub rows: u64,
    pub files: usize,
    /// Columns the data added to the table's schema.
    pub added_columns: Vec<String>,
}
