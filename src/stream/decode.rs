//! Messages to rows: each message's JSON object is checked against a declared schema and
//! appended to Arrow column builders, or turned into a [`DeadLetter`] saying why it was not
//! (not JSON, not an object, a value of the wrong type, no event time, too large, unknown
//! fields when the policy says so). A message is checked in full before anything is appended,
//! so a bad one never leaves half a row behind.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::domain::ColumnType;

/// The columns every ingested row gets besides its declared ones.
pub const PARTITION_COLUMN: &str = "_kafka_partition";
pub const OFFSET_COLUMN: &str = "_kafka_offset";
pub const INGESTED_AT_COLUMN: &str = "_ingested_at";
/// Where unknown fields go under [`UnknownFields::Keep`], as a JSON object (keys sorted).
pub const EXTRA_COLUMN: &str = "_extra";

/// Most of a dead message's payload kept in its dead letter.
pub const DEAD_PAYLOAD_CHARS: usize = 4096;

/// What to do with fields a message has but the schema does not declare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// Keep them, as a JSON object in the `_extra` column.
    #[default]
    Keep,
    /// Drop them.
    Drop,
    /// Send the message to the dead letters.
    DeadLetter,
}

/// How messages become rows.
#[derive(Debug, Clone)]
pub struct RowSpec {
    /// Declared fields, in column order.
    pub columns: Vec<(String, ColumnType)>,
    /// The declared `datetime` field holding the event time (required in every message).
    pub event_time: String,
    pub unknown_fields: UnknownFields,
    /// Larger messages go to the dead letters.
    pub max_message_bytes: usize,
}

impl RowSpec {
    /// Problems with the spec itself.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.columns.iter().find(|(name, _)| *name == self.event_time) {
            None => problems.push(format!(
                "`event_time` names `{}`, which is not a declared column",
                self.event_time
            )),
            Some((_, ColumnType::Datetime)) => {}
            Some((_, other)) => problems.push(format!(
                "the event time column `{}` must be of type datetime, not {}",
                self.event_time,
                other.name()
            )),
        }
        for (name, _) in &self.columns {
            if name.starts_with('_') {
                problems.push(format!(
                    "column `{name}`: names starting with `_` are kept for lakeward's own columns"
                ));
            }
        }
        problems
    }

    /// The Arrow schema of the rows: declared columns, `_extra` if kept, then the record's
    /// partition, offset and ingest time.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(name, ty)| Field::new(name, arrow_type(*ty), *name != self.event_time))
            .collect();
        if self.unknown_fields == UnknownFields::Keep {
            fields.push(Field::new(EXTRA_COLUMN, DataType::Utf8, true));
        }
        fields.push(Field::new(PARTITION_COLUMN, DataType::Int32, false));
        fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
        fields.push(Field::new(INGESTED_AT_COLUMN, utc_micros(), false));
        Arc::new(Schema::new(fields))
    }
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::String => DataType::Utf8,
        ColumnType::Integer => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Datetime => utc_micros(),
    }
}

/// A message that could not become a row, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub reason: String,
    /// The payload as text (invalid UTF-8 replaced), cut to [`DEAD_PAYLOAD_CHARS`].
    pub payload: String,
}

/// The schema of a dead-letter table.
pub fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("key", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, true),
        Field::new(INGESTED_AT_COLUMN, utc_micros(), false),
    ]))
}

/// Dead letters of `topic` as one record batch, stamped with `ingested_at` (µs since epoch).
pub fn dead_letter_batch(
    topic: &str,
    letters: &[DeadLetter],
    ingested_at: i64,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = letters.len();
    let mut topics = StringBuilder::new();
    let mut keys = StringBuilder::new();
    let mut reasons = StringBuilder::new();
    let mut payloads = StringBuilder::new();
    for letter in letters {
        topics.append_value(topic);
        keys.append_option(letter.key.as_deref());
        reasons.append_value(&letter.reason);
        payloads.append_value(&letter.payload);
    }
    let partitions: Int32Array = letters.iter().map(|l| l.partition).collect();
    let offsets: Int64Array = letters.iter().map(|l| l.offset).collect();
    let mut times = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("+00:00");
    times.append_slice(&vec![ingested_at; n]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(topics.finish()),
        Arc::new(partitions),
        Arc::new(offsets),
        Arc::new(keys.finish()),
        Arc::new(reasons.finish()),
        Arc::new(payloads.finish()),
        Arc::new(times.finish()),
    ];
    RecordBatch::try_new(dead_letter_schema(), columns)
}

