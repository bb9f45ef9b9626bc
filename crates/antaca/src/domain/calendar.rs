//! Civil dates from Unix time, without a clock: callers pass the time in.

/// A calendar date (proleptic Gregorian, UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month 1–12.
    pub month: u32,
    /// Day 1–31.
    pub day: u32,
}

/// The UTC date of `ms` milliseconds since the Unix epoch.
pub fn date_of_ms(ms: u64) -> Date {
    let days = i64::try_from(ms / 86_400_000).unwrap_or(i64::MAX / 2);
    civil_from_days(days)
}

/// The date `days` days after 1970-01-01.
pub fn civil_date(days: i64) -> Date {
    civil_from_days(days)
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a date.
fn civil_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Date {
        year: i32::try_from(year).unwrap_or(i32::MAX),
        month: u32::try_from(month).unwrap_or(1),
        day: u32::try_from(day).unwrap_or(1),
    }
}

/// Days since 1970-01-01 of a date (inverse of `civil_from_days`).
pub fn days_from_civil(date: Date) -> i64 {
    let year = i64::from(date.year) - i64::from(date.month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(date.month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(date.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date a month-and-day (as a transmission date-time carries it, without a
/// year) most likely means, given today: the candidate year closest to `today`.
pub fn infer_year(month: u32, day: u32, today: Date) -> Date {
    let today_days = days_from_civil(today);
    [today.year - 1, today.year, today.year + 1]
        .into_iter()
        .map(|year| Date { year, month, day })
        .min_by_key(|d| (days_from_civil(*d) - today_days).abs())
        .unwrap_or(today)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(
            date_of_ms(0),
            Date {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        // 2026-11-25T00:00:00Z
        assert_eq!(
            date_of_ms(1_795_564_800_000),
            Date {
                year: 2026,
                month: 11,
                day: 25
            }
        );
        assert_eq!(
            date_of_ms(951_782_400_000),
            Date {
                year: 2000,
                month: 2,
                day: 29
            }
        );
        for days in [-1000, 0, 59, 60, 10_957, 20_000, 40_000] {
            assert_eq!(days_from_civil(civil_from_days(days)), days);
        }
    }

    #[test]
    fn year_is_inferred_around_new_year() {
        let today = Date {
            year: 2027,
            month: 1,
            day: 1,
        };
        assert_eq!(infer_year(12, 31, today).year, 2026);
        assert_eq!(infer_year(1, 2, today).year, 2027);
        let today = Date {
            year: 2026,
            month: 12,
            day: 31,
        };
        assert_eq!(infer_year(1, 1, today).year, 2027);
    }
}
