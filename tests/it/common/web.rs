//! Calling the web router in-process (tower `oneshot`): answers captured whole, and API
//! requests carrying a bearer token.

use axum::body::Body;
use axum::http::header::{AsHeaderName, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

/// A response, its body read.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header's value, empty when absent.
    pub fn header(&self, name: impl AsHeaderName) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn location(&self) -> &str {
        self.header(LOCATION)
    }
}

pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 10 << 20).await.unwrap();
    Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

/// An API request authenticated with `token`, with `body` as JSON.
pub fn api_request(method: Method, path: &str, token: &str, body: Option<Value>) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(AUTHORIZATION, format!("Bearer {token}"));
    if body.is_some() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    request.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).unwrap()
}

/// The web app over `h`'s database, and the API token of a viewer it knows.
pub async fn viewer_router(h: &super::Harness) -> (Router, String) {
    let config = lakeward::config::Config::default();
    let state = lakeward::web::AppState::new(h.store.clone(), h.versions.clone(), &config);
    let role = lakeward::domain::Role::Viewer;
    lakeward::users::create_user(&h.store, "vera", "vera-password-1", role).await.unwrap();
    let token = lakeward::users::create_api_token(&h.store, "vera", "t", None).await.unwrap();
    (lakeward::web::app(state), token)
}

/// `text` percent-encoded as one path segment, as lakeward's links write it.
pub fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
