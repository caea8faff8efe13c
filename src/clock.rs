//! Converts the probes' CLOCK_MONOTONIC timestamps to wall-clock time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to; both clocks exist on every Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC now, as bpf_ktime_get_ns reads it.
pub fn monotonic_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC)
}

/// The distance between the two clocks, taken again now and then so that wall-clock
/// steps (NTP) are followed.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset_ns: i128,
}

impl WallClock {
    pub fn now() -> Self {
        let mono = monotonic_ns();
        let real = now_ns(libc::CLOCK_REALTIME);
        Self {
            offset_ns: real as i128 - mono as i128,
        }
    }

    pub fn from_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    pub fn to_wall(&self, monotonic_ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.to_wall_ns(monotonic_ns))
    }

    /// Nanoseconds since the Unix epoch (0 for times before it).
    pub fn to_wall_ns(&self, monotonic_ns: u64) -> u64 {
        (monotonic_ns as i128 + self.offset_ns).max(0) as u64
    }
}

/// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-25T18:00:01.123456789Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut buf = [0u8; RFC3339_LEN];
    rfc3339_into(t, &mut buf).to_string()
}

/// Length of `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub const RFC3339_LEN: usize = 30;
const SECONDS_PREFIX: usize = 19;

thread_local! {
    /// The date and time of day of the last second formatted: every message of a busy
    /// second shares them, so only the nanoseconds are written per message.
    static LAST_SECOND: std::cell::Cell<(u64, [u8; SECONDS_PREFIX])> =
        const { std::cell::Cell::new((u64::MAX, [0; SECONDS_PREFIX])) };
}

/// Writes `t` as RFC 3339 (see `rfc3339`) into `buf` without allocating.
pub fn rfc3339_into(t: SystemTime, buf: &mut [u8; RFC3339_LEN]) -> &str {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339_ns_into(since.as_nanos().try_into().unwrap_or(u64::MAX), buf)
}

/// `rfc3339_into` for nanoseconds since the Unix epoch: one division instead of building
/// and comparing `SystemTime`s, on every line.
pub fn rfc3339_ns_into(unix_ns: u64, buf: &mut [u8; RFC3339_LEN]) -> &str {
    std::str::from_utf8(rfc3339_ns_ascii(unix_ns, buf)).expect("digits and ASCII punctuation")
}

/// `rfc3339_ns_into` as the ASCII bytes it writes, for the JSON writer, which takes them
/// as they are: checking them as UTF-8 was a percent of the reader's instructions.
pub fn rfc3339_ns_ascii(unix_ns: u64, buf: &mut [u8; RFC3339_LEN]) -> &[u8] {
    let secs = unix_ns / 1_000_000_000;
    let prefix = LAST_SECOND.with(|last| {
        let (cached, prefix) = last.get();
        if cached == secs {
            return prefix;
        }
        let whole = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs));
        let mut prefix = [0u8; SECONDS_PREFIX];
        prefix.copy_from_slice(&whole.to_string().as_bytes()[..SECONDS_PREFIX]);
        last.set((secs, prefix));
        prefix
    });
    buf[..SECONDS_PREFIX].copy_from_slice(&prefix);
    buf[SECONDS_PREFIX] = b'.';
    let mut nanos = (unix_ns % 1_000_000_000) as u32;
    for b in buf[SECONDS_PREFIX + 1..RFC3339_LEN - 1].iter_mut().rev() {
        *b = b'0' + (nanos % 10) as u8;
        nanos /= 10;
    }
    buf[RFC3339_LEN - 1] = b'Z';
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_stamps_become_wall_clock_time_not_1970() {
        let clock = WallClock::now();
        let wall = clock.to_wall(monotonic_ns());
        let drift = SystemTime::now()
            .duration_since(wall)
            .unwrap_or_else(|e| e.duration());
        assert!(drift < Duration::from_secs(1), "drift {drift:?}");
    }

    #[test]
    fn the_cached_second_formats_as_humantime_does() {
        // Across second boundaries, backwards in time and at whole seconds.
        for ns in [
            1_700_000_000_999_999_999u64,
            1_700_000_001_000_000_000,
            1_700_000_001_000_000_001,
            1_600_000_000_123_000_000,
            1_700_000_001_500_000_000,
            0,
        ] {
            let t = UNIX_EPOCH + Duration::from_nanos(ns);
            assert_eq!(
                rfc3339(t),
                humantime::format_rfc3339_nanos(t).to_string(),
                "{ns}"
            );
        }
    }

    #[test]
    fn formats_utc_with_nanoseconds() {
        let clock = WallClock::from_offset(1_700_000_000_000_000_000);
        assert_eq!(
            rfc3339(clock.to_wall(123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
    }
}
