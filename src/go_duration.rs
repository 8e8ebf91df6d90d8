//! Go's duration syntax (`30s`, `1m30s`, `2.5s`, `500ms`), both ways.
//!
//! Kamal and every existing script pass durations the way Go's `time.ParseDuration` reads
//! them, and users know the Go proxy's messages (`... timeout (30s)`), so the CLI parses and
//! the daemon formats exactly as Go does. A bare number is an error, as in Go.

use std::time::Duration;

/// Parses a Go duration string. Negative durations are rejected: nothing in the proxy
/// waits for a negative time, and Go would only turn them into "no wait".
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration \"{text}\"");
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err(format!("negative duration \"{text}\" is not allowed"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration \"{text}\"")),
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit}\" in duration \"{text}\""
                ))
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(invalid)?;
        let mut scale = unit_nanos;
        for digit in fraction.bytes() {
            scale /= 10;
            nanos += u128::from(digit - b'0') * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(invalid)?;
        rest = after;
    }
    // Go durations are int64 nanoseconds; keep the same ceiling.
    if total_nanos > i64::MAX as u128 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total_nanos as u64))
}

/// Formats like Go's `time.Duration.String()`: `30s`, `1m30s`, `2.5s`, `500ms`, `0s`.
pub fn format(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fractional(nanos, scale));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = nanos / 60_000_000_000 % 60;
    let seconds = fractional(nanos % 60_000_000_000, 1_000_000_000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{seconds}s"));
    out
}

/// `value / scale` with the fractional digits Go prints (trailing zeros dropped).
fn fractional(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let mut fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let mut digits = String::new();
    let mut step = scale / 10;
    while fraction > 0 && step > 0 {
        digits.push(char::from(b'0' + (fraction / step) as u8));
        fraction %= step;
        step /= 10;
    }
    format!("{whole}.{digits}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_kamal_and_users_send() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
    }

    #[test]
    fn rejects_a_bare_number_with_gos_message() {
        assert_eq!(
            parse("30"),
            Err("time: missing unit in duration \"30\"".into())
        );
    }

    #[test]
    fn rejects_garbage_and_negative_values() {
        assert!(parse("").is_err());
        assert!(parse("abc").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("1..5s").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("9999999999h").is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(30)), "30s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format(Duration::from_millis(500)), "500ms");
        assert_eq!(format(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_micros(1500)), "1.5ms");
    }
}
