//! Web server access logs (seed 004): endpoints of unequal popularity, each with its own
//! latency and size, a realistic status mix, returning clients, and four kinds of anomaly.

use super::{address, Draw, Fields};

pub const ANOMALIES: &[&str] = &["traffic_spike", "error_burst", "slow_endpoint", "abusive_ip"];

/// An endpoint: method, path, share of traffic, median latency (ms), median response size.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    weight: f64,
    latency_ms: f64,
    bytes: f64,
}

const fn endpoint(
    method: &'static str,
    path: &'static str,
    weight: f64,
    latency_ms: f64,
    bytes: f64,
) -> Endpoint {
    Endpoint { method, path, weight, latency_ms, bytes }
}

const ENDPOINTS: &[Endpoint] = &[
    endpoint("GET", "/", 24.0, 35.0, 14_000.0),
    endpoint("GET", "/products", 18.0, 60.0, 26_000.0),
    endpoint("GET", "/products/item", 16.0, 40.0, 9_000.0),
    endpoint("GET", "/search", 9.0, 120.0, 16_000.0),
    endpoint("GET", "/static/app.js", 12.0, 8.0, 180_000.0),
    endpoint("GET", "/api/recommendations", 6.0, 180.0, 4_000.0),
    endpoint("POST", "/cart", 6.0, 70.0, 900.0),
    endpoint("POST", "/login", 4.0, 150.0, 600.0),
    endpoint("GET", "/account", 3.0, 90.0, 7_000.0),
    endpoint("POST", "/checkout", 2.0, 300.0, 1_200.0),
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "curl/8.11.0",
    "python-requests/2.32.3",
];

/// Distinct clients; a few return often, most rarely.
const CLIENTS: f64 = 5_000.0;

/// A normal response's status: mostly 200, some redirects and not-modified, a few errors.
fn status(draw: &mut Draw, endpoint: &Endpoint) -> u32 {
    let roll = draw.rng.unit();
    match (endpoint.path, roll) {
        ("/static/app.js", r) if r < 0.35 => 304,
        ("/login", r) if r < 0.08 => 401,
        (_, r) if r < 0.012 => 404,
        (_, r) if r < 0.016 => 500,
        (_, r) if r < 0.02 => 302,
        (_, r) if r < 0.023 => 400,
        _ => 200,
    }
}

/// A web-log event; may shorten `gap` (a traffic spike sends events much closer together).
pub(super) fn event(mut draw: Draw, gap: &mut f64) -> (String, Fields) {
    let weights: Vec<f64> = ENDPOINTS.iter().map(|e| e.weight).collect();
    let mut endpoint = &ENDPOINTS[draw.rng.weighted(&weights)];
    let mut client = (CLIENTS * draw.rng.unit().powf(2.0)) as u64;
    let kind = draw.episode.map(|e| (ANOMALIES[e.kind], e.subject));
    if let Some((_, subject)) = kind {
        // The endpoint (or client) the episode is about.
        match kind {
            Some(("abusive_ip", _)) => {
                endpoint = &ENDPOINTS[7];
                client = 900_000 + subject % 1_000;
            }
            _ => endpoint = &ENDPOINTS[subject as usize % ENDPOINTS.len()],
        }
    }
    let mut latency = draw.rng.log_normal(endpoint.latency_ms, 0.5);
    let mut status = status(&mut draw, endpoint);
    let mut bytes = draw.rng.log_normal(endpoint.bytes, 0.3) as u64;
    match kind.map(|(k, _)| k) {
        Some("traffic_spike") => {
            *gap /= 12.0;
            client = 100_000 + draw.rng.below(50_000);
            latency *= 2.5;
        }
        Some("error_burst") => {
            status = *draw.rng.pick(&[500, 502, 503, 504]);
            bytes = 300 + draw.rng.below(200);
        }
        Some("slow_endpoint") => latency *= 12.0 + 10.0 * draw.rng.unit(),
        Some("abusive_ip") => {
            *gap /= 4.0;
            status = *draw.rng.pick(&[401, 401, 403, 429]);
            bytes = 200 + draw.rng.below(100);
        }
        _ => {}
    }
    if status >= 400 && bytes > 2_000 {
        bytes = 400 + draw.rng.below(1_000);
    }
    let agent = if kind.is_some_and(|(k, _)| k == "abusive_ip") {
        "python-requests/2.32.3"
    } else {
        USER_AGENTS[(client % USER_AGENTS.len() as u64) as usize]
    };
    let ip = address(client);
    let id = format!("{}-{}", draw.id_prefix, draw.number);
    let fields = Fields::new(&id)
        .text("ip", &ip)
        .text("method", endpoint.method)
        .text("endpoint", endpoint.path)
        .number("status_code", status)
        .number("response_time_ms", format!("{:.1}", latency))
        .number("bytes", bytes)
        .text("user_agent", agent);
    (ip, fields)
}
