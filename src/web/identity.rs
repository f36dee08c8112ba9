//! Who is calling: the identity `auth` establishes for each request, which pages, the API and
//! the views read. It checks nothing itself (see `auth`).

use crate::domain::Role;

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Session,
    Token,
    /// Authentication is off (`web.auth = false`, loopback only).
    Open,
}

/// The authenticated caller, available to every handler behind `auth::authenticate`.
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
