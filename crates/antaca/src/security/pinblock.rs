//! ISO 9564-1 format 0 PIN blocks encrypted under a zone PIN key (ZPK).
//!
//! A format 0 clear block is the PIN field `0 L P P P P P/F .. F` (format
//! nibble 0, PIN length 4..=12, the PIN digits, then `F` padding) XORed with
//! the PAN field `0000` + the 12 rightmost PAN digits excluding the check
//! digit. The clear block is encrypted with TDES-ECB under the ZPK.
//!
//! Keys are double length (16 bytes, TDES EDE2) or triple length (24 bytes,
//! TDES EDE3). DES key parity is not enforced: the parity bits are ignored by
//! the cipher, so a key with wrong parity works exactly as its corrected
//! twin; [`ZonePinKey::has_odd_parity`] reports it for operators. Keys whose
//! halves collapse TDES into single DES are refused.

use crate::security::secret::Secret;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use des::{TdesEde2, TdesEde3};
use std::fmt;
use zeroize::Zeroize;

/// Why a PIN block operation failed; no message carries a key, PAN or PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinError {
    /// The key is not 32 or 48 hex digits, or degenerates to single DES.
    BadKey,
    /// The PAN is not 8 to 19 decimal digits.
    BadPan,
    /// The PIN is not 4 to 12 decimal digits.
    BadPin,
    /// The decrypted block is not a well-formed format 0 block.
    BadFormat,
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PinError::BadKey => "zone PIN key must be 32 or 48 hex digits with distinct DES halves",
            PinError::BadPan => "PAN must be 8 to 19 decimal digits",
            PinError::BadPin => "PIN must be 4 to 12 decimal digits",
            PinError::BadFormat => "PIN block is not a valid ISO 9564 format 0 block",
        })
    }
}

impl std::error::Error for PinError {}

/// A cardholder PIN of 4 to 12 decimal digits; Debug and Display redact it,
/// and it is wiped when dropped ([`Secret`]).
#[derive(Clone, Debug)]
pub struct Pin(Secret<Vec<u8>>);

impl Pin {
    /// Checks that `digits` is 4 to 12 decimal digits.
    pub fn parse(digits: &str) -> Result<Pin, PinError> {
        let bytes = digits.as_bytes();
        if (4..=12).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_digit) {
            Ok(Pin(Secret::new(bytes.to_vec())))
        } else {
            Err(PinError::BadPin)
        }
    }

    /// The ASCII digits, for keyed hashing (`CardSecrets::pin_hash`).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.expose()
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

#[derive(Clone)]
enum Tdes {
    Double(TdesEde2),
    Triple(TdesEde3),
}

/// A double- or triple-length TDES zone PIN key; Debug redacts it.
#[derive(Clone)]
pub struct ZonePinKey {
    cipher: Tdes,
    odd_parity: bool,
}

impl fmt::Debug for ZonePinKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ZonePinKey(<redacted>)")
    }
}

impl ZonePinKey {
    /// Parses a 32- or 48-hex-digit key; parity is not checked (see [`Self::has_odd_parity`]).
    pub fn from_hex(hex: &str) -> Result<ZonePinKey, PinError> {
        let len = match hex.len() {
            32 => 16,
            48 => 24,
            _ => return Err(PinError::BadKey),
        };
        let mut raw = [0u8; 24];
        let result = match hex::decode_to_slice(hex, &mut raw[..len]) {
            Ok(()) => ZonePinKey::from_bytes(&raw[..len]),
            Err(_) => Err(PinError::BadKey),
        };
        raw.zeroize();
        result
    }

    fn from_bytes(key: &[u8]) -> Result<ZonePinKey, PinError> {
        let odd_parity = key.iter().all(|b| b.count_ones() % 2 == 1);
        // DES ignores the low bit of each byte, so compare with it masked off.
        let part = |i: usize| -> [u8; 8] {
            let mut out = [0u8; 8];
            for (o, b) in out.iter_mut().zip(&key[i * 8..i * 8 + 8]) {
                *o = b & 0xFE;
            }
            out
        };
        let cipher = match key.len() {
            16 => {
                if part(0) == part(1) {
                    return Err(PinError::BadKey);
                }
                TdesEde2::new_from_slice(key)
                    .map(Tdes::Double)
                    .map_err(|_| PinError::BadKey)?
            }
            24 => {
                if part(0) == part(1) || part(1) == part(2) {
                    return Err(PinError::BadKey);
                }
                TdesEde3::new_from_slice(key)
                    .map(Tdes::Triple)
                    .map_err(|_| PinError::BadKey)?
            }
            _ => return Err(PinError::BadKey),
        };
        Ok(ZonePinKey { cipher, odd_parity })
    }

