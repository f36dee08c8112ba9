//! Simulated event streams: realistic web logs, connection logs and sensor readings, the same
//! for the same seed, with injected anomalies (each event says which, so a detector can be
//! scored against the truth) and late, out-of-order events. This is what `kafka_produce`,
//! `simulate` and `lakeward produce` send; it only makes events (and says which fields they
//! have) and knows nothing of Kafka or tables.
//!
//! Event time follows a simulated clock that starts at [`Simulation::start`] and advances by
//! an inter-arrival of `1 / (rate × daily cycle)`: traffic peaks in the afternoon and is
//! lowest at night, averaging `rate` events per second over a day.

mod connection_logs;
mod rng;
mod sensors;
mod web_logs;

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::Deserialize;

pub use rng::Rng;

use crate::domain::ColumnType;

/// What kind of events a simulation makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// HTTP access logs of a shop's web servers (anomalies: `traffic_spike`, `error_burst`,
    /// `slow_endpoint`, `abusive_ip`).
    WebLogs,
    /// Users' logins and logouts (anomalies: `brute_force`, `credential_stuffing`).
    ConnectionLogs,
    /// IoT sensor readings (anomalies: `overheat`, `stuck_sensor`).
    Sensors,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::WebLogs => "web_logs",
            Profile::ConnectionLogs => "connection_logs",
            Profile::Sensors => "sensors",
        }
    }

    /// The profile called `name` (`web_logs`, `connection_logs`, `sensors`), or what names
    /// a source of events may have (`files` included, for the senders that read files).
    pub fn named(name: &str) -> Result<Profile, String> {
        [Profile::WebLogs, Profile::ConnectionLogs, Profile::Sensors]
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "unknown profile `{name}`: expected web_logs, connection_logs, sensors or files"
                )
            })
    }

    /// The fields of this profile's events and their types, as an ingest declares them.
    pub fn fields(self) -> &'static [(&'static str, ColumnType)] {
        use ColumnType::*;
        match self {
            Profile::WebLogs => &[
                ("event_id", String),
                ("timestamp", Datetime),
                ("ip", String),
                ("method", String),
                ("endpoint", String),
                ("status_code", Integer),
                ("response_time_ms", Float),
                ("bytes", Integer),
                ("user_agent", String),
                ("anomaly", String),
            ],
            Profile::ConnectionLogs => &[
                ("event_id", String),
                ("timestamp", Datetime),
                ("user_id", String),
                ("ip", String),
                ("action", String),
                ("country", String),
                ("device", String),
                ("success", Boolean),
                ("session_duration_s", Integer),
                ("anomaly", String),
            ],
            Profile::Sensors => &[
                ("event_id", String),
                ("timestamp", Datetime),
                ("sensor_id", String),
                ("site", String),
                ("temperature", Float),
                ("humidity", Float),
                ("pressure", Float),
                ("battery", Integer),
                ("anomaly", String),
            ],
        }
    }

    /// The kinds of anomaly this profile injects.
    pub fn anomalies(self) -> &'static [&'static str] {
        match self {
            Profile::WebLogs => web_logs::ANOMALIES,
            Profile::ConnectionLogs => connection_logs::ANOMALIES,
            Profile::Sensors => sensors::ANOMALIES,
        }
    }
}

/// How a simulation behaves.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub profile: Profile,
    pub seed: u64,
    /// Mean events per second of event time.
    pub rate: f64,
    /// Event time of the first event.
    pub start: DateTime<Utc>,
    /// Share of event time taken by anomaly episodes: each starts on a whole minute and lasts
    /// one to three minutes, so that a detector over minute windows has a clear truth.
    pub anomaly_rate: f64,
    /// Share of events that arrive late: their event time is up to `max_delay` before the
    /// events sent around them.
    pub late_share: f64,
    pub max_delay: std::time::Duration,
}

/// One simulated event.
#[derive(Debug, Clone)]
pub struct Event {
    /// The message key (the client, user or sensor), so one source stays in one partition.
    pub key: String,
    /// The event as a JSON object.
    pub payload: String,
    pub event_time: DateTime<Utc>,
    /// The clock of the simulation when the event was made (its arrival, for a late event).
    pub sent_at: DateTime<Utc>,
    pub anomaly: Option<&'static str>,
}

/// An anomaly in progress: its kind, when it ends (event time, µs), and the profile's choice
/// for it (an endpoint, an address, a sensor).
#[derive(Debug, Clone, Copy)]
struct Episode {
    kind: usize,
    until: f64,
    subject: u64,
}