/// One checked value of a row; text borrowed from the message where it needs no unescaping.
#[derive(Debug)]
enum Cell<'a> {
    Null,
    Text(Cow<'a, str>),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Date(i32),
    Micros(i64),
}

enum Column {
    Text(StringBuilder),
    Integer(Int64Builder),
    Float(Float64Builder),
    Boolean(BooleanBuilder),
    Date(Date32Builder),
    Micros(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(ty: ColumnType) -> Column {
        match ty {
            ColumnType::String => Column::Text(StringBuilder::new()),
            ColumnType::Integer => Column::Integer(Int64Builder::new()),
            ColumnType::Float => Column::Float(Float64Builder::new()),
            ColumnType::Boolean => Column::Boolean(BooleanBuilder::new()),
            ColumnType::Date => Column::Date(Date32Builder::new()),
            ColumnType::Datetime => {
                Column::Micros(TimestampMicrosecondBuilder::new().with_timezone("+00:00"))
            }
        }
    }

    fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Column::Text(b), Cell::Text(v)) => b.append_value(v),
            (Column::Integer(b), Cell::Integer(v)) => b.append_value(v),
            (Column::Float(b), Cell::Float(v)) => b.append_value(v),
            (Column::Boolean(b), Cell::Boolean(v)) => b.append_value(v),
            (Column::Date(b), Cell::Date(v)) => b.append_value(v),
            (Column::Micros(b), Cell::Micros(v)) => b.append_value(v),
            (Column::Text(b), _) => b.append_null(),
            (Column::Integer(b), _) => b.append_null(),
            (Column::Float(b), _) => b.append_null(),
            (Column::Boolean(b), _) => b.append_null(),
            (Column::Date(b), _) => b.append_null(),
            (Column::Micros(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Text(b) => Arc::new(b.finish()),
            Column::Integer(b) => Arc::new(b.finish()),
            Column::Float(b) => Arc::new(b.finish()),
            Column::Boolean(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Micros(b) => Arc::new(b.finish()),
        }
    }
}

/// The value of `value` as a column of type `ty`, or what is wrong with it.
fn cell(ty: ColumnType, value: Value) -> Result<Cell<'static>, String> {
    let wrong = |value: &Value| {
        let shown: String = value.to_string().chars().take(60).collect();
        Err(format!("expected {}, got {shown}", ty.name()))
    };
    Ok(match (ty, value) {
        (_, Value::Null) => Cell::Null,
        (ColumnType::String, Value::String(s)) => Cell::Text(Cow::Owned(s)),
        (ColumnType::Integer, Value::Number(n)) if n.is_i64() => {
            Cell::Integer(n.as_i64().unwrap_or(0))
        }
        (ColumnType::Float, Value::Number(n)) => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
        (ColumnType::Boolean, Value::Bool(b)) => Cell::Boolean(b),
        (ColumnType::Date, Value::String(s)) => match NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
            Ok(date) => Cell::Date((date - NaiveDate::default()).num_days() as i32),
            Err(_) => return Err(format!("expected a date (YYYY-MM-DD), got \"{s}\"")),
        },
        (ColumnType::Datetime, Value::String(s)) => match DateTime::parse_from_rfc3339(&s) {
            Ok(time) => Cell::Micros(time.timestamp_micros()),
            Err(_) => return Err(format!("expected an RFC 3339 date-time, got \"{s}\"")),
        },
        (_, other) => return wrong(&other),
    })
}

