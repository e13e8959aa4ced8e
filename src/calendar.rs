//! UTC calendar arithmetic and the two timestamp forms the project writes
//! (RFC 3339 for cmd/go, `YYYYMMDDTHHMMSSZ` for SigV4), without a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) nanos: u32,
}

impl Civil {
    /// Splits nanoseconds since the Unix epoch (negative allowed) into calendar fields.
    pub(crate) fn from_unix_nanos(nanos: i64) -> Civil {
        let secs = nanos.div_euclid(1_000_000_000);
        let sub = nanos.rem_euclid(1_000_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil { year, month, day, hour: rem / 3600, minute: rem / 60 % 60, second: rem % 60, nanos: sub }
    }

    /// The calendar fields of a `SystemTime`.
    pub fn from_system_time(time: SystemTime) -> Civil {
        Civil::from_unix_nanos(unix_nanos(time))
    }

    /// RFC 3339 with nanoseconds, as Go's `time.RFC3339Nano` (trailing zeros trimmed).
    pub fn rfc3339(&self) -> String {
        let mut out = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        out.push('Z');
        out
    }

    /// The SigV4 `x-amz-date` form, `20150830T123600Z`.
    pub(crate) fn amz_date(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Nanoseconds since the Unix epoch, saturating far outside ±292 years.
pub(crate) fn unix_nanos(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// The inverse of [`unix_nanos`].
pub(crate) fn from_unix_nanos(nanos: i64) -> SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}

/// Days since the Unix epoch of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 / ISO 8601 instant as credential endpoints write expiries:
/// `2021-09-21T04:16:53Z`, with optional fractional seconds and a `Z` or `±HH:MM` offset.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let t = text.trim();
    let (date, rest) = t.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut c = hms.splitn(3, ':');
    let hour: i64 = c.next()?.parse().ok()?;
    let minute: i64 = c.next()?.parse().ok()?;
    let second: i64 = c.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        format!("{digits:0<9}").parse().ok()?
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    // Seconds and nanoseconds apart: credential caches write expiries past 2262 (`3025-...`),
    // beyond what nanoseconds since the epoch hold in an i64.
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH.checked_add(Duration::new(secs, nanos)),
        Err(_) => Some(from_unix_nanos(secs.checked_mul(1_000_000_000)?.checked_add(i64::from(nanos))?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        let c = Civil::from_unix_nanos(0);
        assert_eq!(c.rfc3339(), "1970-01-01T00:00:00Z");
        // 2015-08-30T12:36:00Z, the SigV4 suite's timestamp.
        let c = Civil::from_unix_nanos(1_440_938_160 * 1_000_000_000);
        assert_eq!(c.amz_date(), "20150830T123600Z");
        // A leap day, with nanoseconds (go prints them trimmed).
        let c = Civil::from_unix_nanos(1_709_210_096_848_531_745);
        assert_eq!(c.rfc3339(), "2024-02-29T12:34:56.848531745Z");
        let c = Civil::from_unix_nanos(1_709_210_096_500_000_000);
        assert_eq!(c.rfc3339(), "2024-02-29T12:34:56.5Z");
        // Before the epoch.
        let c = Civil::from_unix_nanos(-1);
        assert_eq!(c.rfc3339(), "1969-12-31T23:59:59.999999999Z");
    }

    /// `SystemTime`'s resolution: 100 ns on Windows.
    const TICK: i64 = if cfg!(windows) { 100 } else { 1 };

    #[test]
    fn rfc3339_expiries() {
        let t = |s: &str| parse_rfc3339(s).map(|t| unix_nanos(t) / 1_000_000_000);
        assert_eq!(t("2021-09-21T04:16:53Z"), Some(1_632_197_813));
        assert_eq!(t("2009-02-13T23:31:30Z"), Some(1_234_567_890));
        assert_eq!(t("2021-09-21T06:16:53+02:00"), Some(1_632_197_813));
        assert_eq!(t("2024-02-29T12:34:56.5Z"), Some(1_709_210_096));
        let to_tick = |n: i64| n - n.rem_euclid(TICK);
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56.848531745Z").map(unix_nanos),
            Some(to_tick(1_709_210_096_848_531_745))
        );
        // Past 2262 (the SDKs' test data for login caches).
        let far = parse_rfc3339("3025-09-14T04:05:45Z").unwrap();
        assert_eq!(far.duration_since(UNIX_EPOCH).unwrap().as_secs(), 33_314_731_545);
        for bad in ["", "2021-13-01T00:00:00Z", "yesterday", "2021-09-21", "2021-09-21T04:16Z", "2021-09-21T04:16:53.x"]
        {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        // Every instant this module writes reads back.
        for n in [0i64, 1_709_210_096_848_531_745, 1_632_197_813_000_000_000] {
            assert_eq!(parse_rfc3339(&Civil::from_unix_nanos(n).rfc3339()).map(unix_nanos), Some(to_tick(n)));
        }
    }

    #[test]
    fn system_time_round_trips() {
        for n in [
            0i64,
            1,
            -1,
            1_709_210_096_848_531_745,
            -86_400_000_000_123,
            1_709_210_096_848_531_700,
            -86_400_000_000_100,
        ]
        .into_iter()
        .filter(|n| n.rem_euclid(TICK) == 0)
        {
            assert_eq!(unix_nanos(from_unix_nanos(n)), n);
        }
    }

    #[test]
    fn agrees_with_httpdate_for_many_days() {
        // httpdate is an independent implementation of the same calendar.
        for day in (0..40_000i64).step_by(37) {
            let secs = day * 86_400 + 3_723;
            let t = from_unix_nanos(secs * 1_000_000_000);
            let c = Civil::from_system_time(t);
            let parsed = httpdate::parse_http_date(&format!(
                "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
                ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(day % 7) as usize],
                c.day,
                ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
                    [c.month as usize - 1],
                c.year,
                c.hour,
                c.minute,
                c.second
            ))
            .unwrap();
            assert_eq!(parsed, t, "day {day}");
        }
    }
}
