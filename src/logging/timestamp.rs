//! RFC 3339 UTC timestamps with microseconds, written straight into a log line.
//!
//! Every request line starts with one, so it is built by arithmetic straight into the
//! line's buffer rather than through `fmt` and a temporary `String`. Its date and time of
//! day change once a second, not once a line: each thread keeps the last second it spelled
//! and, within that second, writes only the microseconds.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`: a whole timestamp, kept per second with its date and
/// time of day spelled, so a line only writes its microseconds.
type Text = [u8; 27];

thread_local! {
    /// The second last spelled on this thread, and its spelling (no second is `u64::MAX`).
    static LAST_SECOND: Cell<(u64, Text)> = const { Cell::new((u64::MAX, [0; 27])) };
}

/// Appends `now` as `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
pub fn push_rfc3339_micros(out: &mut Vec<u8>, now: SystemTime) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let mut text = LAST_SECOND.with(|last| match last.get() {
        (spelled, text) if spelled == seconds => text,
        _ => {
            let text = spell_second(seconds);
            last.set((seconds, text));
            text
        }
    });
    // Two digits at a time, from a table: half the divisions of one at a time.
    let micros = since_epoch.subsec_micros() as usize;
    text[20..22].copy_from_slice(&DIGIT_PAIRS[micros / 10_000 % 100]);
    text[22..24].copy_from_slice(&DIGIT_PAIRS[micros / 100 % 100]);
    text[24..26].copy_from_slice(&DIGIT_PAIRS[micros % 100]);
    out.extend_from_slice(&text);
}

/// `00` to `99`.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0; 2]; 100];
    let mut index = 0;
    while index < 100 {
        pairs[index] = [b'0' + (index / 10) as u8, b'0' + (index % 10) as u8];
        index += 1;
    }
    pairs
};

/// `seconds` since the epoch as `YYYY-MM-DDTHH:MM:SS.000000Z`.
fn spell_second(seconds: u64) -> Text {
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let second_of_day = seconds % 86_400;
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut text[0..4], u64::from(year));
    put_digits(&mut text[5..7], u64::from(month));
    put_digits(&mut text[8..10], u64::from(day));
    put_digits(&mut text[11..13], second_of_day / 3600);
    put_digits(&mut text[14..16], second_of_day / 60 % 60);
    put_digits(&mut text[17..19], second_of_day % 60);
    text
}

/// Writes `value` as exactly `slot.len()` decimal digits (zero-padded, high digits dropped).
fn put_digits(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    // Years stay far below u32::MAX for any SystemTime this process will see.
    (year as u32, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn spells_each_second_anew_when_lines_alternate_between_seconds() {
        let mut ours = Vec::new();
        for seconds in [1_700_000_000, 1_700_000_000, 1_700_000_001, 1_700_000_000] {
            let at = UNIX_EPOCH + Duration::new(seconds, 5_000);
            ours.clear();
            push_rfc3339_micros(&mut ours, at);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                humantime::format_rfc3339_micros(at).to_string()
            );
        }
    }

    #[test]
    fn matches_humantime_across_dates() {
        for seconds in [0, 951_782_400, 1_700_000_000, 1_795_000_123, 4_102_444_799] {
            for micros in [0, 7, 999_999] {
                let at = UNIX_EPOCH + Duration::new(seconds, micros * 1000);
                let mut ours = Vec::new();
                push_rfc3339_micros(&mut ours, at);
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    humantime::format_rfc3339_micros(at).to_string()
                );
            }
        }
    }
}
