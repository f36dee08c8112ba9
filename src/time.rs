//! Timestamps as stored in the database: microseconds since the Unix epoch, UTC.
//!
//! Both SQLite and Postgres store them as 64-bit integers, so ordering and arithmetic are the
//! same on both backends and no driver-specific date types leak out of the store.

use chrono::{DateTime, TimeZone, Utc};

/// Microseconds since the Unix epoch.
pub type Micros = i64;

pub fn to_micros(t: DateTime<Utc>) -> Micros {
    t.timestamp_micros()
}

pub fn from_micros(us: Micros) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

pub fn now_micros() -> Micros {
    to_micros(Utc::now())
}

/// The Unix time in milliseconds `age` ago (Iceberg's snapshot and file clock).
pub fn millis_ago(age: std::time::Duration) -> i64 {
    let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    chrono::Utc::now().timestamp_millis().saturating_sub(age)
}

/// Reads an instant written as `2024-01-05` (midnight), `2024-01-05 12:30:00[.123]` (both UTC)
/// or RFC 3339 with a zone (`2024-01-05T12:30:00+01:00`).
pub fn parse_instant(text: &str) -> Result<Micros, String> {
    let text = text.trim();
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(to_micros(
            Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default()),
        ));
    }
    let iso = text.replacen(' ', "T", 1);
    if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(&iso, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(to_micros(Utc.from_utc_datetime(&naive)));
    }
    DateTime::parse_from_rfc3339(&iso)
        .map(|t| to_micros(t.with_timezone(&Utc)))
        .map_err(|_| "use YYYY-MM-DD, YYYY-MM-DD HH:MM:SS (UTC) or RFC 3339".to_string())
}

/// Formats a stored timestamp for humans: `2024-01-01 02:00:00`.
pub fn display(us: Micros) -> String {
    from_micros(us).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Parses a human duration such as `30s`, `10m`, `1h 30m` or `250ms`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration `{text}`: {e} (examples: \"30s\", \"10m\", \"1h\")"))
}

/// Serde adapter for durations written as human strings (`"30s"`).
pub mod serde_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*duration).to_string())
    }
}
