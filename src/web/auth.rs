//! Who is asking: session cookies, bearer API tokens, the login and logout pages, and the rules
//! every request passes through (login required, admins only for actions, CSRF tokens on every
//! cookie-authenticated POST, same-site `Origin` on every state change, known `Host` names
//! when authentication is off), plus the security headers of every response. Logins are
//! throttled by `throttle`.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, RETRY_AFTER,
    SET_COOKIE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::catalog::CatalogError;
use super::error::{ApiError, PageError, WebError};
use super::identity::{Identity, Via};
use super::throttle::Refusal;
use super::views::{encode_component, LoginPage};
use super::AppState;
use crate::domain::Role;
use crate::store::users;
use crate::store::SessionRow;
use crate::time::now_micros;
use crate::users::{digest, hash_password, new_secret, verify_password};

pub const SESSION_COOKIE: &str = "lakeward_session";
/// Double-submit cookie guarding the login form, which has no session yet.
const LOGIN_COOKIE: &str = "lakeward_login";
/// Form field (and `X-CSRF-Token` header) carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";
const CSRF_HEADER: &str = "x-csrf-token";
/// Largest form body the CSRF check reads.
const MAX_FORM_BYTES: usize = 1 << 20;

/// The value of cookie `name` in `headers`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn identify(state: &AppState, headers: &HeaderMap) -> Result<Option<Identity>, WebError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        let user =
            users::user_of_api_token(state.store.read(), &digest(token.trim()), now_micros())
                .await?;
        return Ok(user.map(|user| Identity {
            username: user.username,
            role: user.role,
            csrf_token: String::new(),
            via: Via::Token,
        }));
    }
    if let Some(secret) = cookie(headers, SESSION_COOKIE) {
        if let Some(session) =
            users::get_session(state.store.read(), &digest(&secret), now_micros()).await?
        {
            return Ok(Some(Identity {
                username: session.username,
                role: session.role,
                csrf_token: session.csrf_token,
                via: Via::Session,
            }));
        }
    }
    if !state.auth {
        return Ok(Some(Identity {
            username: "anonymous".into(),
            role: Role::Admin,
            csrf_token: state.open_csrf_token.to_string(),
            via: Via::Open,
        }));
    }
    Ok(None)
}

/// Paths answered in JSON rather than HTML.
fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics" || is_catalog(path)
}

/// The Iceberg REST catalog, called by engines rather than browsers.
fn is_catalog(path: &str) -> bool {
    path.starts_with("/iceberg/")
}

fn reject(path: &str, error: WebError) -> Response {
    if is_catalog(path) {
        CatalogError::from(error).into_response()
    } else if is_api(path) {
        ApiError(error).into_response()
    } else {
        PageError(error).into_response()
    }
}

/// The middleware in front of every route but `/health`, `/login` and static files.
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if let Err(e) = check_host_and_origin(&state, &request) {
        return reject(&path, e);
    }
    let identity = match identify(&state, request.headers()).await {
        Ok(Some(identity)) => identity,
        Ok(None) if is_api(&path) => return reject(&path, WebError::Unauthorized),
        Ok(None) => {
            let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
            return redirect(&format!("/login?next={}", encode_component(target)));
        }
        Err(e) => return reject(&path, e),
    };
    let (mut parts, body) = request.into_parts();
    let mut body = body;
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        if !identity.is_admin() && !open_to_viewers(&parts.method, &path) {
            return reject(&path, WebError::admin_only());
        }
        // Without authentication (loopback only) catalog and SQL clients send JSON, which a
        // browser cannot send to another site without a preflight this server never grants.
        let json_call = identity.via == Via::Open
            && (is_catalog(&path) || path == SQL_API)
            && has_content_type(&parts.headers, "application/json");
        if identity.via != Via::Token && !json_call {
            match check_csrf(&identity, &parts.headers, body).await {
                Ok(bytes) => body = Body::from(bytes),
                Err(e) => return reject(&path, e),
            }
        }
    }
    parts.extensions.insert(identity);
    let mut response = next.run(Request::from_parts(parts, body)).await;
    // What only this caller may see must not stay in shared or browser caches.
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The SQL console's API: a POST that only reads.
const SQL_API: &str = "/api/v1/sql";

