//! Calendar arithmetic for µs timestamps: a proleptic Gregorian date from a
//! day count since 1970-01-01, and back.
//!
//! The CSV export, the EVE writer and the Kafka flow-row parser all turn
//! timestamps into dates or dates into timestamps; Howard Hinnant's
//! algorithms (<https://howardhinnant.github.io/date_algorithms.html>) do
//! it without a date crate, exactly for every day an `i64` of µs reaches.
//! One copy, tested here against a naive walk.

/// (year, month 1–12, day 1–31) of `days` since 1970-01-01
/// (`civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date (`days_from_civil`, the inverse of
/// [`civil_from_days`] for valid dates; callers check the date first).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = (m + 9) % 12; // month from March, [0, 11]
    let doy = (153 * mp + 2) / 5 + d - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Days since the epoch by the naive year/month walk.
    fn days_naive(year: i64, month: u32, day: u32) -> i64 {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let len = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut days = 0i64;
        if year >= 1970 {
            for y in 1970..year {
                days += if leap(y) { 366 } else { 365 };
            }
        } else {
            for y in year..1970 {
                days -= if leap(y) { 366 } else { 365 };
            }
        }
        for m in 1..month {
            days += len(year, m);
        }
        days + i64::from(day) - 1
    }

    #[test]
    fn both_directions_match_a_naive_walk() {
        for year in (1600..2500)
            .step_by(7)
            .chain([1900, 2000, 2038, 2100, 2400])
        {
            for month in 1..=12u32 {
                for day in [1, 28] {
                    let d = days_naive(year, month, day);
                    assert_eq!(civil_from_days(d), (year, month, day));
                    assert_eq!(days_from_civil(year, month, day), d);
                }
            }
        }
    }

    #[test]
    fn round_trip_over_the_whole_range() {
        // Every day an i64 of µs reaches, sampled, and the ends.
        let max_days = i64::MAX / 86_400_000_000;
        let step = usize::try_from(max_days / 50_000).unwrap_or(1);
        for d in (-max_days..=max_days)
            .step_by(step)
            .chain([-max_days - 1, 0])
        {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d, "day {d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
    }
}
