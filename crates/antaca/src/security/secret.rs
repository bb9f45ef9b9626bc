//! [`Secret`]: the one wrapper for a value that must never be printed and
//! must not outlive its use in memory (a PIN, a CVV2, a clear PAN, a key).
//!
//! Owns: redaction in `Debug` and wiping on drop. Must never touch: anything
//! else in the crate; it holds no policy on what is secret, only how.

use std::fmt;
use zeroize::Zeroize;

/// What `Debug` prints for every secret, whatever it holds.
pub const REDACTED: &str = "<redacted>";

/// A value that `Debug` prints as [`REDACTED`] and that is overwritten with
/// zeros when dropped (via `zeroize`, which the optimiser may not elide).
/// It has no `Display`, `Serialize` or `PartialEq`: reading it is explicit,
/// through [`Secret::expose`].
#[derive(Clone)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value, for the one use it was kept for (hashing, verifying, deriving).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Secret<T> {
        Secret(value)
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Pin(Secret<Vec<u8>>);

    #[test]
    fn debug_is_redacted_whatever_the_content() {
        let pin = Pin(Secret::new(b"4821".to_vec()));
        assert_eq!(format!("{pin:?}"), "Pin(<redacted>)");
        assert_eq!(format!("{:?}", Secret::new(String::from("987"))), REDACTED);
        assert_eq!(format!("{:?}", Secret::new([7u8; 16])), REDACTED);
        assert_eq!(pin.0.expose(), b"4821");
    }

    #[test]
    fn zeroize_wipes_what_drop_wipes() {
        // Drop calls exactly this; after it the bytes are gone.
        let mut bytes = b"5355220000000017".to_vec();
        bytes.zeroize();
        assert!(bytes.is_empty());
        let mut key = [0xA5u8; 24];
        key.zeroize();
        assert_eq!(key, [0u8; 24]);
    }
}
