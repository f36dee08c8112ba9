//! Reading datasets into Polars frames and writing frames into new dataset versions (and into
//! the staging files a table promotion lays out by partition). A version is one file, a hive
//! folder per partition value, or one file clustered by some columns ([`clustered`]).

mod clustered;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::polars_utils::compression::ZstdLevel;
use polars::prelude::file_provider::{FileProviderType, IcebergPathProvider};
use polars::prelude::{col, ParquetCompression, PlSmallStr};
use polars::prelude::{
    len, DataType, Expr, FileWriteFormat, IdxSize, IntoLazy, LazyCsvReader, LazyFileListReader,
    LazyFrame, LazyJsonLineReader, ParquetWriteOptions, ParquetWriter, PartitionStrategy,
    PlRefPath, ScanArgsParquet, SchemaRef, SinkDestination, SinkTarget, UnifiedSinkArgs,
};
use polars_buffer::Buffer;
use serde::Deserialize;

use super::engine::{collect_streaming, rewritten_for, Engine};
use super::{io, Dataset, LakeError, PendingVersion, Result};

/// File formats the lake reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    /// JSON lines: one object per line.
    Jsonl,
    Parquet,
}

impl Format {
    /// The format a file's extension names.
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// How to read a dataset.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Default: from the file extensions.
    pub format: Option<Format>,
    /// CSV and JSON lines: column types to read with instead of inferring them.
    pub schema: Option<SchemaRef>,
}

/// Data files under `path` (itself, if it is a file), skipping hidden and `_`-prefixed entries.
pub fn data_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if Format::of(&path).is_some() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn pl_paths(files: &[PathBuf]) -> Buffer<PlRefPath> {
    files.iter().map(|f| PlRefPath::new(f.to_string_lossy().as_ref())).collect()
}

/// Lazily reads the current version of `dataset`: every data file in it, as one frame.
pub fn scan(dataset: &Dataset, options: &ScanOptions) -> Result<LazyFrame> {
    let path = dataset.current()?;
    let files = data_files(&path)?;
    let Some(first) = files.first() else {
        return Err(LakeError::Missing(format!(
            "{} (no data files in {})",
            dataset.name(),
            path.display()
        )));
    };
    let format = options.format.or_else(|| Format::of(first)).unwrap_or(Format::Parquet);
    let frame = match format {
        Format::Parquet => {
            LazyFrame::scan_parquet_files(pl_paths(&files), ScanArgsParquet::default())?
        }
        Format::Csv => LazyCsvReader::new_paths(pl_paths(&files))
            .with_has_header(true)
            .with_infer_schema_length(Some(10_000))
            .with_schema(options.schema.clone())
            .with_truncate_ragged_lines(true)
            // A value that does not fit the inferred type becomes null instead of failing the
            // read; declare a schema (ingest) to quarantine such rows instead.
            .with_ignore_errors(options.schema.is_none())
            .finish()?,
        Format::Jsonl => LazyJsonLineReader::new_paths(pl_paths(&files))
            .with_infer_schema_length(std::num::NonZeroUsize::new(10_000))
            .with_schema(options.schema.clone())
            .finish()?,
    };
    Ok(frame)
}

/// What a write produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
    pub files: u64,
}

/// Streams `frame` into a new version of `dataset` as Parquet, hive-partitioned by
/// `partition_by` (the partition columns stay in the files too), and publishes it.
pub fn sink_parquet(
    frame: LazyFrame,
    dataset: &Dataset,
    partition_by: &[String],
) -> Result<Written> {
    let (pending, written) = write_parquet(frame, dataset, partition_by, Engine::Streaming)?;
    pending.commit()?;
    Ok(written)
}

/// Like [`sink_parquet`], but leaves the new version unpublished (see [`super::Publication`]),
/// and computes `frame` on `engine` (the in-memory one computes it whole before writing).
pub fn write_parquet(
    frame: LazyFrame,
    dataset: &Dataset,
    partition_by: &[String],
    engine: Engine,
) -> Result<(PendingVersion, Written)> {
    let frame = widen_small_integers(computed_on(frame, engine)?, partition_by)?;
    let pending = dataset.begin()?;
    if partition_by.is_empty() {
        write_file(frame, &pending.dir().join("part-0.parquet"))?;
        let written = measure(pending.dir())?;
        return Ok((pending, written));
    }
    let keys = partition_by.iter().map(|c| col(c.as_str())).collect();
    sink_by_keys(frame, pending.dir(), keys, PartitionFiles::Hive)?;
    let written = measure(pending.dir())?;
    Ok((pending, written))
}

