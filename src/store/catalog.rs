//! The one statement lakeward runs on the Iceberg SQL catalog's own table (`iceberg_tables`,
//! created and otherwise managed by iceberg-catalog-sql): the compare-and-swap that publishes a
//! new table metadata file, for the commits iceberg-rust does not offer (overwrite,
//! replace-partitions, compaction).

use sqlx::{Any, Executor};

use super::Result;

/// Points table `namespace.table` of `catalog` at `new_location` if it still points at
/// `expected`. False when another writer committed first.
pub async fn swap_table_metadata(
    db: impl Executor<'_, Database = Any>,
    catalog: &str,
    namespace: &str,
    table: &str,
    expected: &str,
    new_location: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2 \
         WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5 \
         AND metadata_location = $2",
    )
    .bind(new_location)
    .bind(expected)
    .bind(catalog)
    .bind(namespace)
    .bind(table)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