/// Requests any signed-in user may send besides reads: actions on their own credentials, and
/// SQL queries (which only read the lake).
fn open_to_viewers(method: &Method, path: &str) -> bool {
    path == "/logout"
        || (method == Method::DELETE && path.starts_with("/api/v1/tokens/"))
        || (method == Method::POST && path == SQL_API)
}

/// Host names always answered when authentication is off.
const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// With authentication off, only loopback and configured host names are answered, so a page
/// on another site cannot reach this server through a DNS name rebound to 127.0.0.1. Always:
/// a state-changing request whose `Origin` is neither this server's `Host` nor one of the
/// configured public names (a TLS proxy's, when it rewrites `Host`) is refused.
fn check_host_and_origin(state: &AppState, request: &Request) -> Result<(), WebError> {
    let configured = |name: &str| state.allowed_hosts.iter().any(|allowed| name == allowed);
    // Browsers always send `Host`; a request without one cannot come through a rebound name.
    let sent_host = request.headers().get(HOST).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let host = sent_host.unwrap_or("");
    let known =
        |host: &str| LOOPBACK_NAMES.contains(&host_name(host)) || configured(host_name(host));
    if !state.auth && sent_host.is_some_and(|host| !known(host)) {
        return Err(WebError::Forbidden(format!(
            "host `{host}` is not served without authentication: add it to [web] allowed_hosts"
        )));
    }
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if let (true, Some(origin)) = (changes, request.headers().get(ORIGIN)) {
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if origin_host != host && !configured(host_name(origin_host)) {
            return Err(WebError::Forbidden(format!(
                "cross-site request refused: origin `{origin}` is not this server"
            )));
        }
    }
    Ok(())
}

/// `host` without its port (`[::1]:8080` → `::1`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Headers on every response: no framing (clickjacking), no content sniffing, scripts and
/// styles from this server only, no referrer leaving it.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Accepts a request carrying the session's CSRF token in the `X-CSRF-Token` header or in the
/// `csrf_token` field of a form body; returns the body for the handler.
async fn check_csrf(
    identity: &Identity,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, WebError> {
    let forbidden = || WebError::Forbidden("missing or wrong CSRF token: reload the page".into());
    let bytes = to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| WebError::TooLarge(format!("request body over {MAX_FORM_BYTES} bytes")))?;
    if let Some(token) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return if same_secret(token, &identity.csrf_token) { Ok(bytes) } else { Err(forbidden()) };
    }
    if !has_content_type(headers, "application/x-www-form-urlencoded") {
        return Err(forbidden());
    }
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let sent = fields.iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.as_str());
    match sent {
        Some(token) if same_secret(token, &identity.csrf_token) => Ok(bytes),
        _ => Err(forbidden()),
    }
}

fn has_content_type(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(media_type))
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The `Secure` cookie attribute, when a TLS proxy is configured in front.
fn secure(state: &AppState) -> &'static str {
    if state.secure_cookies {
        "; Secure"
    } else {
        ""
    }
}