    /// True when every key byte has odd parity, as DES keys conventionally do.
    pub fn has_odd_parity(&self) -> bool {
        self.odd_parity
    }

    /// The key check value: the first 6 hex digits (upper case) of TDES-encrypt(0000000000000000).
    pub fn check_value(&self) -> String {
        let block = self.encrypt_raw([0u8; 8]);
        hex::encode_upper(&block[..3])
    }

    /// Decrypts a format 0 PIN block bound to `pan` (ASCII digits, check digit included).
    pub fn decrypt_pin_block(&self, block: &[u8; 8], pan: &[u8]) -> Result<Pin, PinError> {
        let pan_field = pan_field(pan)?;
        let mut clear = self.decrypt_raw(*block);
        for (c, p) in clear.iter_mut().zip(pan_field) {
            *c ^= p;
        }
        let pin = parse_pin_field(&clear);
        clear.zeroize();
        pin
    }

    /// Builds and encrypts the format 0 PIN block for `pin` bound to `pan`.
    pub fn encrypt_pin_block(&self, pin: &str, pan: &[u8]) -> Result<[u8; 8], PinError> {
        let pin = Pin::parse(pin)?;
        let pan_field = pan_field(pan)?;
        let mut clear = pin_field(&pin);
        for (c, p) in clear.iter_mut().zip(pan_field) {
            *c ^= p;
        }
        let block = self.encrypt_raw(clear);
        clear.zeroize();
        Ok(block)
    }

    fn encrypt_raw(&self, block: [u8; 8]) -> [u8; 8] {
        let mut b = GenericArray::from(block);
        match &self.cipher {
            Tdes::Double(c) => c.encrypt_block(&mut b),
            Tdes::Triple(c) => c.encrypt_block(&mut b),
        }
        b.into()
    }

    fn decrypt_raw(&self, block: [u8; 8]) -> [u8; 8] {
        let mut b = GenericArray::from(block);
        match &self.cipher {
            Tdes::Double(c) => c.decrypt_block(&mut b),
            Tdes::Triple(c) => c.decrypt_block(&mut b),
        }
        b.into()
    }
}

/// The PAN field: `0000` + the 12 rightmost PAN digits excluding the check
/// digit, left-padded with zeros when the PAN is shorter (ISO 9564-1).
fn pan_field(pan: &[u8]) -> Result<[u8; 8], PinError> {
    if !(8..=19).contains(&pan.len()) || !pan.iter().all(u8::is_ascii_digit) {
        return Err(PinError::BadPan);
    }
    let body = &pan[..pan.len() - 1];
    let digits = &body[body.len().saturating_sub(12)..];
    let mut nibbles = [0u8; 16];
    let start = 16 - digits.len();
    for (n, d) in nibbles[start..].iter_mut().zip(digits) {
        *n = d - b'0';
    }
    Ok(pack(&nibbles))
}

/// The PIN field: `0`, the length, the digits, `F` padding.
fn pin_field(pin: &Pin) -> [u8; 8] {
    let digits = pin.as_bytes();
    let mut nibbles = [0x0Fu8; 16];
    nibbles[0] = 0;
    // Pin::parse bounds the length to 4..=12, so it fits one nibble.
    nibbles[1] = digits.len() as u8;
    for (n, d) in nibbles[2..].iter_mut().zip(digits) {
        *n = d - b'0';
    }
    let out = pack(&nibbles);
    nibbles.zeroize();
    out
}

fn parse_pin_field(clear: &[u8; 8]) -> Result<Pin, PinError> {
    let mut nibbles = [0u8; 16];
    for (i, b) in clear.iter().enumerate() {
        nibbles[2 * i] = b >> 4;
        nibbles[2 * i + 1] = b & 0x0F;
    }
    let len = usize::from(nibbles[1]);
    let ok = nibbles[0] == 0
        && (4..=12).contains(&len)
        && nibbles[2..2 + len].iter().all(|&n| n <= 9)
        && nibbles[2 + len..].iter().all(|&n| n == 0x0F);
    let result = if ok {
        Ok(Pin(Secret::new(
            nibbles[2..2 + len].iter().map(|n| n + b'0').collect(),
        )))
    } else {
        Err(PinError::BadFormat)
    };
    nibbles.zeroize();
    result
}

