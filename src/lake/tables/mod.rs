//! Apache Iceberg tables in the warehouse (format v2), so Spark, Trino, DuckDB or pyiceberg can
//! read what lakeward produces.
//!
//! The catalog is Iceberg's SQL catalog kept in lakeward's own database (`iceberg_tables`,
//! `iceberg_namespace_properties`, the layout other engines' SQL/JDBC catalogs read), with table
//! data and metadata under `<warehouse>/iceberg/`. [`Tables::promote`] turns a Parquet dataset
//! into a table snapshot: it creates the namespace and table on first use (schema from the data,
//! partition spec from the DAG), adds new nullable columns when the data gains them, copies
//! the dataset files that already fit the table, whole or a file per partition of their row
//! groups (`register`; `file_copy` writes the bytes), lays the others out a file per partition with Polars and moves those in (`relayout`), or
//! else decodes and splits them by partition (`write`), and commits them with the chosen
//! [`WriteMode`]; [`Tables::writer`] does the same for record batches as they come, committing
//! only if the table's summary properties still hold what the write began from. A commit may
//! carry the writer's own summary properties, carried forward by later commits (`commit`).
//! `changes` reads what a table gained since a snapshot (incremental readers).
//! `files` names a snapshot's data files for engines that scan Parquet themselves (SQL).
//! `maintenance` compacts small files and expires old snapshots, `orphans` removes files failed
//! commits left; `inspect` describes and scans tables.

mod alter;
mod catalog;
mod changes;
mod commit;
mod file_copy;
mod files;
pub mod inspect;
pub mod location;
mod maintenance;
mod metadata_file;
mod orphans;
mod partition;
mod register;
mod relayout;
mod s3;
mod split;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::arrow::{arrow_schema_to_schema_auto_assign_ids, arrow_type_to_type};
use iceberg::io::LocalFsStorageFactory;
use iceberg::io::StorageFactory;
use iceberg::spec::{NestedField, Schema, Type};
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, TableCreation, TableIdent, TableUpdate};
use iceberg_catalog_rest::RestCatalogBuilder;
use iceberg_catalog_sql::SqlCatalogBuilder;
use thiserror::Error;

use crate::domain::ErrorClass;

pub use alter::Alteration;
pub use catalog::CatalogConfig;
pub use changes::{current_arrow_schema, decode_columns, Appended, AppendedFile};
pub use commit::{WriteMode, MERGE_MANIFESTS_AT};
pub use files::{Comparison, FileSelection, SnapshotFiles};
pub use inspect::{
    number_column, text_column, PartitionInfo, ScanRequest, ScanResult, SchemaInfo, SnapshotInfo,
    TableInfo,
};
pub use maintenance::{Compaction, Expiry};
pub use orphans::OrphanRemoval;
pub use partition::PartitionField;

use crate::lake::Warehouse;
use crate::store::{Store, StoreError};

/// The catalog name lakeward registers its tables under (other engines must use the same).
pub const CATALOG_NAME: &str = "lakeward";

