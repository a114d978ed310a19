//! XEP-0082 DateTime profile (`CCYY-MM-DDThh:mm:ss[.sss]TZD`), converted to and
//! from `SystemTime` with proleptic Gregorian day arithmetic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: i64 = 86_400;

/// `t` in UTC with millisecond precision, e.g. `1969-07-21T02:56:15.000Z`.
pub fn format_datetime(t: SystemTime) -> String {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => (after.as_secs() as i64, after.subsec_nanos()),
        Err(e) => {
            // Before the epoch: floor to whole seconds so the fraction stays positive.
            let before = e.duration();
            let secs = -(before.as_secs() as i64);
            match before.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    };
    let days = secs.div_euclid(SECONDS_PER_DAY);
    let of_day = secs.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        nanos / 1_000_000
    )
}

/// Parse a DateTime with a `Z` or `±hh:mm` zone and optional fractional seconds
/// (digits beyond nanoseconds are ignored). None for anything else.
pub fn parse_datetime(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut rest = &b[19..];
    let mut nanos: u32 = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        for (i, &c) in fraction[..len].iter().take(9).enumerate() {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
        }
        rest = &fraction[len..];
    }
    let offset = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            // XML Schema bounds zone offsets to ±14:00.
            if hours > 14 || minutes > 59 || (hours == 14 && minutes != 0) {
                return None;
            }
            let offset = (hours * 3600 + minutes * 60) as i64;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };

    // The local time minus its offset from UTC is the UTC instant.
    let secs = days_from_civil(year as i64, month, day) * SECONDS_PER_DAY
        + (hour * 3600 + minute * 60 + second) as i64
        - offset;
    if secs >= 0 {
        Some(UNIX_EPOCH + Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

/// A run of ASCII digits as a number; None if any byte is not a digit.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01. Years are counted from March so that the leap day
/// falls at the end of a year, making month lengths a fixed pattern.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719468 days separate 0000-03-01 from 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> SystemTime {
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    }

    #[test]
    fn epoch_formats_and_parses() {
        assert_eq!(format_datetime(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
    }

    #[test]
    fn xep0082_moon_landing_examples_are_the_same_instant() {
        let utc = parse_datetime("1969-07-21T02:56:15Z").expect("UTC example");
        let houston = parse_datetime("1969-07-20T21:56:15-05:00").expect("Houston example");
        assert_eq!(utc, houston);
        assert_eq!(utc, at(-14_159_025));
        assert_eq!(format_datetime(utc), "1969-07-21T02:56:15.000Z");
    }

    #[test]
    fn xep0202_example_parses() {
        assert_eq!(
            parse_datetime("2006-12-19T17:58:35Z"),
            Some(at(1_166_551_115))
        );
    }

    #[test]
    fn positive_offsets_are_ahead_of_utc() {
        assert_eq!(
            parse_datetime("2024-01-01T07:00:00+07:00"),
            parse_datetime("2024-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_datetime("2023-12-31T23:30:00-00:30"),
            parse_datetime("2024-01-01T00:00:00Z")
        );
    }

    #[test]
    fn leap_years_follow_the_gregorian_rules() {
        assert!(parse_datetime("2024-02-29T12:00:00Z").is_some());
        assert!(parse_datetime("2000-02-29T12:00:00Z").is_some());
        assert!(parse_datetime("2023-02-29T12:00:00Z").is_none());
        assert!(parse_datetime("1900-02-29T12:00:00Z").is_none());
        assert_eq!(format_datetime(at(951_782_400)), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_datetime(at(951_868_800)), "2000-03-01T00:00:00.000Z");
        assert_eq!(
            format_datetime(at(4_107_542_399)),
            "2100-02-28T23:59:59.000Z"
        );
        assert_eq!(
            format_datetime(at(4_107_542_400)),
            "2100-03-01T00:00:00.000Z"
        );
    }

    #[test]
    fn fractional_seconds_are_read_and_written_as_milliseconds() {
        let t = parse_datetime("2009-02-13T23:31:30.123456789Z").expect("fraction");
        assert_eq!(t, UNIX_EPOCH + Duration::new(1_234_567_890, 123_456_789));
        assert_eq!(format_datetime(t), "2009-02-13T23:31:30.123Z");
        assert_eq!(
            parse_datetime("2009-02-13T23:31:30.5Z"),
            Some(UNIX_EPOCH + Duration::new(1_234_567_890, 500_000_000))
        );
        // Digits beyond nanoseconds carry no meaning here and are dropped.
        assert_eq!(
            parse_datetime("2009-02-13T23:31:30.1234567891Z"),
            Some(UNIX_EPOCH + Duration::new(1_234_567_890, 123_456_789))
        );
    }

    #[test]
    fn fractions_before_the_epoch_format_forward_from_the_second() {
        let t = UNIX_EPOCH - Duration::from_millis(250);
        assert_eq!(format_datetime(t), "1969-12-31T23:59:59.750Z");
        assert_eq!(parse_datetime("1969-12-31T23:59:59.750Z"), Some(t));
    }

    #[test]
    fn round_trip_over_many_days() {
        let mut secs = -3_000_000_000i64;
        while secs < 5_000_000_000 {
            let t = at(secs) + Duration::from_millis(321);
            assert_eq!(parse_datetime(&format_datetime(t)), Some(t), "{secs}");
            secs += 7_777_777;
        }
    }

    #[test]
    fn malformed_datetimes_are_rejected() {
        for bad in [
            "",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01 00:00:00Z",
            "20240101T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00+15:00",
            "2024-01-01T00:00:00+01:60",
            "2024-01-01T00:00:00Zjunk",
            "+024-01-01T00:00:00Z",
            "2024-01-01T00:00:00z",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }
}