fn pack(nibbles: &[u8; 16]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibbles[2 * i] << 4) | nibbles[2 * i + 1];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // ANSI X9 test key; its KCV 08D7B4 is published with it (see the report / README).
    const TEST_KEY: &str = "0123456789ABCDEFFEDCBA9876543210";

    fn key() -> ZonePinKey {
        ZonePinKey::from_hex(TEST_KEY).expect("test key")
    }

    fn clear_block(pin: &str, pan: &[u8]) -> [u8; 8] {
        let pin = Pin::parse(pin).expect("pin");
        let mut clear = pin_field(&pin);
        for (c, p) in clear.iter_mut().zip(pan_field(pan).expect("pan")) {
            *c ^= p;
        }
        clear
    }

    #[test]
    fn canonical_format0_clear_block() {
        // PIN field 041234FFFFFFFFFF XOR PAN field 0000000123456200.
        let pin = Pin::parse("1234").expect("pin");
        assert_eq!(hex::encode_upper(pin_field(&pin)), "041234FFFFFFFFFF");
        assert_eq!(
            hex::encode_upper(pan_field(b"4000001234562000").expect("pan")),
            "0000000123456200"
        );
        assert_eq!(
            hex::encode_upper(clear_block("1234", b"4000001234562000")),
            "041234FEDCBA9DFF"
        );
    }

    #[test]
    fn published_format0_clear_block_17_digit_pan() {
        // ID TECH knowledge base, "PIN block formats": PAN 43219876543210987, PIN 1234.
        assert_eq!(
            hex::encode_upper(clear_block("1234", b"43219876543210987")),
            "0412AC89ABCDEF67"
        );
    }

    #[test]
    fn short_pan_is_left_padded() {
        // 8-digit PAN: 7 digits excluding the check digit, right-justified.
        assert_eq!(
            hex::encode_upper(pan_field(b"12345678").expect("pan")),
            "0000000001234567"
        );
    }

    #[test]
    fn kcv_of_ansi_test_key() {
        assert_eq!(key().check_value(), "08D7B4");
        // The same key as triple length (K3 = K1) is the same TDES permutation.
        let triple = ZonePinKey::from_hex(&format!("{TEST_KEY}0123456789ABCDEF")).expect("key");
        assert_eq!(triple.check_value(), "08D7B4");
        assert!(key().has_odd_parity());
    }

    #[test]
    fn des_known_answer_through_tdes() {
        // Grabbe, "The DES Algorithm Illustrated": K = 133457799BBCDFF1,
        // P = 0123456789ABCDEF, C = 85E813540F0AB405. With K1 = K2 = K3,
        // TDES EDE is single DES, so build the cipher directly (from_hex refuses such keys).
        let k = hex::decode("133457799BBCDFF1133457799BBCDFF1133457799BBCDFF1").expect("hex");
        let zpk = ZonePinKey {
            cipher: Tdes::Triple(TdesEde3::new_from_slice(&k).expect("key")),
            odd_parity: true,
        };
        let p: [u8; 8] = hex::decode("0123456789ABCDEF")
            .expect("hex")
            .try_into()
            .expect("8");
        let c = zpk.encrypt_raw(p);
        assert_eq!(hex::encode_upper(c), "85E813540F0AB405");
        assert_eq!(zpk.decrypt_raw(c), p);
    }

    #[test]
    fn encrypted_block_is_tdes_of_clear_block() {
        let k = key();
        let block = k
            .encrypt_pin_block("1234", b"4000001234562000")
            .expect("encrypt");
        assert_eq!(hex::encode_upper(k.decrypt_raw(block)), "041234FEDCBA9DFF");
        let pin = k
            .decrypt_pin_block(&block, b"4000001234562000")
            .expect("decrypt");
        assert_eq!(pin.as_bytes(), b"1234");
    }

    #[test]
    fn round_trips_every_length_both_key_sizes() {
        let keys = [
            key(),
            ZonePinKey::from_hex("0123456789ABCDEFFEDCBA987654321089ABCDEF01234567").expect("key"),
        ];
        let pans: [&[u8]; 3] = [
            b"4000001234562000",
            b"5355220000000012",
            b"4321987654321098765",
        ];
        for k in &keys {
            for pan in pans {
                for len in 4..=12 {
                    let pin: String = (0..len)
                        .map(|i| char::from(b'0' + (i * 7 % 10) as u8))
                        .collect();
                    let block = k.encrypt_pin_block(&pin, pan).expect("encrypt");
                    let back = k.decrypt_pin_block(&block, pan).expect("decrypt");
                    assert_eq!(back.as_bytes(), pin.as_bytes());
                }
            }
        }
    }

    #[test]
    fn other_pan_or_wrong_key_never_yields_the_pin() {
        let k = key();
        let wrong = ZonePinKey::from_hex("89ABCDEF0123456776543210FEDCBA98").expect("key");
        for len in 4..=12 {
            let pin: String = "987654321098".chars().take(len).collect();
            let block = k
                .encrypt_pin_block(&pin, b"4000001234562000")
                .expect("encrypt");
            match wrong.decrypt_pin_block(&block, b"4000001234562000") {
                Err(e) => assert_eq!(e, PinError::BadFormat),
                Ok(p) => assert_ne!(p.as_bytes(), pin.as_bytes()),
            }
            match k.decrypt_pin_block(&block, b"5355220000000012") {
                Err(e) => assert_eq!(e, PinError::BadFormat),
                Ok(p) => assert_ne!(p.as_bytes(), pin.as_bytes()),
            }
        }
    }

    #[test]
    fn malformed_clear_blocks_are_refused() {
        let k = key();
        let pan = b"4000001234562000";
        let pan_f = pan_field(pan).expect("pan");
        let bad_clear = [
            "141234FFFFFFFFFF", // format nibble 1
            "031234FFFFFFFFFF", // length 3
            "0D1234FFFFFFFFFF", // length 13
            "04123AFFFFFFFFFF", // non-digit in PIN
            "041234FFFFFFFFFE", // bad padding
            "0412340FFFFFFFFF", // digit where padding belongs
        ];
        for c in bad_clear {
            let mut clear: [u8; 8] = hex::decode(c).expect("hex").try_into().expect("8");
            for (x, p) in clear.iter_mut().zip(pan_f) {
                *x ^= p;
            }
            let block = k.encrypt_raw(clear);
            assert_eq!(
                k.decrypt_pin_block(&block, pan).err(),
                Some(PinError::BadFormat),
                "{c}"
            );
        }
    }

    #[test]
    fn random_blocks_never_panic() {
        let k = key();
        let mut accepted = 0;
        for _ in 0..20_000 {
            let block: [u8; 8] = rand::random();
            if let Ok(pin) = k.decrypt_pin_block(&block, b"4000001234562000") {
                assert!((4..=12).contains(&pin.as_bytes().len()));
                assert!(pin.as_bytes().iter().all(u8::is_ascii_digit));
                accepted += 1;
            }
        }
        // A random block is a valid format 0 block with tiny probability.
        assert!(accepted < 20, "{accepted}");
    }

    #[test]
    fn bad_inputs() {
        for bad in [
            "",
            "0123",
            "0123456789ABCDEFFEDCBA987654321",  // 31 digits
            "0123456789ABCDEFFEDCBA987654321G", // not hex
            "0123456789ABCDEF0123456789ABCDEF", // K1 = K2: single DES
            "0123456789ABCDEF0023456789ABCDEF", // K1 = K2 but for parity bits
            "0123456789ABCDEFFEDCBA9876543210FEDCBA9876543210", // K2 = K3
        ] {
            assert_eq!(
                ZonePinKey::from_hex(bad).err(),
                Some(PinError::BadKey),
                "{bad}"
            );
        }
        // Wrong parity is accepted, and reported.
        let k = ZonePinKey::from_hex("0023456789ABCDEFFEDCBA9876543210").expect("key");
        assert!(!k.has_odd_parity());
        assert_eq!(k.check_value(), "08D7B4");

        let k = key();
        for pin in ["123", "1234567890123", "12a4", ""] {
            assert_eq!(
                k.encrypt_pin_block(pin, b"4000001234562000").err(),
                Some(PinError::BadPin)
            );
        }
        for pan in [
            &b"1234567"[..],
            b"40000012345620001234",
            b"400000123456200X",
        ] {
            assert_eq!(
                k.encrypt_pin_block("1234", pan).err(),
                Some(PinError::BadPan)
            );
            assert_eq!(
                k.decrypt_pin_block(&[0; 8], pan).err(),
                Some(PinError::BadPan)
            );
        }
    }

    #[test]
    fn nothing_secret_in_debug_or_display() {
        let pin = Pin::parse("4821").expect("pin");
        assert_eq!(format!("{pin:?}"), "Pin(<redacted>)");
        assert_eq!(format!("{pin}"), "****");
        let dbg = format!("{:?}", key());
        assert!(!dbg.to_ascii_uppercase().contains("0123456789ABCDEF"));
        for e in [
            PinError::BadKey,
            PinError::BadPan,
            PinError::BadPin,
            PinError::BadFormat,
        ] {
            assert!(!e.to_string().contains("4821"));
        }
    }
}
