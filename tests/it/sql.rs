//! The SQL console checked against DuckDB: the e-commerce pipeline runs twice (two snapshots
//! of every bronze table), then a set of queries (joins, group-bys, window functions, date
//! arithmetic, partition filters, time travel, a dataset) runs through `lakeward sql` (the
//! binary, JSON lines out) and through DuckDB reading the very Parquet files lakeward's
//! planning names, and the answers must agree row for row.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lakeward::dag::folder::load_file;
use lakeward::domain::RunState;
use lakeward::jobs::Registry;
use lakeward::lake::query::{Console, Limits, QueryError};
use lakeward::lake::tables::{FileSelection, Tables, TablesHandle};
use lakeward::lake::Warehouse;
use lakeward::scheduler::trigger::RunRequest;
use serde_json::{json, Value};

use crate::common::{self, Harness, HarnessOptions};

const BIN: &str = env!("CARGO_BIN_EXE_lakeward");

/// The lake after two runs of the e-commerce DAG, with what a query needs to reach it.
struct Lake {
    home: tempfile::TempDir,
    db: common::TestDb,
    warehouse: Warehouse,
    tables: Tables,
    console: Console,
    /// The first snapshot of `bronze.orders`.
    first_orders_snapshot: i64,
}

async fn ecommerce_lake() -> Lake {
    let home = tempfile::tempdir().unwrap();
    let db = common::sqlite();
    let warehouse = Warehouse::open(home.path().join("warehouse").to_str().unwrap()).unwrap();
    let options =
        HarnessOptions { warehouse: Some(warehouse.clone()), ..HarnessOptions::default() };
    let h = Harness::start_with(&db, options).await;
    let dag = Arc::new(load_file(Path::new("dags/ecommerce.toml"), &Registry::builtin()).unwrap());
    let tables = Tables::open(&h.store, &warehouse, &Default::default()).await.unwrap();
    let mut first_orders_snapshot = None;
    for (day, seed) in [("2024-06-30", 7), ("2024-07-31", 8)] {
        let params = json!({ "orders": 3000, "customers": 200, "products": 40, "seed": seed });
        let logical = lakeward::schedule::parse_date(day, chrono_tz::UTC).unwrap();
        let run = h
            .trigger(&dag, RunRequest::manual(logical, params.as_object().cloned().unwrap()))
            .await;
        let done = h.wait(&run, Duration::from_secs(120)).await;
        assert_eq!(done.state, RunState::Success, "{:#?}", h.tasks(&run).await);
        first_orders_snapshot.get_or_insert(
            tables.describe("bronze.orders").await.unwrap().current_snapshot.unwrap(),
        );
    }
    let handle = TablesHandle::new(h.store.clone(), warehouse.clone(), Default::default());
    h.stop().await;
    let limits = Limits { timeout: Duration::from_secs(30), max_rows: 100_000 };
    let console = Console::new(warehouse.clone(), handle, limits);
    Lake {
        home,
        db,
        warehouse,
        tables,
        console,
        first_orders_snapshot: first_orders_snapshot.unwrap(),
    }
}

impl Lake {
    /// `lakeward sql --format json QUERY` against this lake: its rows as JSON objects.
    fn lakeward_sql(&self, query: &str) -> Vec<serde_json::Map<String, Value>> {
        let out = Command::new(BIN)
            .env("LAKEWARD_HOME", self.home.path())
            .env("LAKEWARD_DATABASE_URL", &self.db.url)
            .env("LAKEWARD_WAREHOUSE", self.warehouse.root())
            .env_remove("LAKEWARD_CONFIG")
            .args(["sql", "--format", "json", query])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{query}\n{}{stdout}", String::from_utf8_lossy(&out.stderr));
        stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    /// The local Parquet files of `table` at `snapshot` (current when `None`).
    async fn files(&self, table: &str, snapshot: Option<i64>) -> Vec<String> {
        let selection = FileSelection { snapshot_id: snapshot, ..Default::default() };
        let files = self.tables.select_files(table, &selection).await.unwrap();
        files.locations.iter().map(|l| l.trim_start_matches("file://").to_string()).collect()
    }
}

/// Runs `query` in DuckDB with each `(view, files)` readable as a view over those Parquet
/// files (a folder: its hive-partitioned Parquet files); the rows as JSON objects.
fn duckdb(views: &[(&str, Vec<String>)], query: &str) -> Vec<serde_json::Map<String, Value>> {
    let python = common::python_with_pyiceberg().expect("a Python with duckdb");
    let script = r#"
import datetime, decimal, json, sys
import duckdb
spec = json.load(sys.stdin)
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
for name, files in spec["views"]:
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}], hive_partitioning = true, union_by_name = true)")
cursor = con.execute(spec["query"])
columns = [d[0] for d in cursor.description]
def plain(v):
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v
for row in cursor.fetchall():
    print(json.dumps({c: plain(v) for c, v in zip(columns, row)}))
