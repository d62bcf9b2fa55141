//! Durations as Go's `time.ParseDuration` writes them (`30s`, `1h30m`, `1.5h`), which is
//! what pico's users know: parsed exactly, and rendered back for the canonical form.

use std::time::Duration;

/// Longest `-t` accepted: a year. Longer waits are certainly mistakes, and the cap keeps
/// deadline arithmetic far from overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Most fractional digits in one duration number. Exact integer arithmetic needs
/// `10^digits × 1h in ns` to fit in a `u128`; 25 digits is already far below a nanosecond of
/// the largest unit, so nobody needs more.
const MAX_FRACTION_DIGITS: u32 = 25;

/// Nanoseconds per duration unit, as Go's `time.ParseDuration` spells them (ASCII only).
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return None,
    })
}

/// Go's duration syntax without a sign: `0`, or groups of `<number><unit>` where the number
/// may have a fraction (`1h30m`, `1.5h`, `500ms`). Exact integer arithmetic, fractions of a
/// nanosecond truncated; `None` if malformed or over [`MAX_TIMEOUT`].
pub fn parse_duration(value: &str) -> Option<Duration> {
    if value == "0" {
        return Some(Duration::ZERO);
    }
    let max = MAX_TIMEOUT.as_nanos();
    let bytes = value.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    if bytes.is_empty() {
        return None;
    }
    while i < bytes.len() {
        let start = i;
        let mut whole: u128 = 0;
        while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            // Saturates on absurd inputs; the unit multiplication below then fails.
            whole = whole
                .saturating_mul(10)
                .saturating_add(u128::from(d - b'0'));
            i += 1;
        }
        let whole_digits = i - start;
        let mut frac: u128 = 0;
        let mut frac_digits: u32 = 0;
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
                if frac_digits == MAX_FRACTION_DIGITS {
                    return None;
                }
                frac = frac * 10 + u128::from(d - b'0');
                frac_digits += 1;
                i += 1;
            }
        }
        if whole_digits == 0 && frac_digits == 0 {
            return None;
        }
        let unit_start = i;
        while bytes
            .get(i)
            .is_some_and(|b| !b.is_ascii_digit() && *b != b'.')
        {
            i += 1;
        }
        let unit = unit_nanos(value.get(unit_start..i)?)?;
        let part = whole
            .checked_mul(unit)?
            .checked_add(frac * unit / 10u128.pow(frac_digits))?;
        total = total.checked_add(part)?;
        if total > max {
            return None;
        }
    }
    Some(Duration::from_nanos(u64::try_from(total).ok()?))
}

/// Whole milliseconds when exact (the common case reads well), else nanoseconds.
pub(super) fn render_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos % 1_000_000 == 0 {
        format!("{}ms", nanos / 1_000_000)
    } else {
        format!("{nanos}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("5s", ms(5000)),
            ("500ms", ms(500)),
            ("1h30m", ms(5_400_000)),
            ("1.5h", ms(5_400_000)),
            ("1m30s", ms(90_000)),
            (".5s", ms(500)),
            ("1.s", ms(1000)),
            ("1ns", Duration::from_nanos(1)),
            ("1us", Duration::from_micros(1)),
            ("1.0000000001s", ms(1000)),
            ("8760h", MAX_TIMEOUT),
            ("1h1h", ms(7_200_000)),
            (
                "0.333333333333333333333333h",
                Duration::from_nanos(1_199_999_999_999),
            ),
        ] {
            assert_eq!(parse_duration(text), Some(want), "{text}");
        }
    }

    #[test]
    fn invalid_durations() {
        let too_many_digits = format!("0.{}1s", "0".repeat(25));
        for text in [
            "",
            "5",
            "-5s",
            "+5s",
            "5 s",
            "s",
            ".s",
            "5x",
            "5sec",
            "1µs",
            "1h-1m",
            "5S",
            "00",
            "8760h1ns",
            "9999999999999999999999999999999999999999h",
            "1e3s",
            "5..5s",
            &too_many_digits,
        ] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }
}
