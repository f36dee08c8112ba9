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

/// Formats a stored timestamp for humans: `2024-01-01 02:00:00`.
/// The Unix time in milliseconds `age` ago (Iceberg's snapshot and file clock).
pub fn millis_ago(age: std::time::Duration) -> i64 {
    let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    chrono::Utc::now().timestamp_millis().saturating_sub(age)
}

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
