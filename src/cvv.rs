//! CVV2 and PIN verification against the stored keyed hashes, in constant
//! time, and random CVV2 generation. Nothing here keeps or logs a CVV2 or PIN.

use crate::pinblock::Pin;
use crate::secrets::CardSecrets;
use rand::rngs::OsRng;
use rand::Rng;

/// True when `presented` hashes (bound to `card_id`) to the stored hex verifier.
pub fn cvv2_matches(secrets: &CardSecrets, card_id: &str, stored: &str, presented: &[u8]) -> bool {
    if presented.is_empty() {
        return false;
    }
    hex_verifier_matches(stored, &secrets.cvv2_hash(card_id, presented))
}

/// True when `presented` hashes (bound to `card_id`) to the stored hex PIN verifier.
pub fn pin_matches(secrets: &CardSecrets, card_id: &str, stored: &str, presented: &Pin) -> bool {
    hex_verifier_matches(stored, &secrets.pin_hash(card_id, presented.as_bytes()))
}

/// A fresh CVV2: three decimal digits, uniform over 000..=999, from the OS RNG.
pub fn random_cvv2() -> String {
    // `gen_range` samples by rejection, so there is no modulo bias.
    let n: u16 = OsRng.gen_range(0..1000);
    format!("{n:03}")
}

/// Compares two hex verifiers as bytes (case-insensitive), in constant time.
fn hex_verifier_matches(stored: &str, computed: &str) -> bool {
    match (hex::decode(stored), hex::decode(computed)) {
        (Ok(a), Ok(b)) => constant_time_eq(&a, &b),
        _ => false,
    }
}

/// Constant-time equality: the time depends only on the lengths, never on where bytes differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

/// TEMPORARY until branch `authpin` lands with the CVV method: same signature.
pub fn derive_cvv2(cvk: &[u8; 16], pan: &[u8], expiry_yymm: &str, generation: u32) -> String {
    let _ = (cvk, pan, expiry_yymm, generation);
    String::from("000")
}

/// TEMPORARY until branch `authpin` lands: same signature.
pub fn card_verification_key(secrets: &CardSecrets) -> [u8; 16] {
    let key = secrets.derive_key(b"antaca cvk v1");
    let mut cvk = [0u8; 16];
    cvk.copy_from_slice(&key[..16]);
    cvk
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> CardSecrets {
        CardSecrets::from_key([7u8; 32])
    }

    #[test]
    fn cvv2_match_mismatch_and_other_card() {
        let s = secrets();
        let stored = s.cvv2_hash("card-1", b"123");
        assert!(cvv2_matches(&s, "card-1", &stored, b"123"));
        assert!(cvv2_matches(&s, "card-1", &stored.to_uppercase(), b"123"));
        assert!(!cvv2_matches(&s, "card-1", &stored, b"124"));
        assert!(!cvv2_matches(&s, "card-2", &stored, b"123"));
        assert!(!cvv2_matches(&s, "card-1", &stored, b""));
        assert!(!cvv2_matches(&s, "card-1", "not hex", b"123"));
        assert!(!cvv2_matches(&s, "card-1", &stored[..62], b"123"));
        // Another data key does not verify.
        let other = CardSecrets::from_key([8u8; 32]);
        assert!(!cvv2_matches(&other, "card-1", &stored, b"123"));
    }

    #[test]
    fn pin_match_mismatch_and_other_card() {
        let s = secrets();
        let pin = Pin::parse("4821").expect("pin");
        let stored = s.pin_hash("card-1", pin.as_bytes());
        assert!(pin_matches(&s, "card-1", &stored, &pin));
        assert!(!pin_matches(
            &s,
            "card-1",
            &stored,
            &Pin::parse("4822").expect("pin")
        ));
        assert!(!pin_matches(
            &s,
            "card-1",
            &stored,
            &Pin::parse("48210").expect("pin")
        ));
        assert!(!pin_matches(&s, "card-2", &stored, &pin));
        assert!(!pin_matches(&s, "card-1", "", &pin));
        // The CVV2 verifier of the same digits is a different hash (domain separation).
        assert!(!pin_matches(
            &s,
            "card-1",
            &s.cvv2_hash("card-1", b"4821"),
            &pin
        ));
    }

    #[test]
    fn constant_time_eq_is_plain_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"bbc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        for i in 0..32 {
            let a = [0x5Au8; 32];
            let mut b = a;
            b[i] ^= 1;
            assert!(!constant_time_eq(&a, &b));
        }
    }

    #[test]
    fn random_cvv2_is_three_digits_and_spread() {
        let mut first = [0u32; 10];
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let c = random_cvv2();
            assert_eq!(c.len(), 3);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
            first[usize::from(c.as_bytes()[0] - b'0')] += 1;
            seen.insert(c);
        }
        // Expect 2000 per leading digit; 6 sigma is about 255.
        for n in first {
            assert!((1700..=2300).contains(&n), "{first:?}");
        }
        assert!(seen.len() > 990, "{}", seen.len());
    }
}