#[derive(Debug, Error)]
pub enum TableError {
    #[error("iceberg: {0}")]
    Iceberg(#[from] iceberg::Error),
    #[error("reading Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid table name `{0}`: expected NAMESPACE.TABLE")]
    BadName(String),
    #[error("no table `{0}`")]
    Missing(String),
    #[error("table {0} was changed by another writer during the commit")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("commit to {table} refused: {reason}")]
    Refused { table: String, reason: String },
    /// Another writer changed what this write built on (a stream's offsets, say).
    #[error("table {table}: another writer changed `{property}` since this write began")]
    Superseded { table: String, property: String },
}

impl TableError {
    /// Whether this is the user's definition, a transient failure, or a bug.
    pub fn class(&self) -> ErrorClass {
        use iceberg::ErrorKind as Kind;
        match self {
            TableError::Iceberg(e) => match e.kind() {
                Kind::DataInvalid
                | Kind::FeatureUnsupported
                | Kind::NamespaceNotFound
                | Kind::TableNotFound
                | Kind::NamespaceAlreadyExists
                | Kind::TableAlreadyExists => ErrorClass::Definition,
                _ => ErrorClass::Transient,
            },
            TableError::Parquet(_) | TableError::Arrow(_) => ErrorClass::Transient,
            TableError::Lake(e) => e.class(),
            TableError::Store(StoreError::Corrupt(_)) => ErrorClass::Bug,
            TableError::Store(_) => ErrorClass::Transient,
            TableError::BadName(_)
            | TableError::Missing(_)
            | TableError::Invalid(_)
            | TableError::Refused { .. } => ErrorClass::Definition,
            TableError::Conflict(_) | TableError::Catalog(_) | TableError::Superseded { .. } => {
                ErrorClass::Transient
            }
        }
    }
}

/// A table about to be written: whether this write created it, and the columns it added.
struct Target {
    table: Table,
    created: bool,
    added_columns: Vec<String>,
}

/// [`register::plan`] on a blocking thread (it reads every file's footer).
async fn plan(
    table: &Table,
    files: Vec<PathBuf>,
) -> Result<(Vec<register::Fit>, Vec<PathBuf>), TableError> {
    let metadata = table.metadata_ref();
    crate::process::blocking(move || register::plan(&metadata, &files))
        .await
        .map_err(|e| TableError::Invalid(format!("reading the files' footers: {e}")))
}

/// A folder removed (with what it holds) when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A unique name prefix for the data files of one write.
fn data_file_prefix() -> String {
    format!("data-{}", crate::random::hex_digits(12))
}

/// The table catalog of one lakeward deployment.
pub struct Tables {
    catalog: Box<dyn Catalog>,
    publisher: catalog::Publisher,
    /// Where tables may live: the warehouse's iceberg folder (the SQL catalog); `None` when a
    /// REST catalog decides.
    confinement: Option<location::Confinement>,
    /// A local folder for files on their way into a table.
    scratch: PathBuf,
    /// What this process's latest commit of each table wrote (see `commit`).
    recent: commit::RecentCommits,
}

/// What one promotion did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Promotion {
    pub table: String,
    pub snapshot_id: i64,
    pub rows: u64,
    pub files: usize,
    /// Columns added to the table's schema by this write.
    pub added_columns: Vec<String>,
    pub created: bool,
}

/// `ns.table` → its catalog identifier.
pub fn table_ident(name: &str) -> Result<TableIdent, TableError> {
    let parts: Vec<&str> = name.split('.').collect();
    let valid = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_');
    if parts.len() < 2 || !parts.iter().all(valid) {
        return Err(TableError::BadName(name.to_string()));
    }
    Ok(TableIdent::from_strs(parts)?)
}

impl Tables {
    /// Opens the table catalog: the SQL catalog in `store`'s database, for tables under
    /// `iceberg/` in the warehouse (a local folder or an `s3://` location), or the REST catalog
    /// `config` names.
    pub async fn open(
        store: &Store,
        warehouse: &Warehouse,
        config: &CatalogConfig,
    ) -> Result<Tables, TableError> {
        let scratch = warehouse.root().join(".staging");
        let storage: Arc<dyn StorageFactory> = match warehouse.remote_location() {
            Some(_) => Arc::new(s3::S3StorageFactory),
            None => Arc::new(LocalFsStorageFactory),
        };
        if let Some(uri) = &config.uri {
            let publisher = catalog::RestCommits::connect(config, uri).await?;
            let mut props = HashMap::from([("uri".to_string(), uri.clone())]);
            if let Some(warehouse) = &config.warehouse {
                props.insert("warehouse".into(), warehouse.clone());
            }
            if let Some(token) = &config.token {
                props.insert("token".into(), token.clone());
            }
            let catalog = RestCatalogBuilder::default()
                .with_storage_factory(storage)
                .load(CATALOG_NAME, props)
                .await?;
            return Ok(Tables {
                catalog: Box::new(catalog),
                publisher: catalog::Publisher::Rest(publisher),
                confinement: None,
                scratch,
                recent: Default::default(),
            });
        }
        let root = tables_location(warehouse)?;
        let catalog = SqlCatalogBuilder::default()
            .warehouse_location(root.clone())
            .with_storage_factory(storage)
            .uri(store.url())
            .load(CATALOG_NAME, HashMap::new())
            .await?;
        Ok(Tables {
            catalog: Box::new(catalog),
            publisher: catalog::Publisher::Sql(store.clone(), Default::default()),
            confinement: Some(location::Confinement::new(root)),
            scratch,
            recent: Default::default(),
        })
    }