/// Computes `frame` and writes it into a new, unpublished version of `dataset` as one Parquet
/// file clustered by the columns `cluster_by`: a row group per value, in ascending order (see
/// [`clustered`]).
pub fn write_parquet_clustered(
    frame: LazyFrame,
    dataset: &Dataset,
    cluster_by: &[String],
) -> Result<(PendingVersion, Written)> {
    let mut data = super::engine::collect(frame, Engine::Streaming)?;
    // One chunk per column: gathering a row group's rows from many chunks is slower.
    data.rechunk_mut_par();
    let pending = dataset.begin()?;
    clustered::write_clustered_file(&data, cluster_by, &pending.dir().join("part-0.parquet"))?;
    drop(data);
    let written = measure(pending.dir())?;
    Ok((pending, written))
}

/// How a partitioned write lays out its files under its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionFiles {
    /// In hive folders (`key=value/`) with the key columns kept in the rows: a dataset's
    /// layout, which readers can prune by path.
    Hive,
    /// Side by side in the one folder, named after a hash of the key values, without the key
    /// columns: staging files that are copied into an Iceberg table. No folder per partition
    /// is made (nor removed later): on ext4 each costs as much as the file in it.
    Staging,
}

/// Streams `frame` into Parquet files under `dir`, one per value of `keys`, laid out as
/// `files` says.
pub fn sink_by_keys(
    frame: LazyFrame,
    dir: &Path,
    keys: Vec<Expr>,
    files: PartitionFiles,
) -> Result<()> {
    let (file_path_provider, include_keys) = match files {
        PartitionFiles::Hive => (None, true),
        PartitionFiles::Staging => {
            // Polars fills in the (empty) prefix with a fresh UUID.
            let flat = IcebergPathProvider {
                extension: PlSmallStr::from_static("parquet"),
                file_part_prefix: String::new(),
            };
            (Some(FileProviderType::Iceberg(flat)), false)
        }
    };
    let format = parquet_format();
    let args = UnifiedSinkArgs { mkdir: true, ..Default::default() };
    let destination = SinkDestination::Partitioned {
        base_path: PlRefPath::new(dir.to_string_lossy().as_ref()),
        file_path_provider,
        partition_strategy: PartitionStrategy::Keyed {
            keys,
            include_keys,
            keys_pre_grouped: false,
        },
        max_rows_per_file: IdxSize::MAX,
        approximate_bytes_per_file: u64::MAX,
    };
    let plan = frame.sink(destination, format, args)?;
    streaming(plan).ok_or_else(|| {
        LakeError::NotSupported(
            "Polars' streaming engine cannot run this query into a partitioned dataset (a \
             cross join filtered by an inequality, say); compute it without the join, with \
             a window function such as MAX(x) OVER ()"
                .into(),
        )
    })?
}

/// Lazily reads the Parquet files `files` as one frame.
pub fn scan_parquet_files(files: &[PathBuf]) -> Result<LazyFrame> {
    Ok(LazyFrame::scan_parquet_files(pl_paths(files), ScanArgsParquet::default())?)
}

/// Streams `frame` into `dir/part-0.parquet`, a folder of its own (staging for a table write).
pub fn write_parquet_folder(frame: LazyFrame, dir: &Path, engine: Engine) -> Result<Written> {
    write_file(computed_on(frame, engine)?, &dir.join("part-0.parquet"))?;
    measure(dir)
}

/// `frame` for the writers, which stream it: rewritten for `engine`, and computed first when
/// the in-memory engine is the faster one for it.
fn computed_on(frame: LazyFrame, engine: Engine) -> Result<LazyFrame> {
    let frame = rewritten_for(frame, engine);
    Ok(match engine {
        Engine::Streaming => frame,
        Engine::InMemory => frame.collect()?.lazy(),
    })
}

/// Streams `frame` into the Parquet file `file`; a plan Polars' streaming engine cannot run is
/// computed in memory and written whole.
fn write_file(frame: LazyFrame, file: &Path) -> Result<()> {
    let format = parquet_format();
    let args = UnifiedSinkArgs { mkdir: true, ..Default::default() };
    let destination = SinkDestination::File {
        target: SinkTarget::Path(PlRefPath::new(file.to_string_lossy().as_ref())),
    };
    if let Some(done) = streaming(frame.clone().sink(destination, format, args)?) {
        return done;
    }
    // The streaming engine rejected the plan: compute it in memory.
    let mut data = frame.collect()?;
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let out = std::fs::File::create(file).map_err(io(file))?;
    ParquetWriter::new(out).with_compression(compression()).finish(&mut data)?;
    Ok(())
}

