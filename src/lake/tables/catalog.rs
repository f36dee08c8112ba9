//! Which Iceberg catalog the tables live in, and how a metadata change is published to it.
//!
//! By default the catalog is Iceberg's SQL catalog in lakeward's own database: a change is
//! applied to the table's metadata, written as the next metadata file and swapped in with a
//! compare-and-swap on `metadata_location`. With `[catalog] uri = "..."` it is an Iceberg REST
//! catalog (Nessie, Polaris, Lakekeeper, or another lakeward's `/iceberg`): the same change is
//! sent as the protocol's updates plus requirements, and the server writes the metadata.
//! Either way a writer that lost a race gets [`TableError::Conflict`] and retries.

use std::str::FromStr;

use iceberg::spec::{TableMetadata, TableMetadataBuilder, MAIN_BRANCH};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableIdent, TableRequirement, TableUpdate};
use iceberg_catalog_rest::{CommitTableRequest, CommitTableResponse, ErrorResponse};
use reqwest::StatusCode;
use serde::Deserialize;

use super::metadata_file::MetadataFiles;
use super::TableError;
use crate::store::catalog;
use crate::store::Store;

/// `[catalog]` in lakeward.toml: empty for the embedded SQL catalog, `uri` for a REST catalog.
#[derive(Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Base URL of an Iceberg REST catalog, e.g. `http://nessie:19120/iceberg`.
    pub uri: Option<String>,
    /// The warehouse the REST catalog should serve, when it serves several.
    pub warehouse: Option<String>,
    /// Bearer token sent to the REST catalog (`LAKEWARD_CATALOG_TOKEN`).
    pub token: Option<String>,
}

impl std::fmt::Debug for CatalogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogConfig")
            .field("uri", &self.uri)
            .field("warehouse", &self.warehouse)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Where a table's metadata changes are published.
pub(super) enum Publisher {
    /// Our own database holds the SQL catalog; this process writes the metadata files.
    Sql(Store, MetadataFiles),
    Rest(RestCommits),
}

impl Publisher {
    /// Applies `updates` to `table`'s metadata in its catalog.
    pub async fn publish(
        &self,
        table: &Table,
        updates: Vec<TableUpdate>,
    ) -> Result<(), TableError> {
        match self {
            Publisher::Sql(store, files) => {
                publish_to_database(store, files, table, updates).await.map(|_| ())
            }
            Publisher::Rest(rest) => rest.commit(table, updates).await,
        }
    }
}

/// Writes the metadata `updates` make of `table`'s current metadata as its next metadata file
/// and swaps it in; returns the new file's location and the metadata.
pub(super) async fn publish_to_database(
    store: &Store,
    files: &MetadataFiles,
    table: &Table,
    updates: Vec<TableUpdate>,
) -> Result<(String, TableMetadata), TableError> {
    let current = table.metadata_location().ok_or_else(|| {
        TableError::Invalid(format!("table {} has no metadata file", table.identifier()))
    })?;
    let mut builder = TableMetadataBuilder::new_from_metadata(
        table.metadata().clone(),
        Some(current.to_string()),
    );
    for update in updates {
        builder = update.apply(builder)?;
    }
    let built = builder.build()?;
    let next_location = MetadataLocation::from_str(current)?.with_next_version();
    let next = next_location.to_string();
    match files.encode(current, &built, &next)? {
        Some(bytes) => table.file_io().new_output(&next)?.write(bytes.into()).await?,
        None => built.metadata.write_to(table.file_io(), &next_location).await?,
    }
    let metadata = built.metadata;
    let ident = table.identifier();
    let swapped = catalog::swap_table_metadata(
        store.write(),
        super::CATALOG_NAME,
        &ident.namespace().join("."),
        ident.name(),
        current,
        &next,
    )
    .await?;
    if swapped {
        Ok((next, metadata))
    } else {
        Err(TableError::Conflict(ident.to_string()))
    }
}

/// What a change to `metadata` assumes: the same table, with the same main snapshot and schema
/// as when the change was made (a REST server refuses the change otherwise).
fn requirements(metadata: &TableMetadata) -> Vec<TableRequirement> {
    vec![
        TableRequirement::UuidMatch { uuid: metadata.uuid() },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_string(),
            snapshot_id: metadata.current_snapshot_id(),
        },
        TableRequirement::CurrentSchemaIdMatch { current_schema_id: metadata.current_schema_id() },
        TableRequirement::LastAssignedFieldIdMatch {
            last_assigned_field_id: metadata.last_column_id(),
        },
    ]
}

