//! Random values from the operating system: secrets and unique identifiers. It knows nothing
//! of what they are for.

use argon2::password_hash::rand_core::{OsRng, RngCore};

/// A random secret: 32 bytes from the operating system, as 64 hex digits.
pub fn new_secret() -> String {
    hex_digits(64)
}

/// `count` random hex digits: a name no other writer will pick (file names, ids).
pub fn hex_digits(count: usize) -> String {
    let mut bytes = vec![0u8; count.div_ceil(2)];
    OsRng.fill_bytes(&mut bytes);
    let mut text = hex(&bytes);
    text.truncate(count);
    text
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
