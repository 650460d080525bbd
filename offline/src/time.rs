//! Times given on the command line.

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
}
