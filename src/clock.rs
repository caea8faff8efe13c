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
        let ns = (monotonic_ns as i128 + self.offset_ns).max(0) as u64;
        UNIX_EPOCH + Duration::from_nanos(ns)
    }
}

/// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-25T18:00:01.123456789Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
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
    fn formats_utc_with_nanoseconds() {
        let clock = WallClock::from_offset(1_700_000_000_000_000_000);
        assert_eq!(
            rfc3339(clock.to_wall(123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
    }
}
