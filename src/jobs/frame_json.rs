//! Small Polars results as JSON, for task outputs and reports.

use polars::prelude::{DataFrame, JsonFormat, JsonWriter, SerWriter};
use serde_json::Value;

/// The rows of `frame` as a JSON array of objects.
pub fn rows(frame: &mut DataFrame) -> Value {
    let mut buffer = Vec::new();
    let written = JsonWriter::new(&mut buffer).with_json_format(JsonFormat::Json).finish(frame);
    match written {
        Ok(()) => serde_json::from_slice(&buffer).unwrap_or(Value::Null),
        Err(e) => Value::String(format!("(cannot show rows: {e})")),
    }
}
