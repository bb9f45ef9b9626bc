//! CVV2 and PIN verification against the stored keyed hashes, in constant
//! time, random CVV2 generation, and derived CVV2s (the Visa/Mastercard CVV
//! method under a card verification key). Nothing here keeps or logs a CVV2,
//! PIN, PAN or key.

use crate::domain::model::Card;
use crate::security::pinblock::Pin;
use crate::security::secrets::CardSecrets;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use des::{Des, TdesEde2};
use rand::rngs::OsRng;
use rand::Rng;

/// The CVV method (Visa CVV / Mastercard CVC): PAN ‖ expiry YYMM ‖ service
/// code, right-padded with `0` to 32 hex digits; the first 16 DES-encrypted
/// under key A, XORed with the second 16, TDES-EDE2-encrypted under A‖B; the
/// result decimalised (digits 0–9 in order, then A–F as 0–5); the first 3 digits.
///
/// Deviation from the networks: a CVV2 uses service code `000`; Antaca puts
/// the card's CVV generation there instead (`generation % 1000`, three digits)
/// so that a CVV reset (a new generation) changes the CVV2. Generation 0 is
/// the standard CVV2. Non-digit input bytes count as `0`; input past 32 digits is ignored.
pub fn derive_cvv2(cvk: &[u8; 16], pan: &[u8], expiry_yymm: &str, generation: u32) -> String {
    let service_code = format!("{:03}", generation % 1000);
    cvv_of(cvk, pan, expiry_yymm.as_bytes(), service_code.as_bytes())
}

/// The CVV method with an explicit service code (see [`derive_cvv2`]).
fn cvv_of(cvk: &[u8; 16], pan: &[u8], expiry: &[u8], service_code: &[u8]) -> String {
    let mut nibbles = [0u8; 32];
    for (n, d) in nibbles
        .iter_mut()
        .zip(pan.iter().chain(expiry).chain(service_code))
    {
        *n = if d.is_ascii_digit() { d - b'0' } else { 0 };
    }
    let mut block1 = [0u8; 8];
    let mut block2 = [0u8; 8];
    for i in 0..8 {
        block1[i] = (nibbles[2 * i] << 4) | nibbles[2 * i + 1];
        block2[i] = (nibbles[16 + 2 * i] << 4) | nibbles[16 + 2 * i + 1];
    }
    let mut key_a = [0u8; 8];
    key_a.copy_from_slice(&cvk[..8]);
    let single = Des::new(&GenericArray::from(key_a));
    let double = TdesEde2::new(GenericArray::from_slice(cvk));
    let mut block = GenericArray::from(block1);
    single.encrypt_block(&mut block);
    for (b, x) in block.iter_mut().zip(block2) {
        *b ^= x;
    }
    double.encrypt_block(&mut block);
    let hex: Vec<u8> = block.iter().flat_map(|b| [b >> 4, b & 0x0F]).collect();
    let decimal = hex
        .iter()
        .filter(|&&h| h < 10)
        .copied()
        .chain(hex.iter().filter(|&&h| h >= 10).map(|h| h - 10));
    decimal.take(3).map(|d| char::from(b'0' + d)).collect()
}

/// The card verification key (CVK A ‖ B) derived from the data key, so that no new key file is needed.
pub fn card_verification_key(secrets: &CardSecrets) -> [u8; 16] {
    let derived = secrets.derive_key(b"antaca cvk v1");
    let mut cvk = [0u8; 16];
    cvk.copy_from_slice(&derived[..16]);
    cvk
}

/// True when `presented` is the card's CVV2: derived under the CVK for cards
/// with a CVV generation, else checked against the stored keyed hash; a card with neither never verifies.
pub fn cvv2_verifies(secrets: &CardSecrets, card: &Card, pan: &[u8], presented: &str) -> bool {
    match (card.cvv_generation, &card.cvv2_hash) {
        (Some(generation), _) => {
            let expected = derive_cvv2(
                &card_verification_key(secrets),
                pan,
                &card.expiry,
                generation,
            );
            constant_time_eq(expected.as_bytes(), presented.as_bytes())
        }
        (None, Some(stored)) => cvv2_matches(secrets, &card.id, stored, presented.as_bytes()),
        (None, None) => false,
    }
}

/// True when `presented` hashes (bound to `card_id`) to the stored hex verifier.
pub fn cvv2_matches(secrets: &CardSecrets, card_id: &str, stored: &str, presented: &[u8]) -> bool {
    if presented.is_empty() {
        return false;
    }
    hex_verifier_matches(stored, &secrets.cvv2_mac(card_id, presented))
}

/// True when `presented` hashes (bound to `card_id`) to the stored hex PIN verifier.
pub fn pin_matches(secrets: &CardSecrets, card_id: &str, stored: &str, presented: &Pin) -> bool {
    hex_verifier_matches(stored, &secrets.pin_mac(card_id, presented.as_bytes()))
}