"#;
    let spec = json!({ "views": views, "query": query });
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(spec.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "duckdb: {query}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Whether two answers agree: same rows in the same order, numbers within a relative 1e-9,
/// dates and times compared on their ISO text (`2024-06-01` and `2024-06-01T00:00:00` differ
/// only in form).
fn assert_same(
    query: &str,
    ours: &[serde_json::Map<String, Value>],
    theirs: &[serde_json::Map<String, Value>],
) {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{query}: row counts differ\nours {ours:?}\nduckdb {theirs:?}"
    );
    assert!(!ours.is_empty(), "{query}: no rows to compare");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(a.len(), b.len(), "{query}: row {i}: columns differ: {a:?} vs {b:?}");
        for ((name, x), y) in a.iter().zip(b.values()) {
            let same = match (x, y) {
                (Value::Number(x), Value::Number(y)) => {
                    let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
                }
                (Value::String(x), Value::String(y)) => {
                    let trim = |s: &str| {
                        s.replace(' ', "T")
                            .trim_end_matches("T00:00:00")
                            .trim_end_matches(".000")
                            .to_string()
                    };
                    trim(x) == trim(y)
                }
                _ => x == y,
            };
            assert!(same, "{query}: row {i}, column {name}: lakeward {x} vs duckdb {y}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_agree_with_duckdb_on_the_same_files() {
    if common::python_with_pyiceberg().is_none() {
        return;
    }
    let lake = ecommerce_lake().await;
    let orders = lake.files("bronze.orders", None).await;
    let customers = lake.files("bronze.customers", None).await;
    let products = lake.files("bronze.products", None).await;
    let silver: PathBuf =
        lake.warehouse.dataset("silver/orders_enriched").unwrap().current().unwrap();
    let silver_files = vec![format!("{}/**/*.parquet", silver.display())];
    let views = [
        ("bronze_orders", orders.clone()),
        ("bronze_customers", customers),
        ("bronze_products", products),
        ("silver_orders", silver_files),
    ];
    let day = "2024-07-15";
    let cases = [
        // A join and a group-by.
        (
            "SELECT c.state, COUNT(*) AS orders, SUM(o.total_amount) AS revenue \
             FROM bronze.orders o JOIN bronze.customers c ON o.customer_id = c.customer_id \
             GROUP BY c.state ORDER BY c.state",
            "SELECT c.state, COUNT(*) AS orders, SUM(o.total_amount) AS revenue \
             FROM bronze_orders o JOIN bronze_customers c ON o.customer_id = c.customer_id \
             GROUP BY c.state ORDER BY c.state",
        ),
        // A window function over an aggregate.
        (
            "SELECT category, product_id, revenue, \
             RANK() OVER (PARTITION BY category ORDER BY revenue DESC) AS rank_in_category \
             FROM (SELECT p.category, o.product_id, SUM(o.total_amount) AS revenue \
                   FROM bronze.orders o JOIN bronze.products p ON o.product_id = p.product_id \
                   GROUP BY p.category, o.product_id) \
             ORDER BY category, rank_in_category, product_id",
            "SELECT category, product_id, revenue, \
             RANK() OVER (PARTITION BY category ORDER BY revenue DESC) AS rank_in_category \
             FROM (SELECT p.category, o.product_id, SUM(o.total_amount) AS revenue \
                   FROM bronze_orders o JOIN bronze_products p ON o.product_id = p.product_id \
                   GROUP BY p.category, o.product_id) \
             ORDER BY category, rank_in_category, product_id",
        ),
        // A running total over daily sums.
        (
            "SELECT order_date, daily, SUM(daily) OVER (ORDER BY order_date) AS running \
             FROM (SELECT order_date, SUM(total_amount) AS daily FROM bronze.orders \
                   GROUP BY order_date) ORDER BY order_date",
            "SELECT order_date, daily, SUM(daily) OVER (ORDER BY order_date) AS running \
             FROM (SELECT order_date, SUM(total_amount) AS daily FROM bronze_orders \
                   GROUP BY order_date) ORDER BY order_date",
        ),
        // Date arithmetic.
        (
            "SELECT EXTRACT(month FROM order_date) AS month, \
             COUNT(*) AS orders, MAX(order_date + INTERVAL '7 days') AS week_after_last \
             FROM bronze.orders WHERE order_date >= DATE '2024-06-01' \
             GROUP BY 1 ORDER BY 1",
            "SELECT EXTRACT(month FROM order_date) AS month, \
             COUNT(*) AS orders, CAST(MAX(order_date + INTERVAL '7 days') AS DATE) AS week_after_last \
             FROM bronze_orders WHERE order_date >= DATE '2024-06-01' \
             GROUP BY 1 ORDER BY 1",
        ),
        // A filter on the partition column.
        (
            &format!("SELECT COUNT(*) AS orders, SUM(quantity) AS items FROM bronze.orders WHERE order_date = '{day}'"),
            &format!("SELECT COUNT(*) AS orders, SUM(quantity) AS items FROM bronze_orders WHERE order_date = DATE '{day}'"),
        ),
        // A dataset, hive-partitioned.
        (
            "SELECT order_year, order_month, COUNT(*) AS orders, SUM(revenue) AS revenue \
             FROM \"silver/orders_enriched\" GROUP BY 1, 2 ORDER BY 1, 2",
            "SELECT order_year, order_month, COUNT(*) AS orders, SUM(revenue) AS revenue \
             FROM silver_orders GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        // A text key that follows from a number key (each product has one category): grouped
        // by the number alone (`lake::engine::narrow_group_keys`).
        (
            "SELECT product_id, category, SUM(quantity) AS units, SUM(revenue) AS revenue \
             FROM \"silver/orders_enriched\" GROUP BY product_id, category ORDER BY product_id",
            "SELECT product_id, category, SUM(quantity) AS units, SUM(revenue) AS revenue \
             FROM silver_orders GROUP BY product_id, category ORDER BY product_id",
        ),
        // Aggregates left unnamed, which Polars would all name `total_amount`, ordered by one
        // of them (which Polars alone computes over its output, in a wrong order).
        (
            "SELECT status, SUM(total_amount), AVG(total_amount), MAX(total_amount) \
             FROM bronze.orders GROUP BY status ORDER BY SUM(total_amount) DESC",
            "SELECT status, SUM(total_amount), AVG(total_amount), MAX(total_amount) \
             FROM bronze_orders GROUP BY status ORDER BY SUM(total_amount) DESC",
        ),
        (
            "SELECT status, SUM(quantity) FROM bronze.orders GROUP BY status \
             ORDER BY SUM(quantity)",
            "SELECT status, SUM(quantity) FROM bronze_orders GROUP BY status \
             ORDER BY SUM(quantity)",
        ),
        // One that does not (a day has several statuses): grouped as written.
        (
            "SELECT order_date, status, COUNT(*) AS orders FROM bronze.orders \
             GROUP BY order_date, status ORDER BY 1, 2",
            "SELECT order_date, status, COUNT(*) AS orders FROM bronze_orders \
             GROUP BY order_date, status ORDER BY 1, 2",
        ),
        // Distinct counts of whole columns: integers counted with a bit per value
        // (`lake::engine::count_integers_densely`), dates and text by Polars.
        (
            "SELECT COUNT(DISTINCT customer_id) AS customers, COUNT(DISTINCT product_id) AS \
             products, COUNT(DISTINCT order_date) AS days, COUNT(DISTINCT status) AS statuses \
             FROM bronze.orders",
            "SELECT COUNT(DISTINCT customer_id) AS customers, COUNT(DISTINCT product_id) AS \
             products, COUNT(DISTINCT order_date) AS days, COUNT(DISTINCT status) AS statuses \
             FROM bronze_orders",
        ),
    ];
    for (ours, theirs) in cases {
        assert_same(ours, &lake.lakeward_sql(ours), &duckdb(&views, theirs));
    }

    // Time travel: the first run's snapshot, against the files that snapshot names.
    let first = lake.first_orders_snapshot;
    let old_orders = lake.files("bronze.orders", Some(first)).await;
    assert_ne!(old_orders, orders, "the second run changed bronze.orders");
    let travel = format!(
        "SELECT status, COUNT(*) AS orders, MAX(order_date) AS last_day \
         FROM bronze.orders FOR VERSION AS OF {first} GROUP BY status ORDER BY status"
    );
    let old_views = [("bronze_orders", old_orders)];
    let theirs = duckdb(
        &old_views,
        "SELECT status, COUNT(*) AS orders, MAX(order_date) AS last_day \
         FROM bronze_orders GROUP BY status ORDER BY status",
    );
    let ours = lake.lakeward_sql(&travel);
    assert_same(&travel, &ours, &theirs);
    let now = lake.lakeward_sql("SELECT MAX(order_date) AS last_day FROM bronze.orders");
    assert_ne!(ours[0]["last_day"], now[0]["last_day"], "time travel read the current snapshot");

    // The partition filter pruned files, and --explain says so.
    let plans = lake
        .console
        .explain(&format!("SELECT COUNT(*) FROM bronze.orders WHERE order_date = '{day}'"))
        .await
        .unwrap();
    assert_eq!(plans.len(), 1);
    assert!(
        plans[0].planned_files >= 1 && (plans[0].planned_files as u64) < plans[0].total_files,
        "{plans:?}"
    );
    assert!(plans[0].planned_bytes < plans[0].total_bytes, "{plans:?}");
    assert_eq!(plans[0].pruned_by, [format!("order_date = {day}")]);
    let explained = Command::new(BIN)
        .env("LAKEWARD_HOME", lake.home.path())
        .env("LAKEWARD_DATABASE_URL", &lake.db.url)
        .env("LAKEWARD_WAREHOUSE", lake.warehouse.root())
        .args([
            "sql",
            "--explain",
            &format!("SELECT * FROM bronze.orders WHERE order_date = '{day}'"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(text.contains(&format!("files 1 of {}", plans[0].total_files)), "{text}");
    assert!(text.contains("pruned by order_date = 2024-07-15"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_get_clear_errors_and_nothing_outside_the_lake_is_read() {
    let lake = ecommerce_lake().await;
    let console = &lake.console;
    let syntax = console.run("SELECT order_id\nFROM bronze.orders WHERE", 10).await;
    match syntax {
        Err(QueryError::Syntax { line, message, .. }) => {
            assert_eq!(line, 2, "{message}");
        }
        other => panic!("expected a syntax error, got {:?}", other.err()),
    }
    for refused in [
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM \"../../etc\"",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "DROP TABLE bronze.orders",
    ] {
        let e = console.run(refused, 10).await.err().unwrap_or_else(|| panic!("{refused} ran"));
        assert!(
            matches!(e, QueryError::Refused(_) | QueryError::Lake(_) | QueryError::Syntax { .. }),
            "{refused}: {e:?}"
        );
    }
    let unknown = console.run("SELECT * FROM bronze.nothing", 10).await.err().unwrap();
    assert!(unknown.to_string().contains("nothing"), "{unknown}");
    let column = console.run("SELECT no_such_column FROM bronze.orders", 10).await.err().unwrap();
    assert!(matches!(column, QueryError::Invalid(_)), "{column:?}");
    assert!(column.to_string().contains("no_such_column"), "{column}");
    assert!(
        !column.to_string().contains("Resolved plan"),
        "the plan dump (file paths) is left out: {column}"
    );

    // The row cap truncates, and says so.
    let capped = console.run("SELECT * FROM bronze.orders", 25).await.unwrap();
    assert_eq!(capped.frame.height(), 25);
    assert!(capped.truncated);
    let all = console.run("SELECT COUNT(*) AS n FROM bronze.customers", 25).await.unwrap();
    assert!(!all.truncated);

    // The time limit stops a query that runs too long.
    let slow = Console::new(
        lake.warehouse.clone(),
        TablesHandle::new(
            lakeward::store::Store::open(&lake.db.url).await.unwrap(),
            lake.warehouse.clone(),
            Default::default(),
        ),
        Limits { timeout: Duration::from_millis(300), max_rows: 10 },
    );
    // Some 36 million pairs: seconds of work, far beyond the limit.
    let cross = "SELECT COUNT(*) FROM bronze.orders a CROSS JOIN bronze.orders b \
                 WHERE a.quantity + b.quantity > 7";
    let started = std::time::Instant::now();
    let timed_out = slow.run(cross, 10).await.err().unwrap();
    assert!(matches!(timed_out, QueryError::Timeout(_)), "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(slow.outcomes().timed_out.load(std::sync::atomic::Ordering::Relaxed), 1);
    // And a dropped query (its client went away) is cancelled and counted. Its own limit is
    // far away, so only the client's going away can end it, however loaded the machine.
    let patient = Console::new(
        lake.warehouse.clone(),
        slow.tables().clone(),
        Limits { timeout: Duration::from_secs(600), max_rows: 10 },
    );
    let dropped = tokio::time::timeout(Duration::from_millis(300), patient.run(cross, 10)).await;
    assert!(dropped.is_err());
    assert_eq!(patient.outcomes().cancelled.load(std::sync::atomic::Ordering::Relaxed), 1);
    // The consoles still answer.
    assert_eq!(console.run("SELECT 1 AS one", 10).await.unwrap().frame.height(), 1);

    // Expressions Polars would name alike (after their leftmost column, or `literal`) are
    // named after their text; other names stay Polars'.
    for (query, names) in [
        (
            "SELECT SUM(quantity), AVG(quantity), COUNT(*) FROM bronze.orders",
            vec!["SUM(quantity)", "AVG(quantity)", "len"],
        ),
        ("SELECT quantity, quantity * 2 FROM bronze.orders", vec!["quantity", "quantity * 2"]),
        ("SELECT 1, 2", vec!["1", "2"]),
    ] {
        let answer = console.run(query, 10).await.unwrap_or_else(|e| panic!("{query}: {e}"));
        let got: Vec<&str> = answer.frame.get_column_names().iter().map(|n| n.as_str()).collect();
        assert_eq!(got, names, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_query_from_the_api_and_the_pages() {
    use axum::http::Method;
    use common::web::{api_request, send};
    use lakeward::domain::Role;
    use lakeward::users::{create_api_token, create_user};

    let lake = ecommerce_lake().await;
    let store = lakeward::store::Store::open(&lake.db.url).await.unwrap();
    let versions =
        Arc::new(lakeward::versions::DagVersions::new(store.clone(), Registry::builtin()));
    let state = lakeward::web::AppState::new(store.clone(), versions, &Default::default())
        .with_console(lake.console.clone());
    let router = lakeward::web::app(state);
    create_user(&store, "reader", "reader-password", Role::Viewer).await.unwrap();
    let token = create_api_token(&store, "reader", "tests", None).await.unwrap();
    let get = |path: String| send(&router, api_request(Method::GET, &path, &token, None));
    let post =
        |body: Value| send(&router, api_request(Method::POST, "/api/v1/sql", &token, Some(body)));

    // The API: rows as arrays in column order, capped, with the truncation flag.
    let answer = post(json!({ "query": "SELECT order_id, order_date, total_amount FROM bronze.orders ORDER BY order_id", "limit": 5 })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["columns"][0]["name"], "order_id");
    assert_eq!(body["columns"][1]["type"], "date");
    assert_eq!(body["rows"].as_array().unwrap().len(), 5);
    assert_eq!(body["row_count"], 5);
    assert_eq!(body["truncated"], true);
    assert!(body["rows"][0][0].is_number() && body["rows"][0][1].is_string(), "{body}");
    assert_eq!(body["sources"][0]["name"], "bronze.orders");
    let whole = post(json!({ "query": "SELECT COUNT(*) AS n FROM bronze.products" })).await.json();
    assert_eq!(whole["truncated"], false);
    // A bad query: the parser's message and where.
    let bad =
        post(json!({ "query": "SELECT order_id FROM bronze.orders WHERE order_id = = 1" })).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.json()["line"], 1, "{}", bad.body);
    assert!(bad.json()["column"].as_u64().unwrap() > 1, "{}", bad.body);
    let escape = post(json!({ "query": "SELECT * FROM read_csv('/etc/passwd')" })).await;
    assert_eq!(escape.status, 400, "{}", escape.body);

    // The SQL page: the table, a chart of revenue by day, the plan, CSV, the history.
    let query =
        "SELECT order_date, SUM(total_amount) AS revenue FROM bronze.orders GROUP BY 1 ORDER BY 1";
    let encoded: String = url_encode(query);
    let page = get(format!("/sql?q={encoded}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"sql-result\""), "{}", page.body);
    assert!(page.body.contains("<th>revenue</th>"));
    assert!(page.body.contains("<polyline"), "a line chart of revenue by day");
    assert!(page.body.contains("bronze.orders (table, snapshot"), "the plan");
    assert!(page.body.contains("rel=\"next\""), "more than a page of days");
    let bars = get(format!("/sql?q={encoded}&chart=bar&x=order_date&y=revenue&page=2")).await;
    assert!(bars.body.contains("<rect class=\"bar"), "{}", bars.body);
    assert!(bars.body.contains("rel=\"prev\""));
    let far = get(format!("/sql?q={encoded}&page={}", usize::MAX)).await;
    assert_eq!(far.status, 200, "any page number: {}", far.body);
    assert!(far.body.contains("no rows on this page"));
    let csv = get(format!("/sql/download.csv?q={encoded}")).await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.body.starts_with("order_date,revenue\n"),
        "{}",
        &csv.body[..40.min(csv.body.len())]
    );
    let days = csv.body.lines().count() - 1;
    assert!(days > 100, "{days} days");
    let error = get(format!("/sql?q={}", url_encode("SELECT FROM WHERE"))).await;
    assert!(error.body.contains("id=\"sql-error\""), "{}", error.body);
    let recent = get("/sql".to_string()).await;
    assert!(recent.body.contains("SUM(total_amount) AS revenue"), "the history lists the query");

    // The table pages.
    let list = get("/tables".to_string()).await;
    assert!(list.body.contains("href=\"/tables/bronze.orders\""), "{}", list.body);
    let table = get("/tables/bronze.orders".to_string()).await;
    assert_eq!(table.status, 200, "{}", table.body);
    assert!(table.body.contains("order_date_day = day(order_date)"), "the partition spec");
    assert!(table.body.contains("order_date_day=2024-07-15"), "partitions by day");
    assert!(table.body.contains("ecommerce_etl / manual__"), "the runs that wrote the snapshots");
    assert!(table.body.contains("promote_bronze_orders"), "and their task");
    assert!(table.body.matches("<tr>").count() > 20, "snapshots, partitions and a sample");
    assert!(get("/tables/bronze.nothing".to_string()).await.status == 404);
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A client that goes away while its query runs: the server notices, the query is cancelled
/// and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_is_cancelled_when_its_client_goes_away() {
    use tokio::io::AsyncWriteExt;

    let lake = ecommerce_lake().await;
    let store = lakeward::store::Store::open(&lake.db.url).await.unwrap();
    let versions =
        Arc::new(lakeward::versions::DagVersions::new(store.clone(), Registry::builtin()));
    let mut config = lakeward::config::Config::default();
    config.web.auth = false;
    let state =
        lakeward::web::AppState::new(store, versions, &config).with_console(lake.console.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, shutdown) = lakeward::process::shutdown_channel();
    let server = tokio::spawn(lakeward::web::serve(listener, state, shutdown));

    let outcomes = lake.console.outcomes();
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    // One query Polars' streaming engine runs (an exploding join: hours of work), and one it
    // rejects, which runs on the in-memory engine (a cross join filtered by an inequality).
    let queries = [
        "SELECT COUNT(*) FROM bronze.orders a JOIN bronze.orders b ON a.quantity = b.quantity \
         JOIN bronze.orders c ON b.quantity = c.quantity",
        "SELECT COUNT(*) FROM bronze.orders a CROSS JOIN bronze.orders b \
         WHERE a.quantity * b.quantity > 3",
    ];
    for (i, query) in queries.into_iter().enumerate() {
        let body = json!({ "query": query }).to_string();
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!(
            "POST /api/v1/sql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        client.write_all(request.as_bytes()).await.unwrap();
        let asked = std::time::Instant::now();
        while count(&outcomes.running) == 0 && asked.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(count(&outcomes.running), 1, "{query}: not running");
        drop(client);
        let started = std::time::Instant::now();
        while (count(&outcomes.cancelled) as usize) < i + 1
            && started.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(count(&outcomes.cancelled) as usize, i + 1, "{query}: not cancelled");
        // The engine stops too, not just the waiting for it.
        while count(&outcomes.running) > 0 && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(count(&outcomes.running), 0, "{query}: still at work after it was cancelled");
    }
    assert_eq!(count(&outcomes.succeeded), 0);
    stop.trigger();
    server.await.unwrap().unwrap();
}
