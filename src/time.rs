//! Packet time: the only clock the engine knows.
//!
//! Windows, baselines and detection never read the wall clock; they are driven by the timestamps the
//! capture source attaches to each frame, so a replay gives the same alerts at any speed.

use std::fmt;

/// A point in packet time: nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Nanoseconds in one second.
    pub const NANOS_PER_SEC: u64 = 1_000_000_000;

    /// The latest packet time the engine works with (2262-04-11, `i64::MAX` nanoseconds): later
    /// stamps (a pcapng `if_tsoffset` or 64-bit timestamp can say anything) are clamped to it, so
    /// tick and window arithmetic keeps half the range as headroom and never saturates.
    pub const LATEST: Timestamp = Timestamp(i64::MAX as u64);

    /// `self`, or [`Timestamp::LATEST`] when later.
    pub fn clamped(self) -> Timestamp {
        self.min(Self::LATEST)
    }

    /// The wall clock (live sources stamp what they read with it); 0 before 1970.
    pub fn now() -> Timestamp {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
            .unwrap_or_default()
    }

    /// Builds a timestamp from whole seconds and nanoseconds, saturating instead of overflowing.
    pub fn from_secs_nanos(secs: u64, nanos: u64) -> Self {
        Timestamp(
            secs.saturating_mul(Self::NANOS_PER_SEC)
                .saturating_add(nanos),
        )
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Seconds since the epoch, as a float (for JSON ids and rates).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / Self::NANOS_PER_SEC as f64
    }

    /// `self - earlier` in nanoseconds, zero if `earlier` is later.
    pub fn saturating_sub(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `self + nanos`, saturating.
    pub fn saturating_add(self, nanos: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 UTC with microseconds, e.g. `2025-11-25T14:43:10.250000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / Self::NANOS_PER_SEC;
        let micros = (self.0 % Self::NANOS_PER_SEC) / 1_000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to a (year, month, day) civil date (proleptic Gregorian).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl serde::Serialize for Timestamp {
    /// As its RFC 3339 text.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_micros() {
        let ts = Timestamp::from_secs_nanos(1_764_081_790, 250_000_123);
        assert_eq!(ts.to_string(), "2025-11-25T14:43:10.250000Z");
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
        // leap day
        let ts = Timestamp::from_secs_nanos(951_782_400, 0);
        assert_eq!(ts.to_string(), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(Timestamp::from_secs_nanos(u64::MAX, 5).0, u64::MAX);
        assert_eq!(Timestamp(5).saturating_sub(Timestamp(9)), 0);
        assert_eq!(Timestamp(u64::MAX).clamped(), Timestamp::LATEST);
        assert_eq!(Timestamp(7).clamped(), Timestamp(7));
    }
}