/// A fresh CVV2: three decimal digits, uniform over 000..=999, from the OS RNG.
pub fn random_cvv2() -> String {
    // `gen_range` samples by rejection, so there is no modulo bias.
    let n: u16 = OsRng.gen_range(0..1000);
    format!("{n:03}")
}

/// Compares a stored hex verifier (either case) with a computed MAC, in constant time.
fn hex_verifier_matches(stored: &str, computed: &[u8; 32]) -> bool {
    let mut decoded = [0u8; 32];
    match hex::decode_to_slice(stored, &mut decoded) {
        Ok(()) => constant_time_eq(&decoded, computed),
        Err(_) => false,
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
    fn cvv_method_published_vector() {
        // The classic CVV test data (CVK A 0123456789ABCDEF, CVK B
        // FEDCBA9876543210), as published with the CVV method, e.g. the
        // China UnionPay-era card specification tables reproduced on
        // fsou.com/bbs.pfan.cn, and a worked example (service code 111 → 856).
        let mut cvk = [0u8; 16];
        hex::decode_to_slice("0123456789ABCDEFFEDCBA9876543210", &mut cvk).expect("hex");
        for (pan, expiry, service, cvv) in [
            ("4123456789012", "8701", "101", "370"),
            ("4999988887777", "9105", "111", "649"),
            ("4666655554444", "9206", "120", "821"),
            ("4333322221111", "9307", "141", "697"),
            ("4123456789012345", "8701", "101", "561"),
            ("4999988887777000", "9105", "111", "245"),
            ("4666655554444111", "9206", "120", "664"),
            ("4333322221111222", "9307", "141", "382"),
            ("4123456789012345", "8701", "111", "856"),
        ] {
            assert_eq!(
                cvv_of(&cvk, pan.as_bytes(), expiry.as_bytes(), service.as_bytes()),
                cvv,
                "{pan} {expiry} {service}"
            );
        }
        // The same card with generation 101 folds in as that service code.
        assert_eq!(derive_cvv2(&cvk, b"4123456789012345", "8701", 101), "561");
        assert_eq!(derive_cvv2(&cvk, b"4123456789012345", "8701", 1101), "561");
    }

    #[test]
    fn derived_cvv2_is_three_digits_and_changes_with_inputs() {
        let cvk = card_verification_key(&secrets());
        let base = derive_cvv2(&cvk, b"5355220000000012", "4912", 0);
        assert_eq!(base.len(), 3);
        assert!(base.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(base, derive_cvv2(&cvk, b"5355220000000012", "4912", 0));
        // Across generations, PANs and expiries the CVV2 takes many values.
        let mut seen = std::collections::HashSet::new();
        for g in 0..50 {
            seen.insert(derive_cvv2(&cvk, b"5355220000000012", "4912", g));
        }
        assert!(seen.len() > 30, "{}", seen.len());
        // Another data key gives another CVK.
        assert_ne!(
            cvk,
            card_verification_key(&CardSecrets::from_key([8u8; 32]))
        );
        // Garbage input does not panic.
        assert_eq!(derive_cvv2(&cvk, b"", "", 0).len(), 3);
        assert_eq!(derive_cvv2(&cvk, &[b'9'; 40], "ab", u32::MAX).len(), 3);
    }

    #[test]
    fn cvv2_verifies_by_generation_or_hash() {
        let s = secrets();
        let pan = b"5355220000000012";
        let mut card = crate::domain::model::Card {
            id: "card-1".into(),
            balance: "b".into(),
            program: "p".into(),
            card_type: crate::domain::model::CardType::Virtual,
            state: crate::domain::model::CardState::Active,
            lock: None,
            expiry: "4912".into(),
            pan_hash: String::new(),
            pan_masked: String::new(),
            cvv2_hash: None,
            pin_hash: None,
            pin_tries: 0,
            pan_sealed: None,
            linked: true,
            created_ms: 0,
            activated_ms: None,
            cvv_generation: None,
        };
        assert!(!cvv2_verifies(&s, &card, pan, "123"), "neither");
        card.cvv2_hash = Some(s.cvv2_hash("card-1", b"123"));
        assert!(cvv2_verifies(&s, &card, pan, "123"));
        assert!(!cvv2_verifies(&s, &card, pan, "124"));
        card.cvv_generation = Some(3);
        let derived = derive_cvv2(&card_verification_key(&s), pan, "4912", 3);
        assert!(cvv2_verifies(&s, &card, pan, &derived));
        let wrong = format!(
            "{:03}",
            (derived.parse::<u32>().expect("digits") + 1) % 1000
        );
        assert!(!cvv2_verifies(&s, &card, pan, &wrong));
        // The generation wins over the imported hash.
        if derived != "123" {
            assert!(!cvv2_verifies(&s, &card, pan, "123"));
        }
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
