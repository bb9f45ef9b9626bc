//! Currencies (ISO 4217) and exact amounts in a currency's minor units.

use rust_decimal::Decimal;
use std::fmt;

/// An ISO 4217 currency: alphabetic code, numeric code and minor-unit exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency {
    /// Alphabetic code, e.g. "EUR".
    pub alpha: &'static str,
    /// Numeric code, e.g. 978.
    pub numeric: u16,
    /// Number of digits after the decimal point (EUR 2, JPY 0, BHD 3).
    pub exponent: u32,
}

/// The ISO 4217 list of active currencies (alpha, numeric, exponent).
const CURRENCIES: &[(&str, u16, u32)] = &[
    ("AED", 784, 2),
    ("AFN", 971, 2),
    ("ALL", 8, 2),
    ("AMD", 51, 2),
    ("ANG", 532, 2),
    ("AOA", 973, 2),
    ("ARS", 32, 2),
    ("AUD", 36, 2),
    ("AWG", 533, 2),
    ("AZN", 944, 2),
    ("BAM", 977, 2),
    ("BBD", 52, 2),
    ("BDT", 50, 2),
    ("BGN", 975, 2),
    ("BHD", 48, 3),
    ("BIF", 108, 0),
    ("BMD", 60, 2),
    ("BND", 96, 2),
    ("BOB", 68, 2),
    ("BRL", 986, 2),
    ("BSD", 44, 2),
    ("BTN", 64, 2),
    ("BWP", 72, 2),
    ("BYN", 933, 2),
    ("BZD", 84, 2),
    ("CAD", 124, 2),
    ("CDF", 976, 2),
    ("CHF", 756, 2),
    ("CLP", 152, 0),
    ("CNY", 156, 2),
    ("COP", 170, 2),
    ("CRC", 188, 2),
    ("CUP", 192, 2),
    ("CVE", 132, 2),
    ("CZK", 203, 2),
    ("DJF", 262, 0),
    ("DKK", 208, 2),
    ("DOP", 214, 2),
    ("DZD", 12, 2),
    ("EGP", 818, 2),
    ("ERN", 232, 2),
    ("ETB", 230, 2),
    ("EUR", 978, 2),
    ("FJD", 242, 2),
    ("FKP", 238, 2),
    ("GBP", 826, 2),
    ("GEL", 981, 2),
    ("GHS", 936, 2),
    ("GIP", 292, 2),
    ("GMD", 270, 2),
    ("GNF", 324, 0),
    ("GTQ", 320, 2),
    ("GYD", 328, 2),
    ("HKD", 344, 2),
    ("HNL", 340, 2),
    ("HTG", 332, 2),
    ("HUF", 348, 2),
    ("IDR", 360, 2),
    ("ILS", 376, 2),
    ("INR", 356, 2),
    ("IQD", 368, 3),
    ("IRR", 364, 2),
    ("ISK", 352, 0),
    ("JMD", 388, 2),
    ("JOD", 400, 3),
    ("JPY", 392, 0),
    ("KES", 404, 2),
    ("KGS", 417, 2),
    ("KHR", 116, 2),
    ("KMF", 174, 0),
    ("KPW", 408, 2),
    ("KRW", 410, 0),
    ("KWD", 414, 3),
    ("KYD", 136, 2),
    ("KZT", 398, 2),
    ("LAK", 418, 2),
    ("LBP", 422, 2),
    ("LKR", 144, 2),
    ("LRD", 430, 2),
    ("LSL", 426, 2),
    ("LYD", 434, 3),
    ("MAD", 504, 2),
    ("MDL", 498, 2),
    ("MGA", 969, 2),
    ("MKD", 807, 2),
    ("MMK", 104, 2),
    ("MNT", 496, 2),
    ("MOP", 446, 2),
    ("MRU", 929, 2),
    ("MUR", 480, 2),
    ("MVR", 462, 2),
    ("MWK", 454, 2),
    ("MXN", 484, 2),
    ("MYR", 458, 2),
    ("MZN", 943, 2),
    ("NAD", 516, 2),
    ("NGN", 566, 2),
    ("NIO", 558, 2),
    ("NOK", 578, 2),
    ("NPR", 524, 2),
    ("NZD", 554, 2),
    ("OMR", 512, 3),
    ("PAB", 590, 2),
    ("PEN", 604, 2),
    ("PGK", 598, 2),
    ("PHP", 608, 2),
    ("PKR", 586, 2),
    ("PLN", 985, 2),
    ("PYG", 600, 0),
    ("QAR", 634, 2),
    ("RON", 946, 2),
    ("RSD", 941, 2),
    ("RUB", 643, 2),
    ("RWF", 646, 0),
    ("SAR", 682, 2),
    ("SBD", 90, 2),
    ("SCR", 690, 2),
    ("SDG", 938, 2),
    ("SEK", 752, 2),
    ("SGD", 702, 2),
    ("SHP", 654, 2),
    ("SLE", 925, 2),
    ("SOS", 706, 2),
    ("SRD", 968, 2),
    ("SSP", 728, 2),
    ("STN", 930, 2),
    ("SVC", 222, 2),
    ("SYP", 760, 2),
    ("SZL", 748, 2),
    ("THB", 764, 2),
    ("TJS", 972, 2),
    ("TMT", 934, 2),
    ("TND", 788, 3),
    ("TOP", 776, 2),
    ("TRY", 949, 2),
    ("TTD", 780, 2),
    ("TWD", 901, 2),
    ("TZS", 834, 2),
    ("UAH", 980, 2),
    ("UGX", 800, 0),
    ("USD", 840, 2),
    ("UYU", 858, 2),
    ("UZS", 860, 2),
    ("VES", 928, 2),
    ("VND", 704, 0),
    ("VUV", 548, 0),
    ("WST", 882, 2),
    ("XAF", 950, 0),
    ("XCD", 951, 2),
    ("XOF", 952, 0),
    ("XPF", 953, 0),
    ("YER", 886, 2),
    ("ZAR", 710, 2),
    ("ZMW", 967, 2),
    ("ZWL", 932, 2),
];