    /// Where tables may live, when lakeward's own catalog decides.
    pub fn confinement(&self) -> Option<&location::Confinement> {
        self.confinement.as_ref()
    }

    /// Applies `updates` to `table`'s metadata in the catalog.
    async fn publish(&self, table: &Table, updates: Vec<TableUpdate>) -> Result<(), TableError> {
        self.publisher.publish(table, updates).await
    }

    /// The table `name`, refused if its metadata points outside the warehouse (lakeward
    /// writes and deletes where a table's metadata says).
    pub async fn load(&self, name: &str) -> Result<Table, TableError> {
        let ident = table_ident(name)?;
        if !self.catalog.table_exists(&ident).await? {
            return Err(TableError::Missing(name.to_string()));
        }
        let table = self.catalog.load_table(&ident).await?;
        if let Some(confinement) = &self.confinement {
            confinement.check_metadata(table.metadata())?;
        }
        Ok(table)
    }

    /// Every table, as `ns.table`.
    pub async fn list(&self) -> Result<Vec<String>, TableError> {
        let mut names: Vec<String> = self
            .identifiers()
            .await?
            .iter()
            .map(|t| format!("{}.{}", t.namespace().join("."), t.name()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every table of the catalog's top-level namespaces.
    async fn identifiers(&self) -> Result<Vec<TableIdent>, TableError> {
        let mut tables = Vec::new();
        for namespace in self.catalog.list_namespaces(None).await? {
            tables.extend(self.catalog.list_tables(&namespace).await?);
        }
        Ok(tables)
    }

    /// Writes the Parquet dataset at `data` (a folder or file) into table `name`.
    pub async fn promote(
        &self,
        name: &str,
        data: &Path,
        partition_by: &[PartitionField],
        mode: WriteMode,
    ) -> Result<Promotion, TableError> {
        self.promote_with(name, data, partition_by, mode, &BTreeMap::new()).await
    }

    /// [`Tables::promote`], the snapshot carrying the writer's own summary properties
    /// `summary` (later commits carry them forward until set anew).
    pub async fn promote_with(
        &self,
        name: &str,
        data: &Path,
        partition_by: &[PartitionField],
        mode: WriteMode,
        summary: &BTreeMap<String, String>,
    ) -> Result<Promotion, TableError> {
        self.promote_expecting(name, data, partition_by, mode, summary, &BTreeMap::new()).await
    }

    /// [`Tables::promote_with`], committed only if the table's summary properties hold the
    /// `expected` values (`None`: absent); else [`TableError::Superseded`].
    pub async fn promote_expecting(
        &self,
        name: &str,
        data: &Path,
        partition_by: &[PartitionField],
        mode: WriteMode,
        summary: &BTreeMap<String, String>,
        expected: &BTreeMap<String, Option<String>>,
    ) -> Result<Promotion, TableError> {
        let files = write::parquet_files(data)?;
        let arrow_schema = write::dataset_schema(&files)?;
        let target = self.target(name, &arrow_schema, partition_by).await?;
        let prefix = data_file_prefix();
        let written = self.add_files(&target.table, files, &prefix).await?;
        self.commit_expecting(name, target, written, mode, summary, expected).await
    }

    /// Writes the rows of Parquet `files` into new data files of `table`, the quickest way
    /// each allows: a file that fits the table is copied as it is, and one whose row groups
    /// each lie in one partition becomes a file per partition of those row groups as they are
    /// (`register`); the others are
    /// laid out one file per partition by Polars and then moved in (`relayout`) or, where that
    /// cannot be done, decoded and split by partition (`write`).
    async fn add_files(
        &self,
        table: &Table,
        files: Vec<PathBuf>,
        prefix: &str,
    ) -> Result<write::Written, TableError> {
        let metadata = table.metadata();
        let (fits, mut rest) = plan(table, files).await?;
        let mut written = register::copy(table, fits, &format!("{prefix}-a"), false).await?;
        let spec = metadata.default_partition_spec();
        let keys = relayout::partition_keys(spec, metadata.current_schema());
        let _staging;
        if let (Some(keys), false) = (keys, spec.is_unpartitioned() || rest.is_empty()) {
            let dir = self.scratch.join(format!("promote-{}", crate::random::hex_digits(12)));
            _staging = RemoveOnDrop(dir.clone());
            let laying_out = move || relayout::by_partition(&rest, keys, &dir);
            let laid_out = crate::process::blocking(laying_out).await.map_err(|e| {
                TableError::Invalid(format!("laying the files out by partition: {e}"))
            })??;
            let (fits, misfits) = plan(table, laid_out).await?;
            written.add(register::copy(table, fits, &format!("{prefix}-b"), true).await?);
            rest = misfits;
        }
        if !rest.is_empty() {
            let rest: Vec<write::Source> = rest.into_iter().map(write::Source::Local).collect();
            written.add(write::write_data_files(table, &rest, prefix).await?);
        }
        Ok(written)
    }

    /// Writes the record batches of `batches` (of schema `schema`) into table `name`, created
    /// on first use, as one snapshot carrying `summary`.
    pub async fn write_batches<S>(
        &self,
        name: &str,
        schema: &arrow_schema::Schema,
        mut batches: S,
        partition_by: &[PartitionField],
        mode: WriteMode,
        summary: &BTreeMap<String, String>,
    ) -> Result<Promotion, TableError>
    where
        S: futures::Stream<Item = Result<arrow_array::RecordBatch, TableError>> + Unpin,
    {
        use futures::StreamExt;
        let mut writer = self.writer(name, schema, partition_by).await?;
        while let Some(batch) = batches.next().await {
            writer.write(&batch?).await?;
        }
        writer.commit(mode, summary, &BTreeMap::new()).await
    }

    /// A write of rows of `schema` into table `name` (created on first use, its schema
    /// evolved), visible once committed.
    pub async fn writer(
        &self,
        name: &str,
        schema: &arrow_schema::Schema,
        partition_by: &[PartitionField],
    ) -> Result<TableWriter<'_>, TableError> {
        let target = self.target(name, schema, partition_by).await?;
        let data =
            write::DataWriter::new(&target.table, &data_file_prefix(), write::Buffering::STREAM)
                .await?;
        Ok(TableWriter { tables: self, name: name.to_string(), target, data })
    }

    /// The writer's own summary properties of the table's current snapshot (the newest value
    /// of each; see `commit`).
    pub async fn custom_summary(&self, name: &str) -> Result<BTreeMap<String, String>, TableError> {
        Ok(commit::custom_summary(&self.load(name).await?))
    }

    /// The table to write data of `schema` into: created if new, its schema evolved.
    async fn target(
        &self,
        name: &str,
        schema: &arrow_schema::Schema,
        partition_by: &[PartitionField],
    ) -> Result<Target, TableError> {
        let (mut table, created) = self.table_for(name, schema, partition_by).await?;
        let added_columns = self.evolve(&mut table, schema).await?;
        Ok(Target { table, created, added_columns })
    }

    /// Commits written data files, provided the table's summary properties still hold the
    /// `expected` values (`None`: absent) each time it commits; loads the table again and
    /// retries when another writer committed first.
    async fn commit_expecting(
        &self,
        name: &str,
        target: Target,
        written: write::Written,
        mode: WriteMode,
        summary: &BTreeMap<String, String>,
        expected: &BTreeMap<String, Option<String>>,
    ) -> Result<Promotion, TableError> {
        let Target { mut table, created, added_columns } = target;
        let mut attempt = 0;
        let snapshot_id = loop {
            let current = commit::custom_summary(&table);
            if let Some((key, _)) =
                expected.iter().find(|(key, value)| current.get(*key) != value.as_ref())
            {
                return Err(TableError::Superseded {
                    table: name.to_string(),
                    property: key.clone(),
                });
            }
            match commit::commit(self, &table, &written.files, mode, summary).await {
                Err(TableError::Conflict(_)) if attempt < 3 => {
                    attempt += 1;
                    table = self.load(name).await?;
                }
                other => break other?,
            }
        };
        Ok(Promotion {
            table: name.to_string(),
            snapshot_id,
            rows: written.rows,
            files: written.files.len(),
            added_columns,
            created,
        })
    }

    /// The table, created from the data's schema with the partition spec if it is new.
    async fn table_for(
        &self,
        name: &str,
        arrow_schema: &arrow_schema::Schema,
        partition_by: &[PartitionField],
    ) -> Result<(Table, bool), TableError> {
        let ident = table_ident(name)?;
        if self.catalog.table_exists(&ident).await? {
            return Ok((self.load(name).await?, false));
        }
        // Parallel tasks may create the same namespace or table at once: losing that race is
        // fine, the winner's namespace or table is used.
        let namespace = ident.namespace().clone();
        if !self.catalog.namespace_exists(&namespace).await? {
            if let Err(e) = self.catalog.create_namespace(&namespace, HashMap::new()).await {
                if !self.catalog.namespace_exists(&namespace).await? {
                    return Err(e.into());
                }
            }
        }
        let schema = arrow_schema_to_schema_auto_assign_ids(arrow_schema)?;
        let spec = partition::partition_spec(&schema, partition_by).map_err(TableError::Invalid)?;
        // Under the catalog's root, whatever location a namespace property names.
        let location = self.confinement.as_ref().map(|c| c.table_location(&ident));
        let creation = TableCreation::builder()
            .name(ident.name().to_string())
            .location_opt(location)
            .schema(schema)
            .partition_spec(spec)
            .properties([
                ("write.format.default".to_string(), "parquet".to_string()),
                ("write.parquet.compression-codec".to_string(), "zstd".to_string()),
            ])
            .build();
        match self.catalog.create_table(&namespace, creation).await {
            Ok(table) => Ok((table, true)),
            Err(_) if self.catalog.table_exists(&ident).await? => {
                Ok((self.load(name).await?, false))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds the data's new columns to the table's schema (nullable, so old snapshots stay
    /// readable); fails on a column whose type changed incompatibly.
    async fn evolve(
        &self,
        table: &mut Table,
        arrow_schema: &arrow_schema::Schema,
    ) -> Result<Vec<String>, TableError> {
        let current = table.metadata().current_schema().clone();
        let mut next_id = table.metadata().last_column_id();
        let mut added = Vec::new();
        for field in arrow_schema.fields() {
            let data_type = arrow_type_to_type(field.data_type())?;
            match current.field_by_name(field.name()) {
                Some(existing) if compatible(&existing.field_type, &data_type) => {}
                Some(existing) => {
                    return Err(TableError::Invalid(format!(
                        "column `{}` is {} in table {} but {} in the data: an incompatible \
                         change (only new nullable columns and int→long, float→double widening \
                         are applied automatically)",
                        field.name(),
                        existing.field_type,
                        table.identifier(),
                        data_type
                    )))
                }
                None => {
                    next_id += 1;
                    added.push(Arc::new(NestedField::optional(next_id, field.name(), data_type)));
                }
            }
        }
        if added.is_empty() {
            return Ok(Vec::new());
        }
        let names = added.iter().map(|f| f.name.clone()).collect();
        let schema: Schema = current.as_ref().clone().into_builder().with_fields(added).build()?;
        self.publish(table, set_schema(schema)).await?;
        *table = self.catalog.load_table(table.identifier()).await?;
        Ok(names)
    }
}

/// Rows being written into a table (see [`Tables::writer`]): data files are written as batches
/// arrive; nothing is visible until [`TableWriter::commit`].
pub struct TableWriter<'a> {
    tables: &'a Tables,
    name: String,
    target: Target,
    data: write::DataWriter,
}

impl TableWriter<'_> {
    /// The writer's own summary properties of the table's snapshot this write builds on.
    pub fn summary(&self) -> BTreeMap<String, String> {
        commit::custom_summary(&self.target.table)
    }

    /// The table as this write found it.
    pub fn table(&self) -> &Table {
        &self.target.table
    }

    pub async fn write(&mut self, batch: &arrow_array::RecordBatch) -> Result<(), TableError> {
        self.data.write(batch).await
    }

    /// Commits the rows written as one snapshot carrying `summary`, provided the table's
    /// summary properties hold the `expected` values (`None`: absent); else nothing is
    /// committed and the error is [`TableError::Superseded`].
    pub async fn commit(
        self,
        mode: WriteMode,
        summary: &BTreeMap<String, String>,
        expected: &BTreeMap<String, Option<String>>,
    ) -> Result<Promotion, TableError> {
        let written = self.data.finish().await?;
        self.tables
            .commit_expecting(&self.name, self.target, written, mode, summary, expected)
            .await
    }
}

/// Where the SQL catalog puts new tables: `iceberg/` in the warehouse (made if local).
fn tables_location(warehouse: &Warehouse) -> Result<String, TableError> {
    if let Some(location) = warehouse.remote_location() {
        return Ok(format!("{location}/iceberg"));
    }
    let root = warehouse.root().join("iceberg");
    std::fs::create_dir_all(&root)
        .map_err(|e| TableError::Invalid(format!("{}: {e}", root.display())))?;
    let root = root.canonicalize().unwrap_or(root);
    Ok(format!("file://{}", root.display()))
}

/// The updates that make `schema` the table's current schema.
fn set_schema(schema: Schema) -> Vec<TableUpdate> {
    // -1: the schema this change adds.
    vec![TableUpdate::AddSchema { schema }, TableUpdate::SetCurrentSchema { schema_id: -1 }]
}

/// Whether data of type `data` can be written into a column of type `table`.
fn compatible(table: &Type, data: &Type) -> bool {
    use iceberg::spec::PrimitiveType::*;
    match (table, data) {
        (a, b) if a == b => true,
        (Type::Primitive(Long), Type::Primitive(Int)) => true,
        (Type::Primitive(Double), Type::Primitive(Float)) => true,
        (Type::Primitive(Timestamp), Type::Primitive(Timestamptz))
        | (Type::Primitive(Timestamptz), Type::Primitive(Timestamp)) => true,
        _ => false,
    }
}

/// The table catalog of a process, opened on first use and then shared by its tasks.
#[derive(Clone)]
pub struct TablesHandle {
    cell: Arc<tokio::sync::OnceCell<Arc<Tables>>>,
    store: Store,
    warehouse: Warehouse,
    config: CatalogConfig,
}

impl TablesHandle {
    pub fn new(store: Store, warehouse: Warehouse, config: CatalogConfig) -> TablesHandle {
        TablesHandle { cell: Arc::default(), store, warehouse, config }
    }

    pub async fn get(&self) -> Result<Arc<Tables>, TableError> {
        let tables = self
            .cell
            .get_or_try_init(|| async {
                Tables::open(&self.store, &self.warehouse, &self.config).await.map(Arc::new)
            })
            .await?;
        Ok(tables.clone())
    }
}
