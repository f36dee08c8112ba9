//! Connection logs of an application (seed 000): users log in and out from their usual
//! country and device, a few mistype their password; anomalies are brute-force attempts on one
//! account and credential stuffing (many accounts from one address).

use super::{address, Draw, Fields};

pub const ANOMALIES: &[&str] = &["brute_force", "credential_stuffing"];

const ACTIONS: &[(&str, f64)] = &[
    ("login", 45.0),
    ("logout", 35.0),
    ("failed_login", 4.0),
    ("session_refresh", 14.0),
    ("password_reset", 2.0),
];
const COUNTRIES: &[&str] = &["FR", "DE", "ES", "IT", "GB", "US", "BE", "NL", "PT", "CH"];
const DEVICES: &[&str] = &["desktop", "mobile", "tablet"];
const USERS: f64 = 20_000.0;

pub(super) fn event(draw: Draw) -> (String, Fields) {
    let rng = draw.rng;
    let mut user = (USERS * rng.unit().powf(1.5)) as u64;
    let weights: Vec<f64> = ACTIONS.iter().map(|a| a.1).collect();
    let mut action = ACTIONS[rng.weighted(&weights)].0;
    let mut from = 0x1_0000 + user;
    match draw.episode.map(|e| (ANOMALIES[e.kind], e.subject)) {
        Some(("brute_force", subject)) => {
            user = subject % USERS as u64;
            action = "failed_login";
            from = 0xA0_0000 + rng.below(64);
        }
        Some((_, subject)) => {
            action = if rng.chance(0.9) { "failed_login" } else { "login" };
            from = 0xB0_0000 + subject % 256;
        }
        None => {}
    }
    let user_id = format!("u{user:05}");
    let country = COUNTRIES[(user % COUNTRIES.len() as u64) as usize];
    let device = DEVICES[(user / 7 % DEVICES.len() as u64) as usize];
    let mut fields = Fields::new(&format!("{}-{}", draw.id_prefix, draw.number))
        .text("user_id", &user_id)
        .text("ip", &address(from))
        .text("action", action)
        .text("country", country)
        .text("device", device)
        .number("success", action != "failed_login");
    if action == "logout" {
        fields = fields.number("session_duration_s", (rng.log_normal(900.0, 1.0)) as u64);
    }
    (user_id, fields)
}