/// A JSON object's fields as they appear in the message, values unparsed. Fails on keys
/// with escapes (the full parse handles those).
struct RawObject<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some(entry) = map.next_entry::<&'de str, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(RawObject(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// The value of raw JSON `text` as a column of type `ty`; `None` when it is not plainly one.
fn raw_cell(ty: ColumnType, text: &str) -> Option<Cell<'_>> {
    if text == "null" {
        return Some(Cell::Null);
    }
    Some(match ty {
        ColumnType::String => Cell::Text(raw_string(text)?),
        ColumnType::Integer => Cell::Integer(text.parse().ok()?),
        ColumnType::Float if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
            Cell::Float(text.parse().ok()?)
        }
        ColumnType::Boolean if text == "true" || text == "false" => Cell::Boolean(text == "true"),
        ColumnType::Date => {
            let date = NaiveDate::parse_from_str(&raw_string(text)?, "%Y-%m-%d").ok()?;
            Cell::Date((date - NaiveDate::default()).num_days() as i32)
        }
        ColumnType::Datetime => {
            let text = raw_string(text)?;
            match rfc3339_micros(&text) {
                Some(micros) => Cell::Micros(micros),
                None => Cell::Micros(DateTime::parse_from_rfc3339(&text).ok()?.timestamp_micros()),
            }
        }
        _ => return None,
    })
}

