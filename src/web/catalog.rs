//! The Iceberg REST catalog protocol under `/iceberg`, served from lakeward's own SQL catalog,
//! so engines that speak only REST (DuckDB, Trino, Spark, pyiceberg, another lakeward) can
//! read and write lakeward's tables: `uri = http://HOST:8080/iceberg`, a bearer API token.
//!
//! Namespaces and tables pass through to the catalog; a commit's requirements are checked
//! against the current metadata and its updates published with the same compare-and-swap as
//! lakeward's own commits. Errors have the protocol's shape (`{"error": {message, type, code}}`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use iceberg::{ErrorKind, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_rest::{
    CommitTableRequest, CommitTableResponse, CreateNamespaceRequest, CreateTableRequest,
    ListNamespaceResponse, ListTablesResponse, LoadTableResult, NamespaceResponse,
    RenameTableRequest, UpdateNamespacePropertiesRequest, UpdateNamespacePropertiesResponse,
};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, WebError};
use crate::lake::tables::{location, TableError, Tables};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/config", get(config))
        .route("/v1/namespaces", get(list_namespaces).post(create_namespace))
        .route("/v1/namespaces/{namespace}", get(load_namespace).delete(drop_namespace))
        .route("/v1/namespaces/{namespace}/properties", post(update_properties))
        .route("/v1/namespaces/{namespace}/tables", get(list_tables).post(create_table))
        .route(
            "/v1/namespaces/{namespace}/tables/{table}",
            get(load_table).post(commit_table).delete(drop_table),
        )
        .route("/v1/tables/rename", post(rename_table))
        .fallback(|| async {
            CatalogError::new(StatusCode::NOT_FOUND, "NotFound", "no such endpoint")
        })
}

