//! The reference pipeline end to end: `dags/ecommerce.toml` runs, and its gold tables and KPI
//! report equal figures computed here independently from the raw CSVs, with plain Rust.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, HarnessOptions};
use lakeward::dag::folder::load_file;
use lakeward::domain::RunState;
use lakeward::jobs::Registry;
use lakeward::lake::Warehouse;
use lakeward::scheduler::trigger::RunRequest;
use serde_json::{json, Value};

/// Rows of the single CSV file in the current version of a raw dataset, as column → text.
fn raw_csv(warehouse: &Warehouse, dataset: &str) -> Vec<HashMap<String, String>> {
    let dir = warehouse.dataset(dataset).unwrap().current().unwrap();
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "csv"))
        .unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    lines
        .map(|line| header.iter().cloned().zip(line.split(',').map(str::to_string)).collect())
        .collect()
}

fn close(actual: &Value, expected: f64, what: &str) {
    let actual = actual.as_f64().unwrap_or_else(|| panic!("{what}: not a number: {actual}"));
    assert!(
        (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0),
        "{what}: {actual} != {expected}"
    );
}

#[derive(Default)]
struct Tally {
    orders: u64,
    revenue: f64,
    units: i64,
    customers: HashSet<String>,
    days: HashSet<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_tables_and_kpis_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite();
    let warehouse_dir = dir.path().join("warehouse");
    let options = HarnessOptions {
        warehouse: Some(Warehouse::open(warehouse_dir.to_str().unwrap()).unwrap()),
        ..Default::default()
    };
    let h = Harness::start_with(&db, options).await;
    let dag = Arc::new(load_file(Path::new("dags/ecommerce.toml"), &Registry::builtin()).unwrap());
    let params =
        json!({ "orders": 20000, "customers": 500, "products": 60, "dirty_fraction": 0.02 });
    let logical = lakeward::schedule::parse_date("2024-06-30", chrono_tz::UTC).unwrap();
    let run =
        h.trigger(&dag, RunRequest::manual(logical, params.as_object().cloned().unwrap())).await;
    let done = h.wait(&run, Duration::from_secs(120)).await;
    let tasks = h.tasks(&run).await;
    assert_eq!(done.state, RunState::Success, "{tasks:#?}");
    h.stop().await;

    // The independent computation, from the raw CSVs.
    let warehouse = Warehouse::open(warehouse_dir.to_str().unwrap()).unwrap();
    let customers: HashMap<String, String> = raw_csv(&warehouse, "raw/customers")
        .into_iter()
        .map(|r| (r["customer_id"].clone(), r["state"].clone()))
        .collect();
    let products: HashMap<String, String> = raw_csv(&warehouse, "raw/products")
        .into_iter()
        .map(|r| (r["product_id"].clone(), r["category"].clone()))
        .collect();
    let (mut total, mut daily, mut regional, mut by_product, mut by_customer) = (
        Tally::default(),
        BTreeMap::<String, Tally>::new(),
        HashMap::<String, Tally>::new(),
        HashMap::<String, Tally>::new(),
        HashMap::<String, Tally>::new(),
    );
    for order in raw_csv(&warehouse, "raw/orders") {
        let quantity: i64 = order["quantity"].parse().unwrap();
        let valid = customers.contains_key(&order["customer_id"])
            && products.contains_key(&order["product_id"])
            && ["completed", "pending"].contains(&order["status"].as_str())
            && quantity > 0
            && !order["total_amount"].is_empty();
        if !valid {
            continue;
        }
        let revenue: f64 = order["total_amount"].parse().unwrap();
        let customer = order["customer_id"].clone();
        let state = customers[&customer].clone();
        for tally in [
            &mut total,
            daily.entry(order["order_date"].clone()).or_default(),
            regional.entry(state).or_default(),
            by_product.entry(order["product_id"].clone()).or_default(),
            by_customer.entry(customer.clone()).or_default(),
        ] {
            tally.orders += 1;
            tally.revenue += revenue;
            tally.units += quantity;
            tally.customers.insert(customer.clone());
            tally.days.insert(order["order_date"].clone());
        }
    }
    assert!(total.orders > 15_000, "most orders are clean: {}", total.orders);