/// The string a raw JSON value holds, borrowed when it has no escapes; `None` when the value
/// is not a string. (The value was validated when the message was read.)
fn raw_string(text: &str) -> Option<Cow<'_, str>> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// Microseconds since the epoch of an RFC 3339 time in its usual spelling,
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `None` for any other spelling (chrono then
/// decides) or an impossible date. Sub-microsecond digits are cut, as chrono's are.
fn rfc3339_micros(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if b.len() < 20 || separators.iter().any(|&(at, c)| b[at] != c) {
        return None;
    }
    let digits = |from: usize, to: usize| -> Option<i64> {
        b[from..to]
            .iter()
            .try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
    let (hour, minute, second) = (digits(11, 13)?, digits(14, 16)?, digits(17, 19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None; // a leap second among them: chrono's rules
    }
    let mut at = 19;
    let mut micros = 0i64;
    if b[at] == b'.' {
        let end = at + 1 + b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        let fraction = &b[at + 1..end];
        if fraction.is_empty() || fraction.len() > 9 {
            return None;
        }
        for i in 0..6 {
            micros = micros * 10 + fraction.get(i).map_or(0, |c| i64::from(c - b'0'));
        }
        at = end;
    }
    let offset_seconds = match &b[at..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (digits(at + 1, at + 3)?, digits(at + 4, at + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_seconds;
    Some(seconds * 1_000_000 + micros)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Builds record batches of rows from messages (see the module comment).
pub struct Decoder {
    spec: Arc<RowSpec>,
    schema: SchemaRef,
    columns: Vec<Column>,
    extra: Option<StringBuilder>,
    partitions: Int32Builder,
    offsets: Int64Builder,
    ingested_at: TimestampMicrosecondBuilder,
    rows: usize,
}

impl Decoder {
    pub fn new(spec: Arc<RowSpec>) -> Decoder {
        Decoder {
            schema: spec.schema(),
            columns: spec.columns.iter().map(|(_, ty)| Column::new(*ty)).collect(),
            extra: (spec.unknown_fields == UnknownFields::Keep).then(StringBuilder::new),
            partitions: Int32Builder::new(),
            offsets: Int64Builder::new(),
            ingested_at: TimestampMicrosecondBuilder::new().with_timezone("+00:00"),
            rows: 0,
            spec,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows appended since the last [`Decoder::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends the message at `partition`/`offset` as a row, or returns why it cannot be one.
    pub fn push(
        &mut self,
        payload: Option<&[u8]>,
        partition: i32,
        offset: i64,
        ingested_at: i64,
    ) -> Result<(), String> {
        let payload = payload.unwrap_or_default();
        if payload.len() > self.spec.max_message_bytes {
            return Err(format!(
                "message of {} bytes is larger than max_message_bytes ({})",
                payload.len(),
                self.spec.max_message_bytes
            ));
        }
        // Most messages are well-formed: read them without copying; any doubt falls back to
        // the full parse, which also says what is wrong.
        let (cells, extra) = match self.fast_row(payload) {
            Some(row) => row,
            None => self.checked_row(payload)?,
        };
        for (column, cell) in self.columns.iter_mut().zip(cells) {
            column.append(cell);
        }
        if let Some(builder) = &mut self.extra {
            builder.append_option(extra);
        }
        self.partitions.append_value(partition);
        self.offsets.append_value(offset);
        self.ingested_at.append_value(ingested_at);
        self.rows += 1;
        Ok(())
    }

    /// The cells and `_extra` of a message, checked in full (parsed into JSON values), or
    /// why it cannot be a row.
    fn checked_row(&self, payload: &[u8]) -> Result<(Vec<Cell<'static>>, Option<String>), String> {
        let mut object: Map<String, Value> = match serde_json::from_slice(payload) {
            Ok(Value::Object(object)) => object,
            Ok(other) => {
                let kind = match other {
                    Value::Array(_) => "an array",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                return Err(format!("expected a JSON object, got {kind}"));
            }
            Err(e) if payload.is_empty() => return Err(format!("empty message ({e})")),
            Err(e) => return Err(format!("invalid JSON: {e}")),
        };
        let mut cells = Vec::with_capacity(self.spec.columns.len());
        for (name, ty) in &self.spec.columns {
            let value = object.remove(name).unwrap_or(Value::Null);
            let cell = cell(*ty, value).map_err(|why| format!("field `{name}`: {why}"))?;
            if matches!(cell, Cell::Null) && *name == self.spec.event_time {
                return Err(format!("no event time (field `{name}` is missing or null)"));
            }
            cells.push(cell);
        }
        let extra = match self.spec.unknown_fields {
            _ if object.is_empty() => None,
            UnknownFields::Drop => None,
            UnknownFields::Keep => {
                // Keys in order, whatever the map type: the same text as the fast read gives.
                let sorted: std::collections::BTreeMap<String, Value> =
                    object.into_iter().collect();
                serde_json::to_string(&sorted).ok()
            }
            UnknownFields::DeadLetter => {
                let names: Vec<&str> = object.keys().map(String::as_str).collect();
                return Err(format!("unknown fields: {}", names.join(", ")));
            }
        };
        Ok((cells, extra))
    }

    /// The cells and `_extra` of a message read without copying it into JSON values; `None`
    /// when the message is not plainly a good row (then [`Decoder::checked_row`] decides).
    fn fast_row<'a>(&self, payload: &'a [u8]) -> Option<(Vec<Cell<'a>>, Option<String>)> {
        let RawObject(fields) = serde_json::from_slice(payload).ok()?;
        let columns = &self.spec.columns;
        let mut found: Vec<Option<&RawValue>> = vec![None; columns.len()];
        let mut unknown: Vec<(&str, &RawValue)> = Vec::new();
        for (key, value) in fields {
            match columns.iter().position(|(name, _)| name == key) {
                // A duplicate key: let the full parse decide.
                Some(i) if found[i].replace(value).is_some() => return None,
                Some(_) => {}
                None => unknown.push((key, value)),
            }
        }
        let mut cells = Vec::with_capacity(columns.len());
        for ((name, ty), value) in columns.iter().zip(found) {
            let cell = match value {
                None => Cell::Null,
                Some(value) => raw_cell(*ty, value.get())?,
            };
            if matches!(cell, Cell::Null) && *name == self.spec.event_time {
                return None;
            }
            cells.push(cell);
        }
        unknown.sort_by_key(|(key, _)| *key);
        if unknown.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return None;
        }
        let extra = match self.spec.unknown_fields {
            _ if unknown.is_empty() => None,
            UnknownFields::Drop => None,
            UnknownFields::DeadLetter => return None,
            UnknownFields::Keep => {
                let mut text = String::from("{");
                for (i, (key, value)) in unknown.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    text.push_str(&serde_json::to_string(key).ok()?);
                    text.push(':');
                    text.push_str(value.get());
                }
                text.push('}');
                Some(text)
            }
        };
        Some((cells, extra))
    }

    /// The rows appended so far as one batch; the decoder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut columns: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        if let Some(builder) = &mut self.extra {
            columns.push(Arc::new(builder.finish()));
        }
        columns.push(Arc::new(self.partitions.finish()));
        columns.push(Arc::new(self.offsets.finish()));
        columns.push(Arc::new(self.ingested_at.finish()));
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

/// The dead letter of a message that could not become a row.
pub fn dead_letter(
    payload: Option<&[u8]>,
    key: Option<&[u8]>,
    partition: i32,
    offset: i64,
    reason: String,
) -> DeadLetter {
    let text = String::from_utf8_lossy(payload.unwrap_or_default());
    DeadLetter {
        partition,
        offset,
        key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
        reason,
        payload: text.chars().take(DEAD_PAYLOAD_CHARS).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Array;

    fn spec(unknown_fields: UnknownFields) -> Arc<RowSpec> {
        Arc::new(RowSpec {
            columns: vec![
                ("event_id".into(), ColumnType::String),
                ("timestamp".into(), ColumnType::Datetime),
                ("status_code".into(), ColumnType::Integer),
                ("response_time_ms".into(), ColumnType::Float),
            ],
            event_time: "timestamp".into(),
            unknown_fields,
            max_message_bytes: 200,
        })
    }

    fn push(decoder: &mut Decoder, text: &str) -> Result<(), String> {
        decoder.push(Some(text.as_bytes()), 0, 7, 0)
    }

    #[test]
    fn good_messages_become_rows_and_bad_ones_say_why() {
        let mut decoder = Decoder::new(spec(UnknownFields::Keep));
        let t = "\"timestamp\":\"2026-11-26T10:00:00Z\"";
        push(&mut decoder, &format!("{{\"event_id\":\"a\",{t},\"status_code\":200,\"x\":1}}"))
            .unwrap();
        push(&mut decoder, &format!("{{\"event_id\":\"b\",{t},\"response_time_ms\":3}}")).unwrap();
        let cases = [
            ("{not json", "invalid JSON"),
            ("[1,2]", "expected a JSON object, got an array"),
            ("", "empty message"),
            ("{\"event_id\":\"c\"}", "no event time (field `timestamp` is missing or null)"),
            (
                &format!("{{{t},\"status_code\":\"200\"}}"),
                "field `status_code`: expected integer, got \"200\"",
            ),
            (&format!("{{{t},\"status_code\":2.5}}"), "field `status_code`: expected integer"),
            ("{\"timestamp\":\"yesterday\"}", "field `timestamp`: expected an RFC 3339 date-time"),
            (
                &format!("{{{t},\"event_id\":\"{}\"}}", "x".repeat(300)),
                "larger than max_message_bytes (200)",
            ),
        ];
        for (message, why) in cases {
            let reason = push(&mut decoder, message).unwrap_err();
            assert!(reason.contains(why), "{message}: {reason}");
        }
        assert_eq!(decoder.rows(), 2);
        let batch = decoder.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let extra = batch.column_by_name(EXTRA_COLUMN).unwrap().as_string::<i32>();
        assert_eq!(extra.value(0), "{\"x\":1}");
        assert!(extra.is_null(1));
        let offsets = batch.column_by_name(OFFSET_COLUMN).unwrap().as_primitive::<Int64Type>();
        assert_eq!(offsets.value(1), 7);
        assert_eq!(decoder.finish().unwrap().num_rows(), 0);
    }

    #[test]
    fn the_fast_read_and_the_full_parse_agree() {
        let decoder = Decoder::new(spec(UnknownFields::Keep));
        let t = "\"timestamp\":\"2026-11-26T10:00:00.250+01:00\"";
        let messages = [
            format!("{{\"event_id\":\"a\",{t},\"status_code\":200,\"response_time_ms\":12.5}}"),
            format!("{{\"event_id\":\"caf\\u00e9\",{t},\"status_code\":null,\"x\":[1,2]}}"),
            format!("{{{t},\"response_time_ms\":7,\"note\":\"ok\",\"n\":{{\"a\":1}}}}"),
        ];
        for message in &messages {
            let fast = decoder.fast_row(message.as_bytes()).expect(message);
            let full = decoder.checked_row(message.as_bytes()).unwrap();
            assert_eq!(format!("{:?}", fast.0), format!("{:?}", full.0), "{message}");
            assert_eq!(fast.1, full.1, "{message}");
        }
        // What the fast read leaves to the full parse.
        for doubtful in [
            format!("{{{t},\"status_code\":2.0}}"),
            format!("{{{t},\"status_code\":\"200\"}}"),
            format!("{{{t},{t}}}"),
            "{\"event_id\":\"no time\"}".to_string(),
            "[1]".to_string(),
        ] {
            assert!(decoder.fast_row(doubtful.as_bytes()).is_none(), "{doubtful}");
        }
    }

    #[test]
    fn the_usual_rfc3339_spelling_is_read_as_chrono_reads_it() {
        let mut texts = vec![
            "2026-11-26T10:00:00Z".to_string(),
            "2026-11-26T10:00:00.250+01:00".to_string(),
            "1969-12-31T23:59:59.999999999Z".to_string(),
            "0001-01-01T00:00:00-23:59".to_string(),
            "2024-02-29T12:30:45.1-05:30".to_string(),
            "2400-02-29T00:00:00.123456789+00:00".to_string(),
        ];
        // A spread of dates, fractions and offsets.
        for i in 0..5_000i64 {
            let (year, month, day) = (1900 + i * 37 % 600, 1 + i % 12, 1 + i * 7 % 31);
            let fraction = [".5", "", ".123", ".000001", ".98765432"][(i % 5) as usize];
            let offset = ["Z", "+05:45", "-11:00", "+00:00"][(i % 4) as usize];
            let (h, m, s) = (i % 24, i * 13 % 60, i * 29 % 60);
            texts.push(format!(
                "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{fraction}{offset}"
            ));
        }
        let mut read = 0;
        for text in &texts {
            let chrono = DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_micros());
            match rfc3339_micros(text) {
                Some(micros) => {
                    assert_eq!(Ok(micros), chrono, "{text}");
                    read += 1;
                }
                // Left to chrono: only days a month does not have.
                None => assert!(chrono.is_err(), "{text} was left to chrono"),
            }
        }
        assert!(read > 4_000, "{read}");
        // Other spellings are left to chrono, which reads them.
        for other in ["2026-11-26t10:00:00z", "2026-11-26 10:00:00Z", "2026-06-30T23:59:60Z"] {
            assert_eq!(rfc3339_micros(other), None, "{other}");
            assert!(DateTime::parse_from_rfc3339(other).is_ok(), "{other}");
        }
        for bad in ["2026-11-26T10:00:00", "2026-13-01T00:00:00Z", "2026-11-26T10:00:00.Z"] {
            assert_eq!(rfc3339_micros(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_fields_follow_their_policy() {
        let message = "{\"timestamp\":\"2026-11-26T10:00:00+01:00\",\"extra\":true}";
        let mut dropping = Decoder::new(spec(UnknownFields::Drop));
        push(&mut dropping, message).unwrap();
        assert!(dropping.finish().unwrap().column_by_name(EXTRA_COLUMN).is_none());
        let mut strict = Decoder::new(spec(UnknownFields::DeadLetter));
        assert_eq!(push(&mut strict, message).unwrap_err(), "unknown fields: extra");
        let letter = dead_letter(Some(message.as_bytes()), Some(b"k"), 2, 9, "why".into());
        let batch = dead_letter_batch("t", &[letter], 1).unwrap();
        assert_eq!(batch.num_rows(), 1);
    }

    #[test]
    fn a_spec_must_name_a_datetime_event_time() {
        let mut bad = spec(UnknownFields::Keep).as_ref().clone();
        bad.event_time = "status_code".into();
        bad.columns.push(("_offset".into(), ColumnType::Integer));
        let problems = bad.problems();
        assert!(problems[0].contains("must be of type datetime, not integer"), "{problems:?}");
        assert!(problems[1].contains("`_offset`"), "{problems:?}");
    }
}