fn set_cookie(response: &mut Response, cookie: String) {
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// Only same-site paths are followed after login: `next` must parse as a URI with neither
/// scheme nor host, and the redirect is rebuilt from its parsed path and query.
fn safe_next(next: Option<&str>) -> String {
    let local = next
        .filter(|text| !text.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\'))
        .and_then(|text| text.parse::<Uri>().ok())
        .filter(|uri| uri.scheme().is_none() && uri.authority().is_none())
        .and_then(|uri| uri.path_and_query().map(|p| p.as_str().to_string()))
        .filter(|path| path.starts_with('/') && !path.starts_with("//"));
    local.unwrap_or_else(|| "/dags".to_string())
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_page(next: String, error: Option<String>, status: StatusCode) -> Response {
    let token = new_secret();
    let page = LoginPage { next, error, csrf_token: token.clone() };
    match askama::Template::render(&page) {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            set_cookie(
                &mut response,
                format!("{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict"),
            );
            response
        }
        Err(e) => PageError(e.into()).into_response(),
    }
}

pub async fn login_form(Query(query): Query<LoginQuery>) -> Response {
    login_page(safe_next(query.next.as_deref()), None, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf_token: String,
    next: Option<String>,
}

/// The address the request came from, when the server recorded it.
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(ClientAddr(peer))
    }
}

/// A valid argon2 hash of no one's password: unknown users are checked against it, so their
/// answer takes as long as a wrong password's.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&new_secret()).unwrap_or_default())
}

fn too_many(wait: Option<Duration>, next: String) -> Response {
    let message = match wait {
        Some(wait) => {
            format!("Too many failed logins: try again in {} seconds.", wait.as_secs().max(1))
        }
        None => "Too many logins at once: try again in a moment.".to_string(),
    };
    let mut response = login_page(next, Some(message), StatusCode::TOO_MANY_REQUESTS);
    let seconds = wait.map_or(1, |w| w.as_secs().max(1));
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&expected, &form.csrf_token) {
        return PageError(WebError::Forbidden(
            "missing or wrong CSRF token: reload the login page".into(),
        ))
        .into_response();
    }
    let throttle = &state.login_throttle;
    if let Err(Refusal::LockedOut(wait)) = throttle.check(&form.username, client) {
        return too_many(Some(wait), next);
    }
    let user = match users::get(state.store.read(), &form.username).await {
        Ok(user) => user,
        Err(e) => return PageError(e.into()).into_response(),
    };
    let Ok(_slot) = throttle.hashing_slot().await else {
        return too_many(None, next);
    };
    let hash = user.as_ref().map_or_else(|| decoy_hash().to_string(), |u| u.password_hash.clone());
    let password = form.password;
    let matches =
        crate::process::blocking(move || verify_password(&password, &hash)).await.unwrap_or(false);
    let Some(user) = user.filter(|_| matches) else {
        throttle.failed(&form.username, client);
        let error = Some("Wrong user name or password.".to_string());
        return login_page(next, error, StatusCode::UNAUTHORIZED);
    };
    throttle.succeeded(&user.username);
    let secret = new_secret();
    let now = now_micros();
    let lifetime = state.session_lifetime;
    let session = SessionRow {
        username: user.username,
        role: user.role,
        csrf_token: new_secret(),
        expires_at: now + i64::try_from(lifetime.as_micros()).unwrap_or(i64::MAX / 2),
    };
    if let Err(e) =
        users::create_session(state.store.write(), &digest(&secret), &session, now).await
    {
        return PageError(e.into()).into_response();
    }
    let mut response = redirect(&next);
    set_cookie(
        &mut response,
        format!(
            "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            lifetime.as_secs(),
            secure(&state)
        ),
    );
    set_cookie(&mut response, format!("{LOGIN_COOKIE}=; Path=/login; Max-Age=0"));
    response
}

pub async fn logout(
    State(state): State<AppState>,
    Extension(_identity): Extension<Identity>,
    headers: HeaderMap,
) -> Response {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) =
            users::delete_session(state.store.write(), &digest(&secret), now_micros()).await
        {
            return PageError(e.into()).into_response();
        }
    }
    let mut response = redirect("/login");
    set_cookie(
        &mut response,
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}", secure(&state)),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=1; lakeward_session=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/dags/x?page=2")), "/dags/x?page=2");
        assert_eq!(safe_next(Some("//evil.example")), "/dags");
        assert_eq!(safe_next(Some("https://evil.example")), "/dags");
        assert_eq!(safe_next(None), "/dags");
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