impl Currency {
    /// Finds a currency by its alphabetic code ("EUR").
    pub fn from_alpha(code: &str) -> Option<Currency> {
        CURRENCIES
            .iter()
            .find(|(alpha, _, _)| *alpha == code)
            .map(|&(alpha, numeric, exponent)| Currency {
                alpha,
                numeric,
                exponent,
            })
    }

    /// Finds a currency by its numeric code (978).
    pub fn from_numeric(code: u16) -> Option<Currency> {
        CURRENCIES
            .iter()
            .find(|(_, numeric, _)| *numeric == code)
            .map(|&(alpha, numeric, exponent)| Currency {
                alpha,
                numeric,
                exponent,
            })
    }

    /// Finds a currency by the 3 ASCII digits a message carries ("978").
    pub fn from_numeric_ascii(code: &[u8]) -> Option<Currency> {
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = code
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        Currency::from_numeric(n)
    }

    /// The amount that `minor` minor units of this currency make (1234 EUR cents → 12.34).
    pub fn from_minor(&self, minor: u64) -> Decimal {
        Decimal::from_i128_with_scale(i128::from(minor), self.exponent)
    }

    /// The amount in minor units, or `None` if it has more fraction digits than the
    /// currency allows or does not fit in `i64`. Never rounds.
    pub fn to_minor(&self, amount: Decimal) -> Option<i64> {
        let factor = Decimal::from(10i64.checked_pow(self.exponent)?);
        let scaled = amount.checked_mul(factor)?.normalize();
        if scaled.scale() != 0 {
            return None;
        }
        i64::try_from(scaled.mantissa()).ok()
    }

    /// Parses a decimal string such as "150.00" exactly, refusing more fraction
    /// digits than the currency has, signs, exponents and anything else.
    pub fn parse_amount(&self, text: &str) -> Result<Decimal, AmountError> {
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
            return Err(AmountError::NotADecimal);
        }
        if text.ends_with('.') {
            return Err(AmountError::NotADecimal);
        }
        if fraction.len() > self.exponent as usize {
            return Err(AmountError::TooManyFractionDigits {
                allowed: self.exponent,
            });
        }
        if whole.len() > 15 {
            return Err(AmountError::TooLarge);
        }
        text.parse::<Decimal>()
            .map_err(|_| AmountError::NotADecimal)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.alpha)
    }
}

/// Why a decimal amount was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmountError {
    /// Not a plain non-negative decimal like "150.00".
    NotADecimal,
    /// More digits after the point than the currency's exponent.
    TooManyFractionDigits {
        /// The currency's exponent.
        allowed: u32,
    },
    /// More than 15 integer digits.
    TooLarge,
}

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmountError::NotADecimal => {
                f.write_str("not a plain non-negative decimal such as \"150.00\"")
            }
            AmountError::TooManyFractionDigits { allowed } => {
                write!(
                    f,
                    "more than {allowed} digits after the decimal point for this currency"
                )
            }
            AmountError::TooLarge => f.write_str("more than 15 integer digits"),
        }
    }
}

impl std::error::Error for AmountError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(Currency::from_alpha("EUR").map(|c| c.exponent), Some(2));
        assert_eq!(Currency::from_alpha("JPY").map(|c| c.exponent), Some(0));
        assert_eq!(Currency::from_alpha("BHD").map(|c| c.exponent), Some(3));
        assert_eq!(
            Currency::from_numeric_ascii(b"978").map(|c| c.alpha),
            Some("EUR")
        );
        assert_eq!(Currency::from_numeric_ascii(b"97"), None);
        assert_eq!(Currency::from_alpha("XXX"), None);
    }

    #[test]
    fn minor_units_round_trip_exactly() {
        let eur = Currency::from_alpha("EUR").expect("EUR");
        let bhd = Currency::from_alpha("BHD").expect("BHD");
        let jpy = Currency::from_alpha("JPY").expect("JPY");
        assert_eq!(eur.from_minor(1234).to_string(), "12.34");
        assert_eq!(eur.to_minor(eur.from_minor(1234)), Some(1234));
        assert_eq!(bhd.to_minor("1.005".parse().expect("dec")), Some(1005));
        assert_eq!(jpy.to_minor("100".parse().expect("dec")), Some(100));
        assert_eq!(eur.to_minor("1.005".parse().expect("dec")), None);
    }

    #[test]
    fn parse_amount_never_rounds() {
        let eur = Currency::from_alpha("EUR").expect("EUR");
        assert_eq!(
            eur.parse_amount("150.00").map(|d| d.to_string()),
            Ok("150.00".into())
        );
        assert_eq!(
            eur.parse_amount("150").map(|d| d.to_string()),
            Ok("150".into())
        );
        assert_eq!(
            eur.parse_amount("1.005"),
            Err(AmountError::TooManyFractionDigits { allowed: 2 })
        );
        for bad in ["", "-1.00", "1e3", "1.", ".5", "1,00", " 1", "abc"] {
            assert!(eur.parse_amount(bad).is_err(), "{bad:?} accepted");
        }
    }
}