const MINUTE_MICROS: f64 = 60e6;

/// Mean length of an episode, in minutes (one to three).
const EPISODE_MINUTES: f64 = 2.0;

/// What a profile's event maker is given.
struct Draw<'a> {
    rng: &'a mut Rng,
    number: u64,
    id_prefix: &'a str,
    episode: Option<Episode>,
}

/// An endless sequence of events (see the module comment).
pub struct Simulator {
    options: Simulation,
    rng: Rng,
    /// Event time of the next event, in microseconds since the epoch.
    clock: f64,
    number: u64,
    episode: Option<Episode>,
    /// The minute (of event time) whose chance of starting an episode was drawn last.
    minute_drawn: i64,
    id_prefix: String,
}

/// Traffic relative to the day's mean at `hour` (UTC): lowest around 4 h, highest around 16 h.
fn daily_cycle(hour: f64) -> f64 {
    1.0 + 0.6 * (std::f64::consts::TAU * (hour - 10.0) / 24.0).sin()
}

impl Simulator {
    pub fn new(options: Simulation) -> Simulator {
        let id_prefix = format!("{}-{:x}", &options.profile.as_str()[..1], options.seed);
        Simulator {
            rng: Rng::new(options.seed),
            clock: options.start.timestamp_micros() as f64,
            number: 0,
            episode: None,
            minute_drawn: i64::MIN,
            id_prefix,
            options,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.clock as i64).unwrap_or_default()
    }

    /// The next event.
    pub fn next_event(&mut self) -> Event {
        let sent_at = self.now();
        let hour = sent_at.hour() as f64 + sent_at.minute() as f64 / 60.0;
        let mut gap = 1e6 / (self.options.rate.max(1e-3) * daily_cycle(hour));
        self.episode = self.episode.filter(|e| self.clock < e.until);
        let minute = (self.clock / MINUTE_MICROS).floor() as i64;
        if minute != self.minute_drawn {
            self.minute_drawn = minute;
            if self.episode.is_none()
                && self.rng.chance(self.options.anomaly_rate / EPISODE_MINUTES)
            {
                let kinds = self.options.profile.anomalies().len() as u64;
                let minutes = 1 + self.rng.below(3);
                self.episode = Some(Episode {
                    kind: self.rng.below(kinds) as usize,
                    until: (minute + minutes as i64) as f64 * MINUTE_MICROS,
                    subject: self.rng.next_u64(),
                });
            }
        }
        let mut event_time = sent_at;
        if self.rng.chance(self.options.late_share) {
            let delay = self.rng.unit() * self.options.max_delay.as_micros() as f64;
            event_time -= chrono::Duration::microseconds(delay as i64);
        }
        let draw = Draw {
            rng: &mut self.rng,
            number: self.number,
            id_prefix: &self.id_prefix,
            episode: self.episode,
        };
        let (key, fields, affected) = match self.options.profile {
            Profile::WebLogs => web_logs::event(draw, &mut gap),
            Profile::ConnectionLogs => {
                let (key, fields) = connection_logs::event(draw);
                (key, fields, true)
            }
            Profile::Sensors => {
                let (key, fields) = sensors::event(draw);
                (key, fields, true)
            }
        };
        let anomaly =
            self.episode.filter(|_| affected).map(|e| self.options.profile.anomalies()[e.kind]);
        let payload = fields.finish(event_time, anomaly);
        self.number += 1;
        self.clock += gap;
        Event { key, payload, event_time, sent_at, anomaly }
    }
}

impl Iterator for Simulator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        Some(self.next_event())
    }
}

/// A JSON object written field by field (names and text values are plain ASCII without
/// quotes or backslashes: the profiles' own words).
struct Fields(String);

impl Fields {
    fn new(event_id: &str) -> Fields {
        let mut json = String::with_capacity(320);
        json.push_str("{\"event_id\":\"");
        json.push_str(event_id);
        json.push('"');
        Fields(json)
    }

    fn text(mut self, name: &str, value: &str) -> Fields {
        let _ = write!(self.0, ",\"{name}\":\"{value}\"");
        self
    }

    fn number(mut self, name: &str, value: impl std::fmt::Display) -> Fields {
        let _ = write!(self.0, ",\"{name}\":{value}");
        self
    }

    fn finish(mut self, event_time: DateTime<Utc>, anomaly: Option<&str>) -> String {
        let time = event_time.to_rfc3339_opts(SecondsFormat::Millis, true);
        let _ = write!(self.0, ",\"timestamp\":\"{time}\"");
        match anomaly {
            Some(kind) => {
                let _ = write!(self.0, ",\"anomaly\":\"{kind}\"}}");
            }
            None => self.0.push_str(",\"anomaly\":null}"),
        }
        self.0
    }
}

