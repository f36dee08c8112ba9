//! The Iceberg REST catalog, both ways: lakeward serves its SQL catalog under `/iceberg`
//! (checked with pyiceberg's REST client, an independent implementation, which reads and
//! appends through it), and lakeward configured with `[catalog] uri` keeps its tables in a REST
//! catalog: promotion, schema evolution, compaction and expiry all commit through the protocol.

use crate::common;

use std::sync::Arc;

use common::{rows, total_amount, write_orders, TestDb};
use lakeward::config::Config;
use lakeward::domain::Role;
use lakeward::jobs::Registry;
use lakeward::lake::tables::{
    CatalogConfig, PartitionField, ScanRequest, Tables, TablesHandle, WriteMode,
};
use lakeward::lake::Warehouse;
use lakeward::store::Store;
use lakeward::users::{create_api_token, create_user};
use lakeward::versions::DagVersions;
use lakeward::web::{app, AppState};
use serde_json::{json, Value};

/// A lakeward web server on a free port, serving the SQL catalog of `db`.
struct Server {
    _dir: tempfile::TempDir,
    warehouse: Warehouse,
    store: Store,
    uri: String,
    admin: String,
    viewer: String,
    server: tokio::task::JoinHandle<()>,
}

async fn serve(db: &TestDb) -> Server {
    serve_with(db, &Config::default()).await
}

async fn serve_with(db: &TestDb, config: &Config) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().join("warehouse").to_str().unwrap()).unwrap();
    let store = Store::open(&db.url).await.unwrap();
    create_user(&store, "robot", "robot-password", Role::Admin).await.unwrap();
    create_user(&store, "reader", "reader-password", Role::Viewer).await.unwrap();
    let admin = create_api_token(&store, "robot", "tests", None).await.unwrap();
    let viewer = create_api_token(&store, "reader", "tests", None).await.unwrap();
    let versions = Arc::new(DagVersions::new(store.clone(), Registry::builtin()));
    let tables = TablesHandle::new(store.clone(), warehouse.clone(), CatalogConfig::default());
    let state = AppState::new(store.clone(), versions, config).with_tables(tables);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/iceberg", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app(state)).await.unwrap();
    });
    Server { _dir: dir, warehouse, store, uri, admin, viewer, server }
}

impl Server {
    /// The server's own view of its tables (the SQL catalog, not through HTTP).
    async fn local_tables(&self) -> Tables {
        Tables::open(&self.store, &self.warehouse, &CatalogConfig::default()).await.unwrap()
    }

    /// A lakeward whose catalog is this server, over REST.
    async fn remote_tables(&self, client_dir: &std::path::Path) -> (Tables, Warehouse) {
        let warehouse = Warehouse::open(client_dir.join("warehouse").to_str().unwrap()).unwrap();
        let store = Store::open(&common::sqlite().url).await.unwrap();
        let config = CatalogConfig {
            uri: Some(self.uri.clone()),
            token: Some(self.admin.clone()),
            ..CatalogConfig::default()
        };
        (Tables::open(&store, &warehouse, &config).await.unwrap(), warehouse)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.uri));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

async fn count(tables: &Tables, table: &str) -> usize {
    rows(&tables.scan(table, &ScanRequest::default()).await.unwrap().batches)
}

fn day_partition() -> Vec<PartitionField> {
    vec![PartitionField::parse("day(order_date)").unwrap()]
}

