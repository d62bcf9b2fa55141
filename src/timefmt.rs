//! RFC 3339 timestamps for JSON log lines (UTC, milliseconds), without a date crate: the
//! drains' notices and the tracing layer ([`crate::logship`]) need only this one format, and
//! the layer formats on the logging thread, so it appends without allocating.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: u64 = 86_400;

/// `2026-11-25T20:31:02.123Z`. Times before 1970 (a broken clock) print as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339(&mut out, t.duration_since(UNIX_EPOCH).unwrap_or_default());
    out
}

/// Appends `since_epoch` as RFC 3339 UTC with milliseconds.
pub fn push_rfc3339(out: &mut String, since_epoch: Duration) {
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
    let rem = secs % SECS_PER_DAY;
    push_digits(out, year, 4);
    out.push('-');
    push_digits(out, month, 2);
    out.push('-');
    push_digits(out, day, 2);
    out.push('T');
    push_digits(out, rem / 3600, 2);
    out.push(':');
    push_digits(out, rem / 60 % 60, 2);
    out.push(':');
    push_digits(out, rem % 60, 2);
    out.push('.');
    push_digits(out, u64::from(since_epoch.subsec_millis()), 3);
    out.push('Z');
}

/// Appends the last `width` decimal digits of `n`, zero-padded (no `fmt` on the hot path).
fn push_digits(out: &mut String, n: u64, width: u32) {
    for p in (0..width).rev() {
        let digit = (n / 10u64.pow(p) % 10) as u8;
        out.push(char::from(b'0' + digit));
    }
}

/// Year, month, day of the `days`-th day after 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01, so a leap day is the last day of its (March-based) year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> String {
        rfc3339(UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis))
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.001Z");
        assert_eq!(at(1_709_210_096, 789), "2024-02-29T12:34:56.789Z");
        assert_eq!(at(946_684_799, 999), "1999-12-31T23:59:59.999Z");
        assert_eq!(at(1_798_761_599, 0), "2026-12-31T23:59:59.000Z");
        assert_eq!(at(1_795_638_662, 123), "2026-11-25T20:31:02.123Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(253_402_300_799, 999), "9999-12-31T23:59:59.999Z");
    }
}
