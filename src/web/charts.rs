//! The page of a metrics table (what `window` writes): requests, error rate and p95 latency per
//! window as SVG line charts, the anomalies the `anomaly` kind found marked on them and listed
//! beside, and the runs that wrote the table's latest snapshots. Reads the lake and the lineage;
//! writes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::Extension;
use serde::Deserialize;

use super::error::{PageError, WebError};
use super::identity::Identity;
use super::views::{run_href, Chrome};
use super::AppState;
use crate::anomaly::series_key;
use crate::lake::tables::{number_column, text_column, ScanRequest, TableError};
use crate::time::display;

/// Most windows drawn: the latest ones.
const MAX_WINDOWS: usize = 240;
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 90.0;

#[derive(Deserialize)]
pub struct ChartQuery {
    /// Only this key's rows (a value of the table's key column); default all keys.
    key: Option<String>,
    /// The anomalies table; default `<namespace>.anomalies`.
    anomalies: Option<String>,
}

/// One metric over the windows, drawn.
pub struct ChartView {
    pub title: String,
    pub points: String,
    pub peak: String,
    /// Anomalies on this metric: (x, y, tooltip).
    pub marks: Vec<(String, String, String)>,
}

pub struct AnomalyRow {
    pub window: String,
    pub anomaly: String,
    pub key: String,
    pub value: String,
    pub baseline: String,
    pub score: String,
    pub severity: String,
}

pub struct WriterRow {
    pub snapshot: String,
    pub run_id: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "metrics.html")]
pub struct MetricsPage {
    pub chrome: Chrome,
    pub table: String,
    pub key: String,
    pub anomalies_table: String,
    pub range: String,
    pub charts: Vec<ChartView>,
    pub anomalies: Vec<AnomalyRow>,
    pub writers: Vec<WriterRow>,
}

/// Per window (oldest first): requests, errors, the highest p95.
#[derive(Default, Clone, Copy)]
struct Window {
    requests: f64,
    errors: Option<f64>,
    p95: Option<f64>,
}

/// An anomaly as read from the anomalies table.
struct Found {
    start: i64,
    anomaly: String,
    key: String,
    metric: String,
    value: f64,
    baseline: f64,
    score: f64,
    severity: String,
}

/// A chart: its title, the metric anomalies name it by, and its value per window.
struct Series {
    title: &'static str,
    metric: &'static str,
    value: fn(&Window) -> Option<f64>,
}

const SERIES: [Series; 3] = [
    Series { title: "requests per window", metric: "requests", value: |w| Some(w.requests) },
    Series {
        title: "error rate (errors ÷ requests)",
        metric: "errors / requests",
        value: |w| w.errors.map(|e| e / w.requests.max(1.0)),
    },
    Series { title: "p95 latency, ms (slowest key)", metric: "p95_ms", value: |w| w.p95 },
];

fn starts(batch: &RecordBatch) -> Option<&arrow_array::TimestampMicrosecondArray> {
    batch.column_by_name("window_start")?.as_primitive_opt::<TimestampMicrosecondType>()
}

/// The key of a metrics row: its text columns other than the window's, joined by spaces (as
/// the `anomaly` kind names keys).
fn key_columns(batch: &RecordBatch) -> Vec<arrow_array::StringArray> {
    batch
        .schema()
        .fields()
        .iter()
        .filter(|f| f.data_type() == &DataType::Utf8)
        .filter_map(|f| text_column(batch, f.name()))
        .collect()
}

fn key_of(keys: &[arrow_array::StringArray], row: usize) -> String {
    series_key(keys.iter().map(|k| if k.is_null(row) { "" } else { k.value(row) }))
}

