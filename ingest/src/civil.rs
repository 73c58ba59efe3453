//! Calendar arithmetic for µs timestamps: a proleptic Gregorian date from a
//! day count since 1970-01-01, and back, and the one parser of UTC date and
//! time text.
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

/// Days in `month` (1–12) of `year` (proleptic Gregorian).
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS[.f…]` (or `T` for the space), UTC, with an
/// optional `Z`, `+00:00` or `+0000`, into µs since the epoch: the form the
/// CSV export writes. Fractions beyond µs are truncated. `None` for
/// anything else, an impossible date included.
pub fn parse_utc(text: &str) -> Option<i64> {
    let t = text.trim();
    let t = t
        .strip_suffix('Z')
        .or_else(|| t.strip_suffix("+00:00"))
        .or_else(|| t.strip_suffix("+0000"))
        .unwrap_or(t);
    let b = t.as_bytes();
    let at = |i: usize| b.get(i).copied();
    if b.len() < 19
        || at(4) != Some(b'-')
        || at(7) != Some(b'-')
        || !matches!(at(10), Some(b' ' | b'T'))
        || at(13) != Some(b':')
        || at(16) != Some(b':')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let month = u32::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
    let day = u32::try_from(day).ok()?;
    if day < 1 || day > days_in_month(year, month) || hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut micros = 0i64;
    if let Some(rest) = t.get(19..).filter(|r| !r.is_empty()) {
        let frac = rest.strip_prefix('.')?;
        if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        for c in frac.bytes().chain(std::iter::repeat(b'0')).take(6) {
            micros = micros * 10 + i64::from(c - b'0');
        }
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
    Some(secs * 1_000_000 + micros)
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
    fn utc_text_parses_in_every_accepted_form_and_nothing_else() {
        let base = 1_499_432_361_000_000;
        for t in [
            "2017-07-07 12:59:21",
            "2017-07-07T12:59:21",
            "2017-07-07 12:59:21Z",
            "2017-07-07 12:59:21+00:00",
            "2017-07-07 12:59:21+0000",
        ] {
            assert_eq!(parse_utc(t), Some(base), "{t}");
        }
        assert_eq!(parse_utc("2017-07-07 12:59:21.088203"), Some(base + 88_203));
        assert_eq!(
            parse_utc("2017-07-07 12:59:21.0882039"),
            Some(base + 88_203)
        );
        assert_eq!(
            parse_utc("2016-02-29 00:00:00"),
            Some(1_456_704_000_000_000)
        );
        for bad in [
            "2017-02-29 00:00:00",
            "2017-13-01 00:00:00",
            "2017-07-07 24:00:00",
            "2017-07-07 12:59",
            "2017-07-07 12:59:21.",
            "2017-07-07 12:59:21.1234567890",
            "2017/07/07 12:59:21",
            "+017-07-07 12:59:21",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
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
