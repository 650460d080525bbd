//! Times on the command line: parsing what people type, printing what they read.

use quiver_engine::{Clock, SystemClock, MICROS_PER_SEC};

/// Parses a time into microseconds since the Unix epoch: `now`, an integer of seconds since
/// the epoch, or a UTC date/time `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.ffffff]][Z]` (a space
/// may replace the `T`).
pub fn parse_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t == "now" {
        return Ok(SystemClock.now_micros());
    }
    if let Ok(secs) = t.parse::<i64>() {
        return Ok(secs.saturating_mul(MICROS_PER_SEC));
    }
    let bad = || {
        format!(
            "{text:?} is not a time (use seconds since the epoch, \"now\", or \
             YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z] in UTC)"
        )
    };
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, clock) = match t.split_once(['T', ' ']) {
        Some((d, c)) => (d, Some(c)),
        None => (t, None),
    };
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (
        d.next()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(bad)?,
        d.next()
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(bad)?,
        d.next()
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(bad)?,
    );
    if !(1..=12).contains(&m) || day == 0 || day > days_in_month(y, m) {
        return Err(bad());
    }
    let mut micros = 0i64;
    if let Some(c) = clock {
        let (hms, frac) = match c.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (c, None),
        };
        let parts: Vec<&str> = hms.split(':').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad());
        }
        let num = |s: &str, max: i64| s.parse::<i64>().ok().filter(|v| (0..=max).contains(v));
        let h = num(parts[0], 23).ok_or_else(bad)?;
        let mi = num(parts[1], 59).ok_or_else(bad)?;
        let s = parts
            .get(2)
            .map_or(Some(0), |p| num(p, 59))
            .ok_or_else(bad)?;
        micros = ((h * 60 + mi) * 60 + s) * MICROS_PER_SEC;
        if let Some(f) = frac {
            if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let padded = format!("{f:0<6}");
            micros += padded[..6].parse::<i64>().map_err(|_| bad())?;
        }
    }
    Ok(days_from_civil(y, m, day) * 86_400 * MICROS_PER_SEC + micros)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time in microseconds since the Unix epoch as RFC 3339 in UTC:
/// `2023-11-14T22:13:20Z`, with `.ffffff` when it has a fraction of a second.
pub fn format_time(micros: i64) -> String {
    let secs = micros.div_euclid(MICROS_PER_SEC);
    let frac = micros.rem_euclid(MICROS_PER_SEC);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let clock = format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60);
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02}T{clock}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{clock}.{frac:06}Z")
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01: the inverse of
/// [`days_from_civil`] (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dates_times_and_epochs() {
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("1970-01-02"), Ok(86_400_000_000));
        assert_eq!(
            parse_time("2024-01-15T12:30:00Z"),
            Ok(1_705_321_800_000_000)
        );
        assert_eq!(
            parse_time("2024-01-15 12:30:00.25"),
            Ok(1_705_321_800_250_000)
        );
        assert_eq!(parse_time("2000-02-29"), Ok(951_782_400_000_000));
        assert!(parse_time("2023-02-29").is_err());
        assert!(parse_time("2024-13-01").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn formats_rfc3339_utc_and_parses_back() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_700_000_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(
            format_time(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(format_time(-1), "1969-12-31T23:59:59.999999Z");
        for t in [
            0,
            -86_400_000_000,
            951_782_400_000_000,
            1_705_321_800_250_000,
            4_102_444_799_999_999,
        ] {
            assert_eq!(parse_time(&format_time(t)), Ok(t), "{t}");
        }
        // Every day of four centuries maps back to itself.
        for days in -73_000..73_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