pub async fn metrics_table(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(table): Path<String>,
    Query(query): Query<ChartQuery>,
) -> Result<Html<String>, PageError> {
    let handle = state
        .tables
        .as_ref()
        .ok_or_else(|| WebError::NotFound("this server has no table catalog".into()))?;
    let tables = handle.get().await.map_err(|e| WebError::Internal(e.to_string()))?;
    let missing = |e: TableError| match e {
        TableError::Missing(name) => WebError::NotFound(format!("no table `{name}`")),
        other => WebError::BadRequest(other.to_string()),
    };
    let scan = tables.scan(&table, &ScanRequest::default()).await.map_err(missing)?;
    let wanted = query.key.clone().filter(|k| !k.is_empty());
    let mut windows: BTreeMap<i64, Window> = BTreeMap::new();
    // The keys this table has: the anomalies table holds other tables' anomalies too.
    let mut seen_keys: HashSet<String> = HashSet::new();
    for batch in &scan.batches {
        let (Some(starts), Some(requests)) = (starts(batch), number_column(batch, "requests"))
        else {
            return Err(WebError::BadRequest(format!(
                "{table} is not a metrics table: it needs `window_start` and `requests`"
            ))
            .into());
        };
        let (errors, p95, keys) =
            (number_column(batch, "errors"), number_column(batch, "p95_ms"), key_columns(batch));
        for row in 0..batch.num_rows() {
            let key = key_of(&keys, row);
            if wanted.as_ref().is_some_and(|k| *k != key) || starts.is_null(row) {
                continue;
            }
            seen_keys.insert(key);
            let window = windows.entry(starts.value(row)).or_default();
            window.requests += requests.value(row);
            if let Some(errors) = &errors {
                *window.errors.get_or_insert(0.0) += errors.value(row);
            }
            if let Some(p95) = p95.as_ref().filter(|p| p.is_valid(row)) {
                let slowest = window.p95.get_or_insert(0.0);
                *slowest = slowest.max(p95.value(row));
            }
        }
    }
    let skip = windows.len().saturating_sub(MAX_WINDOWS);
    let windows: Vec<(i64, Window)> = windows.into_iter().skip(skip).collect();

    let namespace = table.split('.').next().unwrap_or_default();
    let anomalies_table =
        query.anomalies.clone().unwrap_or_else(|| format!("{namespace}.anomalies"));
    let found = match tables.scan(&anomalies_table, &ScanRequest::default()).await {
        Ok(scan) => scan.batches,
        Err(TableError::Missing(_)) => Vec::new(),
        Err(e) => return Err(WebError::BadRequest(e.to_string()).into()),
    };
    let first = windows.first().map_or(i64::MIN, |w| w.0);
    let mut anomalies: Vec<Found> = Vec::new();
    for batch in &found {
        let (Some(starts), Some(names), Some(keys), Some(metrics)) = (
            starts(batch),
            text_column(batch, "anomaly"),
            text_column(batch, "key"),
            text_column(batch, "metric"),
        ) else {
            continue;
        };
        let (Some(values), Some(baselines), Some(scores), Some(severities)) = (
            number_column(batch, "value"),
            number_column(batch, "baseline"),
            number_column(batch, "score"),
            text_column(batch, "severity"),
        ) else {
            continue;
        };
        for row in 0..batch.num_rows() {
            let start = starts.value(row);
            if start < first || !seen_keys.contains(keys.value(row)) {
                continue;
            }
            anomalies.push(Found {
                start,
                anomaly: names.value(row).to_string(),
                key: keys.value(row).to_string(),
                metric: metrics.value(row).to_string(),
                value: values.value(row),
                baseline: baselines.value(row),
                score: scores.value(row),
                severity: severities.value(row).to_string(),
            });
        }
    }
    anomalies.sort_by(|a, b| b.start.cmp(&a.start).then(a.anomaly.cmp(&b.anomaly)));

    let position: HashMap<i64, usize> = windows.iter().enumerate().map(|(i, w)| (w.0, i)).collect();
    let mut charts = Vec::new();
    for Series { title, metric, value } in SERIES {
        let values: Vec<Option<f64>> = windows.iter().map(|(_, w)| value(w)).collect();
        if values.iter().all(Option::is_none) || values.len() < 2 {
            continue;
        }
        let peak = values.iter().flatten().copied().fold(0.0, f64::max).max(1e-9);
        let step = WIDTH / (values.len() - 1) as f64;
        let xy = |i: usize, v: f64| (i as f64 * step, (HEIGHT - 4.0) * (1.0 - v / peak) + 2.0);
        let points = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| xy(i, v)))
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect::<Vec<_>>()
            .join(" ");
        let marks = anomalies
            .iter()
            .filter(|a| a.metric == metric)
            .filter_map(|a| {
                let i = *position.get(&a.start)?;
                let (x, y) = xy(i, values[i]?);
                let title = format!("{} {} at {}", a.anomaly, a.key, display(a.start));
                Some((format!("{x:.1}"), format!("{y:.1}"), title))
            })
            .collect();
        charts.push(ChartView {
            title: title.to_string(),
            points,
            peak: format!("{peak:.3}"),
            marks,
        });
    }

    let mut writers = Vec::new();
    for (snapshot, dag_id, run_id, _) in
        crate::store::lineage::writers_of(state.store.read(), "table", &table, 10)
            .await
            .map_err(WebError::from)?
    {
        writers.push(WriterRow { snapshot, href: run_href(&dag_id, &run_id), run_id });
    }
    let range = match (windows.first(), windows.last()) {
        (Some(a), Some(b)) => {
            format!("{} – {} ({} windows)", display(a.0), display(b.0), windows.len())
        }
        _ => "no windows yet".into(),
    };
    let page = MetricsPage {
        chrome: Chrome::from(&identity),
        table,
        key: wanted.unwrap_or_default(),
        anomalies_table,
        range,
        charts,
        anomalies: anomalies
            .into_iter()
            .map(|a| AnomalyRow {
                window: display(a.start),
                anomaly: a.anomaly,
                key: a.key,
                value: format!("{:.3}", a.value),
                baseline: format!("{:.3}", a.baseline),
                score: format!("{:.1}", a.score),
                severity: a.severity,
            })
            .collect(),
        writers,
    };
    Ok(Html(page.render().map_err(WebError::from)?))
}