/// An error in the REST catalog protocol's shape.
#[derive(Debug)]
pub struct CatalogError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl CatalogError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> CatalogError {
        CatalogError { status, kind, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> CatalogError {
        CatalogError::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        // A server-side failure's detail (file paths, database errors) stays in the log.
        let message = if self.status.is_server_error() {
            tracing::error!("iceberg catalog request failed: {}", self.message);
            format!("{} (details in the server log)", self.status)
        } else {
            self.message
        };
        let body = json!({
            "error": { "message": message, "type": self.kind, "code": self.status.as_u16() }
        });
        (self.status, Json(body)).into_response()
    }
}

impl From<WebError> for CatalogError {
    fn from(e: WebError) -> Self {
        let kind = match e {
            WebError::NotFound(_) => "NotFoundException",
            WebError::BadRequest(_) => "BadRequestException",
            WebError::Unauthorized => "NotAuthorizedException",
            WebError::Forbidden(_) => "ForbiddenException",
            WebError::Conflict(_) => "CommitFailedException",
            WebError::TooLarge(_) => "BadRequestException",
            WebError::TooManyRequests(..) => "SlowDownException",
            WebError::Unavailable(_) => "ServiceUnavailableException",
            WebError::Internal(_) => "InternalServerError",
        };
        CatalogError::new(e.status(), kind, e.to_string())
    }
}

impl From<iceberg::Error> for CatalogError {
    fn from(e: iceberg::Error) -> Self {
        TableError::from(e).into()
    }
}

impl From<TableError> for CatalogError {
    fn from(e: TableError) -> Self {
        let (status, kind) = match &e {
            TableError::Iceberg(inner) => match inner.kind() {
                ErrorKind::NamespaceNotFound => (StatusCode::NOT_FOUND, "NoSuchNamespaceException"),
                ErrorKind::TableNotFound => (StatusCode::NOT_FOUND, "NoSuchTableException"),
                ErrorKind::NamespaceAlreadyExists | ErrorKind::TableAlreadyExists => {
                    (StatusCode::CONFLICT, "AlreadyExistsException")
                }
                ErrorKind::CatalogCommitConflicts => {
                    (StatusCode::CONFLICT, "CommitFailedException")
                }
                ErrorKind::DataInvalid
                | ErrorKind::FeatureUnsupported
                | ErrorKind::PreconditionFailed => (StatusCode::BAD_REQUEST, "BadRequestException"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
            },
            TableError::Missing(_) => (StatusCode::NOT_FOUND, "NoSuchTableException"),
            TableError::Conflict(_) | TableError::Refused { .. } => {
                (StatusCode::CONFLICT, "CommitFailedException")
            }
            TableError::BadName(_) | TableError::Invalid(_) => {
                (StatusCode::BAD_REQUEST, "BadRequestException")
            }
            TableError::Store(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
        };
        CatalogError::new(status, kind, e.to_string())
    }
}

type Answer<T> = Result<Json<T>, CatalogError>;

async fn tables(state: &AppState) -> Result<std::sync::Arc<Tables>, CatalogError> {
    let handle = state.tables.as_ref().ok_or_else(|| {
        CatalogError::new(StatusCode::NOT_FOUND, "NotFound", "this server has no table catalog")
    })?;
    Ok(handle.get().await?)
}

/// A namespace from its path segment: levels are separated by the unit separator (0x1F).
fn namespace(segment: &str) -> Result<NamespaceIdent, CatalogError> {
    let levels: Vec<String> = segment.split('\u{1f}').map(str::to_string).collect();
    checked_namespace(levels)
}

/// A namespace whose every level is a valid name.
fn checked_namespace(levels: Vec<String>) -> Result<NamespaceIdent, CatalogError> {
    for level in &levels {
        location::check_name("namespace", level)?;
    }
    NamespaceIdent::from_vec(levels).map_err(|e| CatalogError::bad_request(e.to_string()))
}

fn checked_table(ident: &TableIdent) -> Result<(), CatalogError> {
    checked_namespace(ident.namespace().clone().inner())?;
    location::check_name("table", ident.name())?;
    Ok(())
}

fn table_ident(segment: &str, table: String) -> Result<TableIdent, CatalogError> {
    let ident = TableIdent::new(namespace(segment)?, table);
    checked_table(&ident)?;
    Ok(ident)
}

/// No overrides: clients use `/iceberg/v1/...` as given, and their own storage settings.
async fn config() -> Json<serde_json::Value> {
    Json(json!({ "defaults": {}, "overrides": {} }))
}

#[derive(Deserialize)]
struct ParentQuery {
    parent: Option<String>,
}

async fn list_namespaces(
    State(state): State<AppState>,
    Query(query): Query<ParentQuery>,
) -> Answer<ListNamespaceResponse> {
    let tables = tables(&state).await?;
    let parent = query.parent.as_deref().map(namespace).transpose()?;
    let namespaces = tables.catalog().list_namespaces(parent.as_ref()).await?;
    Ok(Json(ListNamespaceResponse { namespaces, next_page_token: None }))
}

async fn create_namespace(
    State(state): State<AppState>,
    Json(request): Json<CreateNamespaceRequest>,
) -> Answer<NamespaceResponse> {
    let tables = tables(&state).await?;
    let ident = checked_namespace(request.namespace.inner())?;
    if let Some(confinement) = tables.confinement() {
        confinement.check_namespace_properties(&request.properties)?;
    }
    let created = tables.catalog().create_namespace(&ident, request.properties).await?;
    Ok(Json(NamespaceResponse::from(&created)))
}

async fn load_namespace(
    State(state): State<AppState>,
    Path(segment): Path<String>,
) -> Answer<NamespaceResponse> {
    let tables = tables(&state).await?;
    let found = tables.catalog().get_namespace(&namespace(&segment)?).await?;
    Ok(Json(NamespaceResponse::from(&found)))
}

async fn drop_namespace(
    State(state): State<AppState>,
    Path(segment): Path<String>,
) -> Result<StatusCode, CatalogError> {
    let tables = tables(&state).await?;
    tables.catalog().drop_namespace(&namespace(&segment)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update_properties(
    State(state): State<AppState>,
    Path(segment): Path<String>,
    Json(request): Json<UpdateNamespacePropertiesRequest>,
) -> Answer<UpdateNamespacePropertiesResponse> {
    let tables = tables(&state).await?;
    let ident = namespace(&segment)?;
    if let Some(confinement) = tables.confinement() {
        confinement.check_namespace_properties(&request.updates)?;
    }
    let catalog = tables.catalog();
    let mut properties = catalog.get_namespace(&ident).await?.properties().clone();
    let removals = request.removals.unwrap_or_default();
    let (removed, missing): (Vec<String>, Vec<String>) =
        removals.into_iter().partition(|key| properties.remove(key).is_some());
    let updated: Vec<String> = request.updates.keys().cloned().collect();
    properties.extend(request.updates);
    catalog.update_namespace(&ident, properties).await?;
    let missing = (!missing.is_empty()).then_some(missing);
    Ok(Json(UpdateNamespacePropertiesResponse { updated, removed, missing }))
}

async fn list_tables(
    State(state): State<AppState>,
    Path(segment): Path<String>,
) -> Answer<ListTablesResponse> {
    let tables = tables(&state).await?;
    let identifiers = tables.catalog().list_tables(&namespace(&segment)?).await?;
    Ok(Json(ListTablesResponse { identifiers, next_page_token: None }))
}

fn load_result(table: &iceberg::table::Table) -> LoadTableResult {
    LoadTableResult {
        metadata_location: table.metadata_location().map(str::to_string),
        metadata: table.metadata().clone(),
        config: HashMap::new(),
        storage_credentials: None,
    }
}

async fn create_table(
    State(state): State<AppState>,
    Path(segment): Path<String>,
    Json(request): Json<CreateTableRequest>,
) -> Answer<LoadTableResult> {
    if request.stage_create == Some(true) {
        return Err(CatalogError::new(
            StatusCode::NOT_ACCEPTABLE,
            "UnsupportedOperationException",
            "staged table creation is not supported: create the table, then commit to it",
        ));
    }
    let tables = tables(&state).await?;
    let ident = table_ident(&segment, request.name)?;
    // Inside the warehouse: as given if it is, by default under the catalog's root (never
    // where a namespace's `location` property might point).
    let location = match (tables.confinement(), request.location) {
        (Some(confinement), Some(location)) => {
            confinement.check("table location", &location)?;
            Some(location)
        }
        (Some(confinement), None) => Some(confinement.table_location(&ident)),
        (None, location) => location,
    };
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .location_opt(location)
        .schema(request.schema)
        .partition_spec_opt(request.partition_spec)
        .sort_order_opt(request.write_order)
        .properties(request.properties)
        .build();
    let table = tables.catalog().create_table(ident.namespace(), creation).await?;
    Ok(Json(load_result(&table)))
}

async fn load_table(
    State(state): State<AppState>,
    Path((segment, name)): Path<(String, String)>,
) -> Answer<LoadTableResult> {
    let tables = tables(&state).await?;
    let table = tables.catalog().load_table(&table_ident(&segment, name)?).await?;
    Ok(Json(load_result(&table)))
}

async fn commit_table(
    State(state): State<AppState>,
    Path((segment, name)): Path<(String, String)>,
    Json(request): Json<CommitTableRequest>,
) -> Answer<CommitTableResponse> {
    let tables = tables(&state).await?;
    let ident = table_ident(&segment, name)?;
    if request.identifier.as_ref().is_some_and(|named| named != &ident) {
        return Err(CatalogError::bad_request(format!(
            "the body names another table than the path ({ident})"
        )));
    }
    let (metadata_location, metadata) =
        tables.commit_requested(&ident, &request.requirements, request.updates).await?;
    Ok(Json(CommitTableResponse { metadata_location, metadata }))
}

async fn drop_table(
    State(state): State<AppState>,
    Path((segment, name)): Path<(String, String)>,
) -> Result<StatusCode, CatalogError> {
    let tables = tables(&state).await?;
    tables.catalog().drop_table(&table_ident(&segment, name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rename_table(
    State(state): State<AppState>,
    Json(request): Json<RenameTableRequest>,
) -> Result<StatusCode, CatalogError> {
    let tables = tables(&state).await?;
    checked_table(&request.destination)?;
    tables.catalog().rename_table(&request.source, &request.destination).await?;
    Ok(StatusCode::NO_CONTENT)
}
