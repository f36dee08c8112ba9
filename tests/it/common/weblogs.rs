//! Simulated web logs written straight into a bronze table (what `weblogs_ingest` would
//! commit to `bronze.web_logs`), for tests of the layers above bronze.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use lakeward::lake::tables::{Tables, WriteMode};

/// A web-log event's event time, in microseconds.
pub fn event_micros(event: &serde_json::Value) -> i64 {
    let text = event["timestamp"].as_str().expect("a timestamp");
    text.parse::<chrono::DateTime<chrono::Utc>>().expect("RFC 3339").timestamp_micros()
}

/// The columns of bronze.web_logs the layers above read, for `events`.
pub fn web_log_batch(events: &[serde_json::Value]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
        Field::new("ip", DataType::Utf8, true),
        Field::new("endpoint", DataType::Utf8, true),
        Field::new("status_code", DataType::Int64, true),
        Field::new("response_time_ms", DataType::Float64, true),
        Field::new("bytes", DataType::Int64, true),
    ]));
    let text = |name: &'static str| {
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| e[name].as_str().unwrap())))
    };
    let integer = |name: &'static str| {
        Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e[name].as_i64().unwrap())))
    };
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(events.iter().map(event_micros))
                    .with_timezone("+00:00"),
            ),
            text("ip"),
            text("endpoint"),
            integer("status_code"),
            Arc::new(Float64Array::from_iter_values(
                events.iter().map(|e| e["response_time_ms"].as_f64().unwrap()),
            )),
            integer("bytes"),
        ],
    )
    .unwrap()
}

/// Appends `events` to bronze.web_logs as one snapshot.
pub async fn append_web_logs(tables: &Tables, events: &[serde_json::Value]) {
    append_web_logs_to(tables, "bronze.web_logs", events).await;
}

/// Appends `events` to `table` as one snapshot.
pub async fn append_web_logs_to(tables: &Tables, table: &str, events: &[serde_json::Value]) {
    let batch = web_log_batch(events);
    let mut writer = tables.writer(table, &batch.schema(), &[]).await.unwrap();
    writer.write(&batch).await.unwrap();
    writer.commit(WriteMode::Append, &BTreeMap::new(), &BTreeMap::new()).await.unwrap();
}