/// lakeward with `[catalog] uri` set: every kind of commit goes through the REST server, and
/// the server's SQL catalog sees the same tables and rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lakeward_keeps_its_tables_in_a_rest_catalog() {
    for db in common::databases().await {
        let server = serve(&db).await;
        let client_dir = tempfile::tempdir().unwrap();
        let (remote, warehouse) = server.remote_tables(client_dir.path()).await;
        let data = |dataset: &str| warehouse.dataset(dataset).unwrap().current().unwrap();
        let (table, spec) = ("bronze.orders", day_partition());

        write_orders(&warehouse, "bronze/orders", 0..3, 10, 1.0);
        let first =
            remote.promote(table, &data("bronze/orders"), &spec, WriteMode::Append).await.unwrap();
        assert!(first.created);
        write_orders(&warehouse, "bronze/orders", 2..3, 4, 50.0);
        let mode = WriteMode::ReplacePartitions;
        remote.promote(table, &data("bronze/orders"), &spec, mode).await.unwrap();
        assert_eq!(count(&remote, table).await, 24, "day 2 replaced: 10 + 10 + 4");

        // A new nullable column evolves the schema through the protocol.
        let widened = polars::prelude::df!("order_id" => [9001i64], "order_date" => [19723], "category" => ["z"], "amount" => [5.0], "discount" => [0.5])
            .unwrap();
        let widened = polars::prelude::IntoLazy::lazy(widened)
            .with_column(polars::prelude::col("order_date").cast(polars::prelude::DataType::Date));
        lakeward::lake::sink_parquet(widened, &warehouse.dataset("bronze/late").unwrap(), &[])
            .unwrap();
        let evolved =
            remote.promote(table, &data("bronze/late"), &spec, WriteMode::Append).await.unwrap();
        assert_eq!(evolved.added_columns, vec!["discount".to_string()]);

        let compaction = remote.compact(table).await.unwrap();
        assert!(compaction.snapshot_id.is_some(), "small files were rewritten");
        let expiry = remote
            .expire_snapshots(table, chrono::Utc::now().timestamp_millis() + 1000, 1)
            .await
            .unwrap();
        assert!(!expiry.expired_snapshots.is_empty());

        // The server's catalog holds the same table, rows and history.
        let local = server.local_tables().await;
        assert_eq!(local.list().await.unwrap(), vec![table.to_string()]);
        assert_eq!(count(&local, table).await, 25);
        assert_eq!(count(&remote, table).await, 25);
        let info = local.describe(table).await.unwrap();
        assert!(info.columns.iter().any(|c| c.starts_with("discount")), "{:?}", info.columns);
        assert_eq!(local.history(table).await.unwrap().len(), 1, "older snapshots expired");
        server.server.abort();
    }
}

/// A commit made against metadata that has since changed is refused with 409, and the client
/// retries on top of the new metadata; errors have the protocol's shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_commits_conflict_and_errors_follow_the_protocol() {
    let db = common::sqlite();
    let server = serve(&db).await;
    let client_dir = tempfile::tempdir().unwrap();
    let (remote, warehouse) = server.remote_tables(client_dir.path()).await;
    write_orders(&warehouse, "bronze/orders", 0..2, 5, 1.0);
    let data = warehouse.dataset("bronze/orders").unwrap().current().unwrap();
    remote.promote("bronze.orders", &data, &[], WriteMode::Append).await.unwrap();

    let (status, loaded) = server
        .call(reqwest::Method::GET, "/v1/namespaces/bronze/tables/orders", &server.admin, None)
        .await;
    assert_eq!(status, 200, "{loaded}");
    let snapshot = loaded["metadata"]["current-snapshot-id"].clone();
    assert!(snapshot.is_i64());
    // Someone else commits first…
    remote.promote("bronze.orders", &data, &[], WriteMode::Append).await.unwrap();
    // …so a commit still assuming the old snapshot is refused.
    let stale = json!({
        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": snapshot}],
        "updates": [{"action": "set-properties", "updates": {"owner": "someone"}}]
    });
    let path = "/v1/namespaces/bronze/tables/orders";
    let (status, error) =
        server.call(reqwest::Method::POST, path, &server.admin, Some(stale.clone())).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["type"], "CommitFailedException");
    assert!(error["error"]["message"].as_str().unwrap().contains("bronze.orders"), "{error}");
    let local = server.local_tables().await;
    assert_eq!(count(&local, "bronze.orders").await, 20, "nothing lost, nothing applied");

    let (status, error) = server
        .call(reqwest::Method::GET, "/v1/namespaces/bronze/tables/nope", &server.admin, None)
        .await;
    assert_eq!((status, error["error"]["type"].as_str()), (404, Some("NoSuchTableException")));
    let (status, error) =
        server.call(reqwest::Method::GET, "/v1/namespaces/nope", &server.admin, None).await;
    assert_eq!((status, error["error"]["type"].as_str()), (404, Some("NoSuchNamespaceException")));
    let (status, error) =
        server.call(reqwest::Method::GET, "/v1/namespaces", "lw_forged", None).await;
    assert_eq!((status, error["error"]["code"].as_u64()), (401, Some(401)));
    let (status, error) =
        server.call(reqwest::Method::POST, path, &server.viewer, Some(stale)).await;
    assert_eq!((status, error["error"]["type"].as_str()), (403, Some("ForbiddenException")));
    let (status, _) =
        server.call(reqwest::Method::GET, "/v1/namespaces", &server.viewer, None).await;
    assert_eq!(status, 200, "viewers may read");

    let config =
        CatalogConfig { uri: Some("http://127.0.0.1:9/iceberg".into()), ..Default::default() };
    let unreachable =
        Tables::open(&server.store, &warehouse, &config).await.err().unwrap().to_string();
    assert!(unreachable.contains("REST catalog at http://127.0.0.1:9/iceberg"), "{unreachable}");
    server.server.abort();
}

