//! `kind = "compact"` and `kind = "expire_snapshots"`: Iceberg table upkeep on a schedule, the
//! "merge small files" / OPTIMIZE and VACUUM steps of a lakehouse.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Job, JobContext, JobError, Stage};
use crate::lake::tables::{table_ident, Compaction, Expiry, OrphanRemoval};

fn check_tables(tables: &[String]) -> Vec<String> {
    let mut problems: Vec<String> =
        tables.iter().filter_map(|t| table_ident(t).err()).map(|e| e.to_string()).collect();
    if tables.is_empty() {
        problems.push("`tables` must name at least one table".into());
    }
    problems
}

/// ```toml
/// [tasks.optimize]
/// kind = "compact"
/// tables = ["bronze.orders", "silver.orders_enriched"]
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactConfig {
    pub tables: Vec<String>,
}

pub struct Compact;

impl Job for Compact {
    const KIND: &'static str = "compact";
    type Config = CompactConfig;
    /// What was done to each table.
    type Output = BTreeMap<String, Compaction>;

    fn validate(&self, config: &CompactConfig, _stage: Stage) -> Vec<String> {
        check_tables(&config.tables)
    }

    async fn run(&self, config: CompactConfig, ctx: JobContext) -> Result<Self::Output, JobError> {
        let tables = ctx.tables.get().await?;
        let mut outputs = BTreeMap::new();
        for name in &config.tables {
            let done = tables.compact(name).await?;
            if let Some(snapshot_id) = done.snapshot_id {
                let files = done.files_after as u64;
                ctx.lineage.wrote_table(name, snapshot_id, "replace", done.rows, files);
            }
            ctx.log.info(format!(
                "{name}: {} data files before, {} after ({} rewritten)",
                done.files_before, done.files_after, done.rewritten_files
            ));
            outputs.insert(name.clone(), done);
        }
        Ok(outputs)
    }
}

/// ```toml
/// [tasks.vacuum]
/// kind = "expire_snapshots"
/// tables = ["bronze.orders"]
/// older_than = "7d"
/// retain_last = 5
/// orphans_older_than = "3d"   # the default
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireConfig {
    pub tables: Vec<String>,
    pub older_than: String,
    #[serde(default = "one")]
    pub retain_last: usize,
    /// Files no snapshot references (left by failed commits) are deleted once this old.
    #[serde(default = "three_days")]
    pub orphans_older_than: String,
}

fn three_days() -> String {
    "3d".to_string()
}

fn one() -> usize {
    1
}

pub struct ExpireSnapshots;

impl Job for ExpireSnapshots {
    const KIND: &'static str = "expire_snapshots";
    type Config = ExpireConfig;
    /// What was done to each table.
    type Output = BTreeMap<String, Vacuumed>;

    fn validate(&self, config: &ExpireConfig, _stage: Stage) -> Vec<String> {
        let mut problems = check_tables(&config.tables);
        problems.extend(crate::time::parse_duration(&config.older_than).err());
        problems.extend(crate::time::parse_duration(&config.orphans_older_than).err());
        problems
    }

    async fn run(&self, config: ExpireConfig, ctx: JobContext) -> Result<Self::Output, JobError> {
        let age = crate::time::parse_duration(&config.older_than).map_err(JobError::Config)?;
        let cutoff = crate::time::millis_ago(age);
        let orphan_age =
            crate::time::parse_duration(&config.orphans_older_than).map_err(JobError::Config)?;
        let tables = ctx.tables.get().await?;
        let mut outputs = BTreeMap::new();
        for name in &config.tables {
            let done = tables.expire_snapshots(name, cutoff, config.retain_last).await?;
            let orphans =
                tables.remove_orphan_files(name, crate::time::millis_ago(orphan_age)).await?;
            ctx.log.info(format!(
                "{name}: expired {} snapshots, deleted {} files, {} old metadata files and {} \
                 orphan files",
                done.expired_snapshots.len(),
                done.deleted_files,
                done.deleted_metadata_files,
                orphans.deleted_files
            ));
            outputs.insert(name.clone(), Vacuumed { expiry: done, orphans });
        }
        Ok(outputs)
    }
}

/// What `expire_snapshots` did to one table.
#[derive(Debug, Serialize)]
pub struct Vacuumed {
    pub expiry: Expiry,
    pub orphans: OrphanRemoval,
}
