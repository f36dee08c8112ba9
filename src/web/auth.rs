//! Who is asking: session cookies, bearer API tokens, the login and logout pages, and the rules
//! every request passes through (login required, admins only for actions, CSRF tokens on every
//! cookie-authenticated POST).

use axum::body::{to_bytes, Body};
use axum::extract::{Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::catalog::CatalogError;
use super::error::{ApiError, PageError, WebError};
use super::views::{encode_component, LoginPage};
use super::AppState;
use crate::store::{Role, SessionRow};
use crate::time::now_micros;
use crate::users::{digest, new_secret, verify_password};

pub const SESSION_COOKIE: &str = "lakeward_session";
/// Double-submit cookie guarding the login form, which has no session yet.
const LOGIN_COOKIE: &str = "lakeward_login";
/// Form field (and `X-CSRF-Token` header) carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";
const CSRF_HEADER: &str = "x-csrf-token";
/// Largest form body the CSRF check reads.
const MAX_FORM_BYTES: usize = 1 << 20;

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Session,
    Token,
    /// Authentication is off (`web.auth = false`, loopback only).
    Open,
}

/// The authenticated caller, available to every handler behind [`authenticate`].
#[derive(Debug, Clone)]
pub struct Identity {
    pub username: String,
    pub role: Role,
    /// What forms must send back; empty for token callers.
    pub csrf_token: String,
    pub via: Via,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

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
        let user = state.store.user_of_api_token(&digest(token.trim())).await?;
        return Ok(user.map(|user| Identity {
            username: user.username,
            role: user.role,
            csrf_token: String::new(),
            via: Via::Token,
        }));
    }
    if let Some(secret) = cookie(headers, SESSION_COOKIE) {
        if let Some(session) = state.store.get_session(&digest(&secret), now_micros()).await? {
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
        if path != "/logout" && !identity.is_admin() {
            return reject(&path, WebError::admin_only());
        }
        // Without authentication (loopback only) catalog clients send JSON, which a browser
        // cannot send to another site without a preflight this server never grants.
        let json_catalog_call = identity.via == Via::Open
            && is_catalog(&path)
            && has_content_type(&parts.headers, "application/json");
        if identity.via != Via::Token && !json_catalog_call {
            match check_csrf(&identity, &parts.headers, body).await {
                Ok(bytes) => body = Body::from(bytes),
                Err(e) => return reject(&path, e),
            }
        }
    }
    parts.extensions.insert(identity);
    next.run(Request::from_parts(parts, body)).await
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
        .map_err(|_| WebError::BadRequest("request body too large".into()))?;
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

fn set_cookie(response: &mut Response, cookie: String) {
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// Only same-site paths are followed after login.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_string()
        }
        _ => "/dags".to_string(),
    }
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

pub async fn login(
    State(state): State<AppState>,
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
    let user = match state.store.get_user(&form.username).await {
        Ok(user) => user,
        Err(e) => return PageError(e.into()).into_response(),
    };
    let password = form.password;
    let verified = match user {
        Some(user) => {
            let hash = user.password_hash.clone();
            let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
                .await
                .unwrap_or(false);
            ok.then_some(user)
        }
        None => None,
    };
    let Some(user) = verified else {
        let error = Some("Wrong user name or password.".to_string());
        return login_page(next, error, StatusCode::UNAUTHORIZED);
    };
    let secret = new_secret();
    let now = now_micros();
    let lifetime = state.session_lifetime;
    let session = SessionRow {
        username: user.username,
        role: user.role,
        csrf_token: new_secret(),
        expires_at: now + i64::try_from(lifetime.as_micros()).unwrap_or(i64::MAX / 2),
    };
    if let Err(e) = state.store.create_session(&digest(&secret), &session, now).await {
        return PageError(e.into()).into_response();
    }
    let mut response = redirect(&next);
    set_cookie(
        &mut response,
        format!(
            "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
            lifetime.as_secs()
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
        if let Err(e) = state.store.delete_session(&digest(&secret), now_micros()).await {
            return PageError(e.into()).into_response();
        }
    }
    let mut response = redirect("/login");
    set_cookie(
        &mut response,
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
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
