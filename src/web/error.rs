//! What can go wrong while answering a request, and how it is shown: as JSON for the API, as an
//! HTML page for the UI. Internal details are logged, not sent.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;
use thiserror::Error;

use crate::scheduler::trigger::TriggerError;
use crate::store::StoreError;
use crate::versions::VersionError;

#[derive(Debug, Error)]
pub enum WebError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("login required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    TooManyRequests(String, std::time::Duration),
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(String),
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn log(&self) {
        match self {
            WebError::Unavailable(e) => tracing::error!("web request failed: {e}"),
            WebError::Internal(e) => tracing::error!("web request failed: {e}"),
            _ => {}
        }
    }

    pub fn admin_only() -> WebError {
        WebError::Forbidden("this action needs the admin role".into())
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(message) => WebError::Internal(message),
            other => WebError::Unavailable(other),
        }
    }
}

impl From<VersionError> for WebError {
    fn from(e: VersionError) -> Self {
        match e {
            VersionError::Store(e) => e.into(),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<TriggerError> for WebError {
    fn from(e: TriggerError) -> Self {
        match e {
            TriggerError::InvalidParams(_) => WebError::BadRequest(e.to_string()),
            TriggerError::Duplicate { .. } | TriggerError::Consumed => {
                WebError::Conflict(e.to_string())
            }
            TriggerError::Store(e) => e.into(),
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(format!("template: {e}"))
    }
}

/// An error answered as `{"error": "..."}` with its status code.
#[derive(Debug)]
pub struct ApiError(pub WebError);

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.log();
        (self.0.status(), Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

/// An error answered as a small HTML page.
#[derive(Debug)]
pub struct PageError(pub WebError);

impl<E: Into<WebError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.log();
        let page = super::views::ErrorPage {
            status: self.0.status().as_u16(),
            message: self.0.to_string(),
        };
        let html = askama::Template::render(&page)
            .unwrap_or_else(|_| "<h1>lakeward</h1><p>Something went wrong.</p>".to_string());
        (self.0.status(), Html(html)).into_response()
    }
}
