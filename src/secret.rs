//! Types that hold secret material: tokens, JWTs and rendered file contents.
//!
//! Invariant: their `Debug` output never shows the value, and the memory is zeroed on drop, so a
//! stray `{:?}`, a panic message or a log line cannot leak what they hold. There is deliberately
//! no `Display` implementation: getting at the value takes an explicit `expose()` call.

use std::fmt;
use zeroize::Zeroize;

/// A secret text value, such as a Vault token or a service-account JWT.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> Self {
        SecretString(value)
    }

    /// The value itself; call sites are the only places secrets leave this type.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretString(<redacted {} bytes>)", self.0.len())
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Secret bytes: the content of one rendered file.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(value: Vec<u8>) -> Self {
        SecretBytes(value)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted {} bytes>)", self.0.len())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Zeroes a buffer's contents, e.g. a partly read answer that is being thrown away.
pub fn wipe(buf: &mut Vec<u8>) {
    buf.zeroize();
}

/// Zeroes a string's contents (a key read from a state file that is being dropped).
pub fn wipe_string(s: &mut String) {
    s.zeroize();
}

/// Owns a copy of a secret for an HTTP body and zeroes it when the last reference is dropped,
/// i.e. once the request has been written out.
struct ZeroizingBody(Vec<u8>);

impl AsRef<[u8]> for ZeroizingBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for ZeroizingBody {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A request body holding a copy of `secret` that is zeroed once the HTTP stack lets go of it.
pub fn zeroizing_bytes(secret: &[u8]) -> hyper::body::Bytes {
    hyper::body::Bytes::from_owner(ZeroizingBody(secret.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretString::new("hunter2-token".into());
        let b = SecretBytes::new(b"p@ss".to_vec());
        let shown = format!("{s:?} {b:?} {:?}", Some(&s));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("p@ss"), "{shown}");
        assert!(shown.contains("redacted 13 bytes"), "{shown}");
    }
}