/// Commits to an Iceberg REST catalog (`POST .../namespaces/{ns}/tables/{table}`).
pub(super) struct RestCommits {
    client: reqwest::Client,
    /// `{uri}/v1/` plus the server's prefix, ending in `/`.
    base: String,
    token: Option<String>,
}

/// The part of `GET /v1/config` that decides where the endpoints are.
#[derive(Deserialize, Default)]
struct ServerConfig {
    #[serde(default)]
    overrides: std::collections::HashMap<String, String>,
}

impl RestCommits {
    /// Asks the server at `config.uri` for its configuration (prefix), which also checks that
    /// it is reachable.
    pub async fn connect(config: &CatalogConfig, uri: &str) -> Result<RestCommits, TableError> {
        let client = reqwest::Client::new();
        let uri = uri.trim_end_matches('/');
        let mut request = client.get(format!("{uri}/v1/config"));
        if let Some(warehouse) = &config.warehouse {
            request = request.query(&[("warehouse", warehouse)]);
        }
        if let Some(token) = &config.token {
            request = request.bearer_auth(token);
        }
        let unreachable =
            |e: &dyn std::fmt::Display| TableError::Catalog(format!("REST catalog at {uri}: {e}"));
        let response = request.send().await.map_err(|e| unreachable(&e))?;
        if !response.status().is_success() {
            return Err(unreachable(&format!("GET /v1/config answered {}", response.status())));
        }
        let server: ServerConfig = response.json().await.map_err(|e| unreachable(&e))?;
        let uri = server.overrides.get("uri").map_or(uri, |u| u.trim_end_matches('/'));
        let base = match server.overrides.get("prefix") {
            Some(prefix) if !prefix.is_empty() => format!("{uri}/v1/{prefix}/"),
            _ => format!("{uri}/v1/"),
        };
        Ok(RestCommits { client, base, token: config.token.clone() })
    }

    fn table_url(&self, ident: &TableIdent) -> String {
        // Levels of a namespace are joined by the unit separator, percent-encoded.
        let namespace = ident.namespace().join("%1F");
        format!("{}namespaces/{namespace}/tables/{}", self.base, ident.name())
    }

    async fn commit(&self, table: &Table, updates: Vec<TableUpdate>) -> Result<(), TableError> {
        let ident = table.identifier();
        let body = CommitTableRequest {
            identifier: Some(ident.clone()),
            requirements: requirements(table.metadata()),
            updates,
        };
        let mut request = self.client.post(self.table_url(ident)).json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let failed = |e: &dyn std::fmt::Display| {
            TableError::Catalog(format!("committing to {ident} in the REST catalog: {e}"))
        };
        let response = request.send().await.map_err(|e| failed(&e))?;
        match response.status() {
            StatusCode::OK => {
                response.json::<CommitTableResponse>().await.map_err(|e| failed(&e))?;
                Ok(())
            }
            StatusCode::CONFLICT => Err(TableError::Conflict(ident.to_string())),
            status => {
                let text = response.text().await.unwrap_or_default();
                let message = serde_json::from_str::<ErrorResponse>(&text)
                    .map(|e| iceberg::Error::from(e).to_string())
                    .unwrap_or(text);
                Err(failed(&format!("{status}: {message}")))
            }
        }
    }
}

impl super::Tables {
    /// The catalog itself, for namespace and table operations the REST server passes through.
    pub fn catalog(&self) -> &dyn iceberg::Catalog {
        self.catalog.as_ref()
    }

    /// A commit asked for by a REST client: checks `requirements` against the table's current
    /// metadata and publishes `updates` to our database. Returns the new metadata's location.
    pub async fn commit_requested(
        &self,
        ident: &TableIdent,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> Result<(String, TableMetadata), TableError> {
        let Publisher::Sql(store, files) = &self.publisher else {
            return Err(TableError::Catalog(
                "this lakeward keeps its tables in a REST catalog ([catalog] uri): commit there"
                    .into(),
            ));
        };
        if let Some(confinement) = &self.confinement {
            confinement.check_updates(&updates)?;
        }
        let table = self.catalog.load_table(ident).await?;
        for requirement in requirements {
            requirement.check(Some(table.metadata())).map_err(|e| TableError::Refused {
                table: ident.to_string(),
                reason: e.message().to_string(),
            })?;
        }
        publish_to_database(store, files, &table, updates).await
    }
}