/// An IPv4 address made from `n`, in private ranges.
fn address(n: u64) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, (n & 0xff).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simulation(profile: Profile) -> Simulation {
        Simulation {
            profile,
            seed: 42,
            rate: 100.0,
            start: "2026-11-26T00:00:00Z".parse().unwrap(),
            anomaly_rate: 0.05,
            late_share: 0.02,
            max_delay: std::time::Duration::from_secs(30),
        }
    }

    #[test]
    fn every_profile_makes_valid_json_the_same_for_the_same_seed() {
        for profile in [Profile::WebLogs, Profile::ConnectionLogs, Profile::Sensors] {
            // Two hours at about a second apart: episodes start on whole minutes.
            let options = Simulation { rate: 0.7, ..simulation(profile) };
            let a: Vec<Event> = Simulator::new(options.clone()).take(5_000).collect();
            let b: Vec<Event> = Simulator::new(options).take(5_000).collect();
            let mut ids = std::collections::HashSet::new();
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.payload, y.payload);
                let value: serde_json::Value = serde_json::from_str(&x.payload)
                    .unwrap_or_else(|e| panic!("{}: {e}", x.payload));
                assert!(ids.insert(value["event_id"].as_str().unwrap().to_string()));
                let time: DateTime<Utc> = value["timestamp"].as_str().unwrap().parse().unwrap();
                assert_eq!(time, x.event_time.trunc_subsecs(3));
                assert_eq!(value["anomaly"].as_str(), x.anomaly, "{}", x.payload);
            }
            let anomalous = a.iter().filter(|e| e.anomaly.is_some()).count();
            assert!((50..900).contains(&anomalous), "{profile:?}: {anomalous} anomalous of 5000");
            let late = a.iter().filter(|e| e.event_time < e.sent_at).count();
            assert!((40..200).contains(&late), "{profile:?}: {late} late of 5000");
        }
    }

    #[test]
    fn events_have_exactly_the_fields_their_profile_declares() {
        for profile in [Profile::WebLogs, Profile::ConnectionLogs, Profile::Sensors] {
            let declared: std::collections::BTreeSet<&str> =
                profile.fields().iter().map(|(name, _)| *name).collect();
            for event in Simulator::new(simulation(profile)).take(2_000) {
                let value: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
                for key in value.as_object().unwrap().keys() {
                    assert!(declared.contains(key.as_str()), "{profile:?}: `{key}` not declared");
                }
            }
        }
    }

    #[test]
    fn web_logs_have_the_fields_and_the_mix_of_real_traffic() {
        let events: Vec<serde_json::Value> = Simulator::new(simulation(Profile::WebLogs))
            .take(20_000)
            .filter(|e| e.anomaly.is_none())
            .map(|e| serde_json::from_str(&e.payload).unwrap())
            .collect();
        for field in ["ip", "method", "endpoint", "user_agent"] {
            assert!(events.iter().all(|e| e[field].is_string()), "{field}");
        }
        assert!(events.iter().all(|e| e["status_code"].is_u64() && e["bytes"].is_u64()));
        assert!(events.iter().all(|e| e["response_time_ms"].is_number()));
        let share = |f: &dyn Fn(&serde_json::Value) -> bool| {
            events.iter().filter(|e| f(e)).count() as f64 / events.len() as f64
        };
        let ok = share(&|e| e["status_code"].as_u64().unwrap() < 400);
        assert!((0.9..0.99).contains(&ok), "share of successful requests {ok}");
        let home = share(&|e| e["endpoint"] == "/");
        let checkout = share(&|e| e["endpoint"] == "/checkout");
        assert!(home > 3.0 * checkout, "popularity: / {home}, /checkout {checkout}");
    }

    #[test]
    fn the_clock_follows_the_daily_cycle() {
        let mut options = simulation(Profile::Sensors);
        (options.late_share, options.rate) = (0.0, 1.0);
        let events: Vec<Event> = Simulator::new(options).take(86_400).collect();
        // Events per hour of the day: the afternoon is busier than the night.
        let mut per_hour = [0u32; 24];
        for e in &events {
            per_hour[e.event_time.hour() as usize] += 1;
        }
        assert!(per_hour[16] > 2 * per_hour[4], "{per_hour:?}");
    }

    use chrono::SubsecRound;
}