    // Every layer was promoted to Iceberg, each task naming the snapshot it committed.
    let store = lakeward::store::Store::open(&db.url).await.unwrap();
    let tables = lakeward::lake::tables::Tables::open(&store, &warehouse, &Default::default())
        .await
        .unwrap();
    let promoted: HashMap<&str, &Value> = tasks
        .iter()
        .filter(|t| t.task_id.starts_with("promote_"))
        .map(|t| (t.task_id.as_str(), &t.outputs["snapshot_id"]))
        .collect();
    assert_eq!(promoted.len(), 8, "{promoted:?}");
    assert!(promoted.values().all(|id| id.is_i64()), "{promoted:?}");
    for (table, rows) in
        [("silver.orders_enriched", total.orders), ("gold.daily_sales", daily.len() as u64)]
    {
        let info = tables.describe(table).await.unwrap();
        assert_eq!(info.rows, rows, "{table}");
    }
    let silver = tables.describe("silver.orders_enriched").await.unwrap();
    assert_eq!(
        silver.partition_spec,
        ["order_year = identity(order_year)", "order_month = identity(order_month)"]
    );
    let orders = tables.describe("bronze.orders").await.unwrap();
    assert_eq!(orders.partition_spec, ["order_date_day = day(order_date)"]);
    assert!(orders.data_files >= 365, "one file per day at least: {}", orders.data_files);

    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(warehouse_dir.join("gold/kpi_report.json")).unwrap(),
    )
    .unwrap();
    let kpi = &report["metrics"];
    assert_eq!(kpi["total_orders"], total.orders);
    assert_eq!(kpi["total_customers"], total.customers.len());
    close(&kpi["total_revenue"], total.revenue, "total_revenue");
    close(&kpi["avg_order_value"], total.revenue / total.orders as f64, "avg_order_value");

    let daily_rows = common::dataset_rows(&warehouse, "gold/daily_sales");
    assert_eq!(daily_rows.len(), daily.len());
    for row in &daily_rows {
        let expected = &daily[row["date"].as_str().unwrap()];
        assert_eq!(row["num_orders"], expected.orders);
        assert_eq!(row["unique_customers"], expected.customers.len());
        close(&row["total_revenue"], expected.revenue, "daily total_revenue");
        close(
            &row["avg_order_value"],
            expected.revenue / expected.orders as f64,
            "daily avg_order_value",
        );
    }

    let regional_rows = common::dataset_rows(&warehouse, "gold/regional_sales");
    assert_eq!(regional_rows.len(), regional.len());
    for row in &regional_rows {
        let expected = &regional[row["state"].as_str().unwrap()];
        assert_eq!(row["num_orders"], expected.orders);
        assert_eq!(row["unique_customers"], expected.customers.len());
        close(&row["total_revenue"], expected.revenue, "regional total_revenue");
    }

    let product_rows = common::dataset_rows(&warehouse, "gold/product_performance");
    assert_eq!(product_rows.len(), by_product.len());
    for row in &product_rows {
        let id = row["product_id"].to_string();
        assert_eq!(row["category"].as_str().unwrap(), products[&id]);
        assert_eq!(row["units_sold"], by_product[&id].units);
        close(&row["total_revenue"], by_product[&id].revenue, "product total_revenue");
    }

    let customer_rows = common::dataset_rows(&warehouse, "gold/customer_metrics");
    assert_eq!(customer_rows.len(), by_customer.len());
    for row in &customer_rows {
        let expected = &by_customer[&row["customer_id"].to_string()];
        assert_eq!(row["total_orders"], expected.orders);
        assert_eq!(row["days_active"], expected.days.len());
        close(&row["lifetime_value"], expected.revenue, "lifetime_value");
    }

    // The quality step saw the deliberately dirty orders without failing the run.
    let quality = tasks.iter().find(|t| t.task_id == "validate_data_quality").unwrap();
    assert_eq!(quality.outputs["failed_errors"], 0);
    assert!(quality.outputs["failed_warnings"].as_u64().unwrap() >= 3, "{:?}", quality.outputs);
}