/// The compression of every Parquet file the lake writes: zstd at level 1, also the level of
/// the table files lakeward writes itself, so that files copied into a table match them.
/// Against Polars' default, level 3, ingest and the silver join each take 0.3–0.7 s less at
/// 10M orders, for files about 5% larger that the quality checks read up to 0.3 s slower
/// (README, "datasets at zstd level 1").
fn compression() -> ParquetCompression {
    ParquetCompression::Zstd(Some(ZstdLevel::try_new(1).expect("1 is a valid zstd level")))
}

fn parquet_format() -> FileWriteFormat {
    let options = ParquetWriteOptions { compression: compression(), ..Default::default() };
    FileWriteFormat::Parquet(Arc::new(options))
}

/// Runs a sink plan on Polars' streaming engine; `None` when the engine rejects the plan.
fn streaming(plan: LazyFrame) -> Option<Result<()>> {
    collect_streaming(plan).map(|done| done.map(|_| ()).map_err(LakeError::from))
}

/// Polars cannot write 8- and 16-bit integers into partition paths (SQL's `EXTRACT(MONTH …)`
/// gives one), so such partition columns are widened to 32 bits.
fn widen_small_integers(frame: LazyFrame, partition_by: &[String]) -> Result<LazyFrame> {
    if partition_by.is_empty() {
        return Ok(frame);
    }
    let schema = frame.clone().collect_schema()?;
    let small = [DataType::Int8, DataType::Int16, DataType::UInt8, DataType::UInt16];
    let widened: Vec<_> = partition_by
        .iter()
        .filter(|c| schema.get(c.as_str()).is_some_and(|t| small.contains(t)))
        .map(|c| col(c.as_str()).cast(DataType::Int32))
        .collect();
    Ok(if widened.is_empty() { frame } else { frame.with_columns(widened) })
}

/// Row, byte and file counts of the Parquet files under `dir`.
fn measure(dir: &Path) -> Result<Written> {
    let files = data_files(dir)?;
    let mut bytes = 0;
    for file in &files {
        bytes += std::fs::metadata(file).map_err(io(file))?.len();
    }
    let rows = if files.is_empty() {
        0
    } else {
        let counted = LazyFrame::scan_parquet_files(pl_paths(&files), ScanArgsParquet::default())?
            .select([len()])
            .collect()?;
        counted.column("len")?.get(0)?.extract::<u64>().unwrap_or(0)
    };
    Ok(Written { rows, bytes, files: files.len() as u64 })
}

#[cfg(test)]
mod tests {
    use polars::prelude::{df, IntoLazy};

    use super::*;
    use crate::lake::Warehouse;

    #[test]
    fn parquet_round_trip_with_partitions() {
        let root = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(root.path().to_str().unwrap()).unwrap();
        let dataset = warehouse.dataset("gold/sales").unwrap();
        let frame =
            df!("region" => ["eu", "us", "eu"], "amount" => [1.5, 2.0, 3.0]).unwrap().lazy();
        let written = sink_parquet(frame, &dataset, &["region".to_string()]).unwrap();
        assert_eq!((written.rows, written.files), (3, 2));
        assert!(dataset.current().unwrap().join("region=eu").is_dir());
        let back = scan(&dataset, &ScanOptions::default()).unwrap().collect().unwrap();
        assert_eq!(back.height(), 3);
        let sum = back.lazy().select([col("amount").sum()]).collect().unwrap();
        let total = sum.column("amount").unwrap().get(0).unwrap().extract::<f64>().unwrap();
        assert_eq!(total, 6.5);
    }

    #[test]
    fn both_engines_write_the_same_partitioned_version() {
        let root = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(root.path().to_str().unwrap()).unwrap();
        let frame = df!("region" => ["eu", "us", "eu"], "n" => [1i64, 2, 3]).unwrap().lazy();
        let totals = frame.group_by([col("region")]).agg([col("n").sum()]);
        let mut read = Vec::new();
        for (path, engine) in [("gold/a", Engine::Streaming), ("gold/b", Engine::InMemory)] {
            let dataset = warehouse.dataset(path).unwrap();
            let partitions = ["region".to_string()];
            let (version, written) =
                write_parquet(totals.clone(), &dataset, &partitions, engine).unwrap();
            version.commit().unwrap();
            assert_eq!((written.rows, written.files), (2, 2), "{engine:?}");
            let back = scan(&dataset, &ScanOptions::default()).unwrap();
            read.push(back.sort(["region"], Default::default()).collect().unwrap());
        }
        assert_eq!(read[0], read[1]);
        assert_eq!(read[0].column("n").unwrap().i64().unwrap().get(0), Some(4));
    }
}
