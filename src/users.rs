//! Users and their credentials: argon2 password hashes, session and API-token secrets, and the
//! first admin `standalone` creates. The HTTP side (cookies, login page) lives in `web::auth`.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::domain::Role;
use crate::random::hex;
use crate::store::users;
use crate::store::{ApiTokenRow, Store, StoreError, UserRow};
use crate::time::now_micros;

#[derive(Debug, Error)]
pub enum UserError {
    #[error("invalid user name `{0}`: use letters, digits, `.`, `_`, `-` and `@` (at most 64)")]
    InvalidName(String),
    #[error("a password must have at least 8 characters")]
    WeakPassword,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use crate::random::new_secret;

/// A random password people can type: 20 letters and digits.
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

/// The SHA-256 digest of a high-entropy secret, as stored in the database.
pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

pub fn hash_password(password: &str) -> Result<String, UserError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

fn check_name(username: &str) -> Result<(), UserError> {
    let valid = !username.is_empty()
        && username.len() <= 64
        && username.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if valid {
        Ok(())
    } else {
        Err(UserError::InvalidName(username.to_string()))
    }
}

/// Creates `username` (or resets its password and role).
pub async fn create_user(
    store: &Store,
    username: &str,
    password: &str,
    role: Role,
) -> Result<(), UserError> {
    check_name(username)?;
    if password.chars().count() < 8 {
        return Err(UserError::WeakPassword);
    }
    let password_hash = hash_password(password)?;
    let user = UserRow { username: username.to_string(), password_hash, role };
    users::upsert(store.write(), &user, now_micros()).await?;
    Ok(())
}

/// Creates an API token for `username`, valid for `lifetime` (forever for `None`), and returns
/// it; only its digest is stored.
pub async fn create_api_token(
    store: &Store,
    username: &str,
    name: &str,
    lifetime: Option<std::time::Duration>,
) -> Result<String, UserError> {
    let token = format!("lw_{}", new_secret());
    let now = now_micros();
    let expires_at =
        lifetime.map(|l| now.saturating_add(i64::try_from(l.as_micros()).unwrap_or(i64::MAX)));
    let row = ApiTokenRow {
        id: String::new(),
        username: username.to_string(),
        name: name.to_string(),
        created_at: now,
        expires_at,
    };
    users::create_api_token(store.write(), &digest(&token), &row).await?;
    Ok(token)
}

/// On a database without users, creates `admin` with a generated password and returns it
/// (to be shown once). Returns `None` when users exist.
pub async fn ensure_first_admin(store: &Store) -> Result<Option<String>, UserError> {
    if users::count(store.read()).await? > 0 {
        return Ok(None);
    }
    let password = new_password();
    create_user(store, "admin", &password, Role::Admin).await?;
    Ok(Some(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn secrets_are_random_and_digests_stable() {
        assert_ne!(new_secret(), new_secret());
        assert_eq!(new_secret().len(), 64);
        assert_eq!(digest("x"), digest("x"));
        assert_ne!(digest("x"), digest("y"));
        assert_eq!(new_password().len(), 20);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("ana.lyst@example").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("<script>").is_err());
    }
}