/// pyiceberg's REST client lists, reads (now and at an older snapshot) and appends through our
/// server; lakeward then reads pyiceberg's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_reads_and_writes_through_our_rest_catalog() {
    let Some(python) = common::python_with_pyiceberg() else { return };
    let db = common::sqlite();
    let server = serve(&db).await;
    let local = server.local_tables().await;
    // Partitioned by identity: pyiceberg computes other transforms only with its Rust extension.
    let by_category = vec![PartitionField::parse("category").unwrap()];
    write_orders(&server.warehouse, "bronze/orders", 0..3, 10, 1.0);
    let data = server.warehouse.dataset("bronze/orders").unwrap().current().unwrap();
    let first =
        local.promote("bronze.orders", &data, &by_category, WriteMode::Append).await.unwrap();
    write_orders(&server.warehouse, "bronze/orders", 1..2, 3, 100.0);
    let data = server.warehouse.dataset("bronze/orders").unwrap().current().unwrap();
    local.promote("bronze.orders", &data, &by_category, WriteMode::Append).await.unwrap();
    let ours = local.scan("bronze.orders", &ScanRequest::default()).await.unwrap();

    let script = format!(
        r#"
import json, pyarrow as pa, pyarrow.compute as pc, datetime
from pyiceberg.catalog.rest import RestCatalog
catalog = RestCatalog("lakeward", uri="{uri}", token="{token}")
orders = catalog.load_table("bronze.orders")
now = orders.scan().to_arrow()
then = orders.scan(snapshot_id={first}).to_arrow()
seen = {{
    "namespaces": [".".join(n) for n in catalog.list_namespaces()],
    "tables": [".".join(t) for t in catalog.list_tables("bronze")],
    "partition": [str(f.transform) for f in orders.spec().fields],
    "rows": now.num_rows,
    "amount": pc.sum(now["amount"]).as_py(),
    "rows_then": then.num_rows,
}}
extra = pa.table({{
    "order_id": pa.array([7001, 7002], pa.int64()),
    "order_date": pa.array([datetime.date(2024, 3, 1)] * 2, pa.date32()),
    "category": pa.array(["p", "q"], pa.large_string()),
    "amount": pa.array([1.5, 2.5], pa.float64()),
}})
orders.append(extra.cast(orders.schema().as_arrow()))
seen["rows_after_append"] = catalog.load_table("bronze.orders").scan().to_arrow().num_rows
print(json.dumps(seen))
"#,
        uri = server.uri,
        token = server.admin,
        first = first.snapshot_id,
    );
    let seen = common::run_python_json(&python, &script);
    assert_eq!(seen["namespaces"], json!(["bronze"]));
    assert_eq!(seen["tables"], json!(["bronze.orders"]));
    assert_eq!(seen["partition"], json!(["identity"]));
    assert_eq!((seen["rows"].as_u64(), rows(&ours.batches)), (Some(33), 33));
    assert!((seen["amount"].as_f64().unwrap() - total_amount(&ours.batches)).abs() < 1e-6);
    assert_eq!(seen["rows_then"], 30);
    assert_eq!(seen["rows_after_append"], 35);

    // pyiceberg's commit went through our compare-and-swap: lakeward sees its rows and snapshot.
    assert_eq!(count(&local, "bronze.orders").await, 35);
    let history = local.history("bronze.orders").await.unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    let filter = ScanRequest { filter: Some("order_id >= 7001".into()), ..ScanRequest::default() };
    assert_eq!(rows(&local.scan("bronze.orders", &filter).await.unwrap().batches), 2);
    server.server.abort();
}

/// Without logins (a loopback-only laptop setup) catalog clients need no token, and a JSON body
/// is required for writes: a browser cannot send one to another site unasked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_json_writes_need_no_token() {
    let db = common::sqlite();
    let mut config = Config::default();
    config.web.auth = false;
    let server = serve_with(&db, &config).await;
    let body = json!({"namespace": ["bronze"], "properties": {"owner": "data"}});
    let (status, created) =
        server.call(reqwest::Method::POST, "/v1/namespaces", "", Some(body.clone())).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["properties"]["owner"], "data");
    let form = reqwest::Client::new()
        .post(format!("{}/v1/namespaces", server.uri))
        .header("Content-Type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 403, "a non-JSON write needs the CSRF token");
    let local = server.local_tables().await;
    assert!(local
        .catalog()
        .namespace_exists(&iceberg::NamespaceIdent::new("bronze".into()))
        .await
        .unwrap());
    server.server.abort();
}
