//! `lakeward tables …`: list, describe, read (time travel, filters, pruning), compact, expire
//! and alter the Iceberg tables of the warehouse.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use arrow_array::RecordBatch;

use crate::config::Config;
use crate::lake::tables::{Alteration, ScanRequest, Tables};
use crate::time::display;

async fn open(config: Config) -> anyhow::Result<Arc<Tables>> {
    let c = super::open(config).await?;
    c.tables().get().await.context("opening the table catalog")
}

fn millis(ms: i64) -> String {
    display(ms.saturating_mul(1000))
}

pub async fn list(config: Config) -> anyhow::Result<ExitCode> {
    let tables = open(config).await?;
    for name in tables.list().await? {
        println!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show(config: Config, name: &str) -> anyhow::Result<ExitCode> {
    let info = open(config).await?.describe(name).await?;
    println!(
        "table     {}\nlocation  {}\nformat    {}",
        info.name, info.location, info.format_version
    );
    match info.current_snapshot {
        Some(id) => println!("snapshot  {id} ({} data files, {} rows)", info.data_files, info.rows),
        None => println!("snapshot  none (empty table)"),
    }
    println!("columns");
    for column in &info.columns {
        println!("  {column}");
    }
    if info.partition_spec.is_empty() {
        println!("partitioned by nothing");
    } else {
        println!("partitioned by");
        for field in &info.partition_spec {
            println!("  {field}");
        }
    }
    println!("properties");
    for (key, value) in &info.properties {
        println!("  {key} = {value}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn history(config: Config, name: &str) -> anyhow::Result<ExitCode> {
    let snapshots = open(config).await?.history(name).await?;
    println!(
        "{:<20} {:<20} {:<10} {:>11} {:>13} {:>11} {:>13} {:>11}",
        "SNAPSHOT",
        "TIME",
        "OPERATION",
        "FILES ADDED",
        "FILES REMOVED",
        "ROWS ADDED",
        "ROWS REMOVED",
        "TOTAL ROWS"
    );
    for s in snapshots {
        println!(
            "{:<20} {:<20} {:<10} {:>11} {:>13} {:>11} {:>13} {:>11}",
            s.snapshot_id,
            millis(s.timestamp_ms),
            s.operation,
            s.added_files,
            s.removed_files,
            s.added_rows,
            s.removed_rows,
            s.total_rows
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `tables scan` was asked.
pub struct ScanArgs {
    pub snapshot: Option<i64>,
    pub as_of: Option<String>,
    pub filter: Option<String>,
    pub limit: usize,
    pub explain: bool,
    pub output: Option<std::path::PathBuf>,
}

pub async fn scan(config: Config, name: &str, args: ScanArgs) -> anyhow::Result<ExitCode> {
    let as_of_ms = match &args.as_of {
        Some(text) => {
            let at = crate::schedule::parse_date(text, chrono_tz::UTC)
                .with_context(|| format!("--as-of `{text}` is not YYYY-MM-DD or RFC 3339"))?;
            Some(at.timestamp_millis())
        }
        None => None,
    };
    let request = ScanRequest { snapshot_id: args.snapshot, as_of_ms, filter: args.filter.clone() };
    let result = open(config).await?.scan(name, &request).await?;
    let rows: usize = result.batches.iter().map(RecordBatch::num_rows).sum();
    if args.explain {
        println!(
            "snapshot {}: planned {} of {} data files{}; {rows} rows",
            result.snapshot_id.map_or("none".into(), |id| id.to_string()),
            result.planned_files,
            result.total_files,
            args.filter.as_deref().map(|f| format!(" for `{f}`")).unwrap_or_default(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &args.output {
        write_output(path, &result.batches)?;
        println!("wrote {rows} rows to {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut shown = Vec::new();
    let mut left = args.limit;
    for batch in &result.batches {
        if left == 0 {
            break;
        }
        let take = left.min(batch.num_rows());
        shown.push(batch.slice(0, take));
        left -= take;
    }
    println!("{}", arrow_cast::pretty::pretty_format_batches(&shown)?);
    println!("{} of {rows} rows", rows.min(args.limit));
    Ok(ExitCode::SUCCESS)
}

fn write_output(path: &Path, batches: &[RecordBatch]) -> anyhow::Result<()> {
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        bail!("no rows to write");
    };
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => {
            let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
            for batch in batches {
                writer.write(batch)?;
            }
            writer.close()?;
        }
        Some("csv") => {
            let mut writer = arrow_csv::Writer::new(file);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        _ => bail!("--output must end in .parquet or .csv"),
    }
    Ok(())
}

pub async fn compact(config: Config, name: &str) -> anyhow::Result<ExitCode> {
    let done = open(config).await?.compact(name).await?;
    match done.snapshot_id {
        Some(id) => println!(
            "rewrote {} small files ({} rows) into {}: {} data files now (snapshot {id})",
            done.rewritten_files,
            done.rows,
            done.files_after - (done.files_before - done.rewritten_files),
            done.files_after
        ),
        None => println!("nothing to compact: no partition has more than one small file"),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn expire(
    config: Config,
    name: &str,
    older_than: std::time::Duration,
    retain_last: usize,
    orphans_older_than: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let tables = open(config).await?;
    let done =
        tables.expire_snapshots(name, crate::time::millis_ago(older_than), retain_last).await?;
    println!(
        "expired {} snapshots, deleted {} files no remaining snapshot uses and {} old metadata \
         files",
        done.expired_snapshots.len(),
        done.deleted_files,
        done.deleted_metadata_files
    );
    let orphans =
        tables.remove_orphan_files(name, crate::time::millis_ago(orphans_older_than)).await?;
    println!(
        "deleted {} orphan files ({} bytes); {} younger than {} kept",
        orphans.deleted_files,
        orphans.deleted_bytes,
        orphans.recent_files_kept,
        humantime::format_duration(orphans_older_than)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn alter(config: Config, name: &str, alteration: Alteration) -> anyhow::Result<ExitCode> {
    open(config).await?.alter(name, &alteration).await?;
    println!("{name} altered");
    Ok(ExitCode::SUCCESS)
}
