//! The PAN as text: masking it for display (first 6, last 4, never the whole
//! number) and its Luhn check digit.
//!
//! Owns: the one masking rule every log, error, record and screen uses. Must
//! never touch: anything else in the crate (it is a leaf, so that the codec
//! may print a masked field 2 without knowing a card), IO, or a key.

/// Digits a masked PAN may show at most: the first 6 (the BIN) and the last 4.
const SHOWN_MAX: usize = 10;

/// A PAN masked for display: the first 6 and last 4 digits, a `*` for each
/// digit between. A PAN of 10 digits or fewer would show (nearly) all of
/// itself that way, and anything that is not all ASCII digits might be a PAN
/// in another encoding: those are shown as one `*` per byte.
pub fn mask_pan(pan: &[u8]) -> String {
    let n = pan.len();
    if n <= SHOWN_MAX || !pan.iter().all(u8::is_ascii_digit) {
        return "*".repeat(n);
    }
    let mut out = String::with_capacity(n);
    for (i, &b) in pan.iter().enumerate() {
        out.push(if i < 6 || i >= n - 4 {
            char::from(b)
        } else {
            '*'
        });
    }
    out
}

/// True when the digits pass the Luhn check.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.len() < 2 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let (payload, check) = digits.split_at(digits.len() - 1);
    check.first() == Some(&luhn_check_digit(payload))
}

/// The Luhn check digit (ASCII) that completes `payload` (ASCII digits).
pub fn luhn_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d.wrapping_sub(b'0') % 10);
            // The rightmost payload digit is doubled, as the check digit follows it.
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    // (10 - sum % 10) % 10 is below 10, so the cast is lossless.
    b'0' + ((10 - sum % 10) % 10) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        assert!(luhn_valid(b"5355220000000012"));
        assert!(!luhn_valid(b"5355220000000017"));
        assert!(!luhn_valid(b"53552200000000a7"));
    }

    #[test]
    fn masks_all_but_first_six_and_last_four() {
        assert_eq!(mask_pan(b"5355220000000017"), "535522******0017");
        assert_eq!(mask_pan(b"4111111111111111111"), "411111*********1111");
    }

    #[test]
    fn never_shows_the_whole_pan_whatever_its_length() {
        let digits = b"4111112345678901234";
        for n in 0..=19 {
            let pan = &digits[..n];
            let masked = mask_pan(pan);
            assert_eq!(masked.len(), n, "length {n}");
            let shown = masked.bytes().filter(u8::is_ascii_digit).count();
            if n <= 10 {
                assert_eq!(masked, "*".repeat(n), "length {n}");
            } else {
                assert_eq!(shown, 10, "length {n}");
                assert_eq!(masked.as_bytes()[..6], pan[..6], "length {n}");
                assert_eq!(masked.as_bytes()[n - 4..], pan[n - 4..], "length {n}");
                assert!(masked[6..n - 4].bytes().all(|b| b == b'*'), "length {n}");
            }
            assert!(n == 0 || masked.as_bytes() != pan, "length {n}");
        }
    }

    #[test]
    fn what_is_not_digits_is_all_stars() {
        assert_eq!(mask_pan(b"53552200000000a7"), "****************");
        assert_eq!(
            mask_pan(&[0x53, 0x55, 0x22, 0, 0, 0, 0, 0, 0, 0, 0x17]),
            "***********"
        );
    }
}
