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

/// A web-log event, and whether the anomaly episode in progress shaped it (its label); may
/// shorten `gap`. An episode adds to normal traffic rather than replacing it: a spike sends
/// three times the usual traffic to one endpoint, an abusive client a tenth more across the
/// site from one address, and an error burst or a slow endpoint changes the requests to its
/// endpoint only.
pub(super) fn event(mut draw: Draw, gap: &mut f64) -> (String, Fields, bool) {
    let weights: Vec<f64> = ENDPOINTS.iter().map(|e| e.weight).collect();
    let mut endpoint = &ENDPOINTS[draw.rng.weighted(&weights)];
    let mut client = (CLIENTS * draw.rng.unit().powf(2.0)) as u64;
    let mut latency = draw.rng.log_normal(endpoint.latency_ms, 0.5);
    let mut status = status(&mut draw, endpoint);
    let mut bytes = draw.rng.log_normal(endpoint.bytes, 0.3) as u64;
    let episode = draw.episode.map(|e| (ANOMALIES[e.kind], e.subject));
    let target = episode.map(|(_, subject)| &ENDPOINTS[subject as usize % ENDPOINTS.len()]);
    // Spikes and abusive clients add events: every gap of the episode shrinks so that
    // normal traffic keeps its rate beside the added events.
    match episode.map(|(kind, _)| kind) {
        Some("traffic_spike") => *gap /= 4.0,
        Some("abusive_ip") => *gap *= 0.9,
        _ => {}
    }
    let affected = match episode.map(|(kind, _)| kind) {
        Some("traffic_spike") if draw.rng.chance(0.75) => {
            endpoint = target.unwrap_or(endpoint);
            client = 100_000 + draw.rng.below(50_000);
            latency = draw.rng.log_normal(endpoint.latency_ms, 0.5);
            status = 200;
            true
        }
        Some("error_burst")
            if std::ptr::eq(endpoint, target.unwrap_or(endpoint)) && draw.rng.chance(0.7) =>
        {
            status = *draw.rng.pick(&[500, 502, 503, 504]);
            bytes = 300 + draw.rng.below(200);
            true
        }
        Some("slow_endpoint") if std::ptr::eq(endpoint, target.unwrap_or(endpoint)) => {
            latency *= 12.0 + 10.0 * draw.rng.unit();
            true
        }
        Some("abusive_ip") if draw.rng.chance(0.1) => {
            // A scraper: one address, every page, refused or throttled.
            client = 900_000 + episode.map_or(0, |(_, subject)| subject % 1_000);
            status = *draw.rng.pick(&[401, 403, 429, 429]);
            bytes = 200 + draw.rng.below(100);
            true
        }
        _ => false,
    };
    if status >= 400 && bytes > 2_000 {
        bytes = 400 + draw.rng.below(1_000);
    }
    let agent = if affected && client >= 900_000 {
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
    (ip, fields, affected)
}
