//! The keys messages are found by: the idempotency key a repeat or duplicate
//! is recognised by, the key field 90/56 names an original by, and the key an
//! orphan reversal waits under. Pure string building: no store, no decision.

use super::{ascii, AuthRequest, FileAction};

impl AuthRequest {
    /// The idempotency key: MTI (repeat cleared), acquirer, STAN, date-time, terminal.
    pub fn idempotency_key(&self) -> String {
        idempotency_key(
            &self.mti,
            &self.acquirer,
            &self.stan,
            &self.key_datetime,
            &self.terminal,
        )
    }

    /// What must match for a message with the same key to be its duplicate:
    /// card, amount and processing code.
    pub fn fingerprint(&self) -> u64 {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.pan_hash.unwrap_or_default());
        hasher.update(self.amount_minor.to_be_bytes());
        hasher.update(self.processing_code.unwrap_or_default());
        match self.file_action {
            None => {}
            Some(FileAction::Add { reason }) => hasher.update([b'A', reason]),
            Some(FileAction::Delete) => hasher.update(b"D"),
            Some(FileAction::Other) => hasher.update(b"O"),
        }
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    /// The key an orphan reversal is kept under until its original arrives:
    /// STAN, date-time and acquirer, without the MTI.
    pub fn orphan_key(&self) -> String {
        key_of(&[ascii(&self.stan), &self.key_datetime, &self.acquirer])
    }

    /// The key later messages name this one by (field 90/56 carry no terminal).
    pub fn original_key(&self) -> String {
        original_key(&self.mti, &self.stan, &self.key_datetime, &self.acquirer)
    }
}

/// The idempotency key of a message: MTI, acquirer, STAN, date-time, terminal.
pub fn idempotency_key(
    mti: &[u8; 4],
    acquirer: &str,
    stan: &[u8; 6],
    datetime: &str,
    terminal: &str,
) -> String {
    key_of(&[ascii(mti), acquirer, ascii(stan), datetime, terminal])
}

/// The key of an original: MTI, STAN, date-time, acquirer.
pub fn original_key(mti: &[u8; 4], stan: &[u8; 6], datetime: &str, acquirer: &str) -> String {
    key_of(&[ascii(mti), ascii(stan), datetime, acquirer])
}

/// The parts joined with `|` (what `format!` did, without its machinery:
/// keys are built several times per message).
fn key_of(parts: &[&str]) -> String {
    let len = parts.iter().map(|p| p.len() + 1).sum();
    let mut key = String::with_capacity(len);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push('|');
        }
        key.push_str(part);
    }
    key
}
