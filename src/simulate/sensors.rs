//! IoT sensor readings (seed 002): sensors on a few sites report temperature, humidity and
//! pressure that drift slowly around their site's climate, with the occasional missing value;
//! anomalies are an overheating sensor and a stuck one that repeats a value.

use super::{Draw, Fields};

pub const ANOMALIES: &[&str] = &["overheat", "stuck_sensor"];

const SITES: &[(&str, f64, f64)] =
    &[("paris", 14.0, 70.0), ("lyon", 15.0, 65.0), ("lille", 11.0, 80.0), ("nice", 19.0, 60.0)];
const SENSORS: u64 = 200;

pub(super) fn event(draw: Draw) -> (String, Fields) {
    let rng = draw.rng;
    let mut sensor = rng.below(SENSORS);
    let episode = draw.episode.map(|e| (ANOMALIES[e.kind], e.subject));
    if let Some((_, subject)) = episode {
        sensor = subject % SENSORS;
    }
    let (site, mean_temperature, mean_humidity) = SITES[(sensor % SITES.len() as u64) as usize];
    let mut temperature = mean_temperature + (sensor % 7) as f64 * 0.3 + rng.normal() * 1.5;
    let humidity = (mean_humidity + rng.normal() * 6.0).clamp(5.0, 100.0);
    let pressure = 1013.0 + rng.normal() * 4.0;
    match episode {
        Some(("overheat", _)) => temperature += 35.0 + rng.unit() * 20.0,
        Some((_, subject)) => temperature = 20.0 + (subject % 100) as f64 / 10.0,
        None => {}
    }
    let sensor_id = format!("sensor-{sensor:03}");
    let mut fields = Fields::new(&format!("{}-{}", draw.id_prefix, draw.number))
        .text("sensor_id", &sensor_id)
        .text("site", site)
        .number("temperature", format!("{temperature:.2}"));
    // One reading in a hundred lost its humidity (the silver step cleans these).
    fields = if rng.chance(0.01) {
        fields.number("humidity", "null")
    } else {
        fields.number("humidity", format!("{humidity:.1}"))
    };
    let fields = fields
        .number("pressure", format!("{pressure:.1}"))
        .number("battery", 100 - (sensor * 13 % 90));
    (sensor_id, fields)
}
