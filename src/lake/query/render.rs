//! A query's answer written out: an aligned text table, CSV, JSON lines, Parquet, rows of
//! JSON values, or cells of text (what the web page shows). Renders only; runs nothing.

use std::io::Write;

use polars::prelude::{
    CsvWriter, DataFrame, DataType, JsonFormat, JsonWriter, ParquetWriter, SerWriter,
};
use serde_json::Value;

use crate::lake::LakeError;

/// The output formats of `lakeward sql --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Columns aligned for reading in a terminal.
    Table,
    Csv,
    /// JSON lines: one object per row.
    Json,
    Parquet,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "table" => OutputFormat::Table,
            "csv" => OutputFormat::Csv,
            "json" | "jsonl" => OutputFormat::Json,
            "parquet" => OutputFormat::Parquet,
            other => return Err(format!("unknown format `{other}` (table, csv, json, parquet)")),
        })
    }
}

/// Writes `frame` to `out` in `format`.
pub fn write(
    frame: &mut DataFrame,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), LakeError> {
    match format {
        OutputFormat::Table => {
            out.write_all(aligned(frame).as_bytes()).map_err(write_error)?;
        }
        OutputFormat::Csv => CsvWriter::new(out).include_header(true).finish(frame)?,
        OutputFormat::Json => {
            JsonWriter::new(out).with_json_format(JsonFormat::JsonLines).finish(frame)?
        }
        OutputFormat::Parquet => {
            ParquetWriter::new(out).finish(frame)?;
        }
    }
    Ok(())
}

fn write_error(e: std::io::Error) -> LakeError {
    LakeError::Io { path: "<output>".into(), source: e }
}

/// Column names and type names of `frame`.
pub fn columns(frame: &DataFrame) -> Vec<(String, String)> {
    frame.columns().iter().map(|c| (c.name().to_string(), c.dtype().to_string())).collect()
}

/// Every value of `frame` as text (`None` for null), row by row.
pub fn cells(frame: &DataFrame) -> Vec<Vec<Option<String>>> {
    let columns: Vec<Vec<Option<String>>> = frame
        .columns()
        .iter()
        .map(|column| {
            let series = column.as_materialized_series();
            match series.cast(&DataType::String) {
                Ok(text) => match text.str() {
                    Ok(values) => values.iter().map(|v| v.map(str::to_string)).collect(),
                    Err(_) => vec![None; series.len()],
                },
                // Nested values: Polars' own formatting.
                Err(_) => series.iter().map(|v| Some(v.to_string())).collect(),
            }
        })
        .collect();
    (0..frame.height()).map(|row| columns.iter().map(|c| c[row].clone()).collect()).collect()
}

/// `frame` as a text table: a header, a rule, numbers right-aligned, nulls as `NULL`.
pub fn aligned(frame: &DataFrame) -> String {
    let names = columns(frame);
    let numeric: Vec<bool> =
        frame.columns().iter().map(|c| c.dtype().is_primitive_numeric()).collect();
    let rows = cells(frame);
    let shown = |cell: &Option<String>| cell.clone().unwrap_or_else(|| "NULL".into());
    let mut widths: Vec<usize> = names.iter().map(|(n, _)| n.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(shown(cell).chars().count());
        }
    }
    let line = |values: Vec<String>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .zip(&numeric)
            .map(|((v, &w), &right)| if right { format!("{v:>w$}") } else { format!("{v:<w$}") })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(names.into_iter().map(|(n, _)| n).collect());
    out.push_str(&line(widths.iter().map(|&w| "-".repeat(w)).collect()));
    for row in &rows {
        out.push_str(&line(row.iter().map(shown).collect()));
    }
    out
}

/// The rows of `frame` as arrays of JSON values in column order (numbers stay numbers; dates
/// and times are ISO 8601 text).
pub fn json_rows(frame: &mut DataFrame) -> Result<Vec<Vec<Value>>, LakeError> {
    let mut buffer = Vec::new();
    JsonWriter::new(&mut buffer).with_json_format(JsonFormat::Json).finish(frame)?;
    let objects: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&buffer)
        .map_err(|e| LakeError::NotSupported(format!("rendering the rows as JSON: {e}")))?;
    let names: Vec<String> = columns(frame).into_iter().map(|(n, _)| n).collect();
    Ok(objects
        .into_iter()
        .map(|mut object| names.iter().map(|n| object.remove(n).unwrap_or(Value::Null)).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use polars::prelude::df;

    use super::{aligned, json_rows};

    #[test]
    fn tables_align_and_json_keeps_types() {
        let mut frame = df!(
            "state" => ["CA", "NY"],
            "revenue" => [Some(1250.5), None],
        )
        .unwrap();
        assert_eq!(
            aligned(&frame),
            "state  revenue\n-----  -------\nCA      1250.5\nNY        NULL\n"
        );
        let rows = json_rows(&mut frame).unwrap();
        assert_eq!(rows[0], vec![serde_json::json!("CA"), serde_json::json!(1250.5)]);
        assert_eq!(rows[1][1], serde_json::Value::Null);
    }
}
