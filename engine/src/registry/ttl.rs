//! TTL spellings: `"90m"`, `"1d"`, `"3600s"`, `"1h30m"`, or a bare integer of seconds.

/// Parses a TTL into seconds. Zero means "no TTL". Units: s, m, h, d, w.
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty TTL".into());
    }
    if t.starts_with('-') {
        return Err(format!("TTL {text:?} is negative"));
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(secs);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => {
                return Err(format!(
                    "TTL {text:?} has unknown unit {c:?} (use s, m, h, d or w, e.g. \"90m\")"
                ))
            }
        };
        if digits.is_empty() {
            return Err(format!("TTL {text:?}: unit {c:?} has no number before it"));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("TTL {text:?} is too large"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("TTL {text:?} is too large"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "TTL {text:?} ends in a number without a unit (use s, m, h, d or w)"
        ));
    }
    // Beyond ~292k years the microsecond arithmetic would overflow; nobody means that.
    if total > (i64::MAX / 1_000_000) as u64 {
        return Err(format!("TTL {text:?} is too large"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn accepts_units_and_combinations() {
        assert_eq!(parse_ttl("3600s"), Ok(3600));
        assert_eq!(parse_ttl("90m"), Ok(5400));
        assert_eq!(parse_ttl("1d"), Ok(86_400));
        assert_eq!(parse_ttl("2w"), Ok(1_209_600));
        assert_eq!(parse_ttl("1h30m"), Ok(5400));
        assert_eq!(parse_ttl("0"), Ok(0));
        assert_eq!(parse_ttl("42"), Ok(42));
    }

    #[test]
    fn rejects_bad_spellings() {
        assert!(parse_ttl("-5s").unwrap_err().contains("negative"));
        assert!(parse_ttl("1y").unwrap_err().contains("unknown unit"));
        assert!(parse_ttl("h").unwrap_err().contains("no number"));
        assert!(parse_ttl("15").is_ok());
        assert!(parse_ttl("1h5").unwrap_err().contains("without a unit"));
        assert!(parse_ttl("").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
    }
}
