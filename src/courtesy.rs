//! Giving the CPU back to the services being watched while reading the ring buffer.
//!
//! Records wait in the ring buffer, so the profiler needs throughput, not promptness,
//! while a service waiting for a CPU the profiler holds shows it in its tail latency:
//! draining a 10 ms batch in one go put nginx's p99 at 20k requests/s at twice its
//! baseline. Yielding every 8 records (about four exchanges, some 12 us of work) keeps
//! each hold short: against every 32, it took nginx's 60 s p99 at 20k requests/s from
//! +6.5% to +2.9% over its baseline, for ~4% more of the profiler's CPU. The price
//! depends on the machine: on an AMD EPYC with retpolines and Safe RET, every 8 against
//! every 32 cost 57.5 against 54.0 millicores per 10k exchanges/s at 20k/s (medians of 5
//! rounds of 20 s) and 64 against 52 at 5k/s (3 rounds; never yielding: 51; the yields
//! added 0.5 us of system time per exchange there), while nginx's p99 at 20k/s was 1.45
//! against 1.85 ms (baseline 1.45). Most of those yields found nobody waiting (under
//! that load, 5 to 7 in 100 gave the CPU away) and cost the profiler a syscall each, so
//! the interval now doubles after each yield that found nobody, up to 64 records, and
//! goes back to 8 after one that gave the CPU away. A profiler that is falling behind
//! (a drain that reads much, or takes long) stops yielding until a drain finds little
//! again: yielding then would starve it, and records would be dropped.
//!
//! All of this is for a reader under SCHED_BATCH. Where it can run under SCHED_IDLE
//! (`standing`), any thread that wakes takes its CPU at once and it does not yield.

use std::time::{Duration, Instant};

/// When a drain yields the CPU.
#[derive(Clone, Copy, Debug)]
pub struct Courtesy {
    /// Records between two yields while yields find threads waiting for the CPU.
    pub min_every: u32,
    /// Records between two yields after yields have found none: each yield that found
    /// nobody waiting doubles the interval, up to this; one that gave the CPU away
    /// brings it back to `min_every`.
    pub max_every: u32,
    /// A drain that reads this many bytes, or lasts `behind_after`, is behind.
    pub behind_bytes: u64,
    pub behind_after: Duration,
    /// The last drain ended behind: this one keeps the CPU from its start.
    behind: bool,
    /// Records between two yields now.
    every: u32,
    /// Records read since the last yield, or since the drain began.
    since_yield: u32,
}

/// A yield that lasted this long gave the CPU to another thread, which ran its turn;
/// one that found nobody waiting returns in about a microsecond (0.6 to 1.3 us here,
/// with the syscall mitigations of an AMD EPYC; those that switched lasted 10 us and
/// more, most of them about 100 us).
const GAVE_THE_CPU_AWAY: Duration = Duration::from_micros(5);

impl Courtesy {
    /// For a ring buffer of `ring_bytes`: behind once a thirty-second of it was waiting,
    /// or once a drain takes as long as the 10 ms between two timed drains.
    pub fn for_ring(ring_bytes: u32) -> Self {
        Self {
            min_every: 8,
            max_every: 64,
            behind_bytes: ring_bytes as u64 / 32,
            behind_after: Duration::from_millis(10),
            behind: false,
            every: 8,
            since_yield: 0,
        }
    }

    fn is_behind(&self, bytes: u64, elapsed: Duration) -> bool {
        self.behind || bytes >= self.behind_bytes || elapsed >= self.behind_after
    }

    /// Whether to yield after one more record of a drain that has read `bytes` so far;
    /// `elapsed` (the drain's duration) is asked only when a yield is due.
    pub fn should_yield(&mut self, bytes: u64, elapsed: impl FnOnce() -> Duration) -> bool {
        self.since_yield += 1;
        if self.since_yield < self.every {
            return false;
        }
        self.since_yield = 0;
        !self.is_behind(bytes, elapsed())
    }

    /// A yield returned after `took`: the next comes sooner if it gave the CPU away
    /// (someone was waiting, and is likely to be again), later if it found nobody.
    pub fn yielded(&mut self, took: Duration) {
        self.every = if took >= GAVE_THE_CPU_AWAY {
            self.min_every
        } else {
            (self.every * 2).min(self.max_every)
        };
    }

    /// Whether the last drain ended caught up (see `drained`).
    pub fn caught_up(&self) -> bool {
        !self.behind
    }

    /// A drain that reads less than this has caught up: a quarter of `behind_bytes`.
    pub fn caught_up_bytes(&self) -> u64 {
        self.behind_bytes / 4
    }

    /// A drain ended: the next one starts behind if this one was, unless this one has
    /// caught up.
    pub fn drained(&mut self, bytes: u64, elapsed: Duration) {
        self.since_yield = 0;
        self.behind = if bytes < self.caught_up_bytes() {
            false
        } else {
            self.is_behind(bytes, elapsed)
        };
    }
}

/// When the reader drains the ring buffer on its timer.
///
/// While records come, the sleep is sized so that a drain reads about `batch_bytes`,
/// between `busy` and `longest_busy`: the reader's cost per record falls as its batches
/// grow (its caches stay warm through a batch, and each wakeup is a context switch, dear
/// in a VM), so a slow stream is read every few tens of milliseconds rather than every
/// 10 ms. The batch stays under the size at which a drain counts as behind, so drains
/// still yield the CPU every few records. A reader under SCHED_IDLE (`standing`) holds up
/// no one and does not yield: its batches are `lowered_batch_bytes`, three times larger
/// (at 20k exchanges/s, 6 rounds: 2.0 against 2.37 us of CPU per exchange). After each
/// timed drain that finds nothing the sleep doubles, up to `idle`. Records still wake the reader at once where
/// it matters (a connection's first record, a ring an eighth full). Housekeeping rides
/// on the timed drains, so a drain woken by records may bring the next timed drain
/// sooner, never later.
#[derive(Clone, Copy, Debug)]
pub struct DrainPace {
    pub busy: Duration,
    pub longest_busy: Duration,
    pub idle: Duration,
    pub batch_bytes: u64,
    pub lowered_batch_bytes: u64,
    sleep: Duration,
    /// Bytes read by woken drains since the last timed drain.
    woken_bytes: u64,
}

impl DrainPace {
    /// For a ring buffer of `ring_bytes`: batches of the size at which a drain has
    /// caught up (`Courtesy::caught_up_bytes`), three quarters of the size at which it
    /// is behind under SCHED_IDLE, slept for between 10 and 50 ms; 100 ms while idle.
    pub fn for_ring(ring_bytes: u32) -> Self {
        let busy = Duration::from_millis(10);
        let batch_bytes = Courtesy::for_ring(ring_bytes).caught_up_bytes().max(1);
        Self {
            busy,
            longest_busy: Duration::from_millis(50),
            idle: Duration::from_millis(100),
            batch_bytes,
            lowered_batch_bytes: 3 * batch_bytes,
            // The first drain comes at the busy pace.
            sleep: busy,
            woken_bytes: 0,
        }
    }

    /// A drain woken by records read `bytes` and ended at `now`; the next timed drain is
    /// due at `deadline`. Returns an earlier deadline when the timer should move.
    pub fn woken(&mut self, bytes: u64, now: Instant, deadline: Instant) -> Option<Instant> {
        if bytes == 0 {
            return None;
        }
        self.woken_bytes += bytes;
        let sooner = now + self.busy;
        (sooner < deadline).then_some(sooner)
    }

    /// A timed drain read `bytes` and ended at `now`, the reader under SCHED_IDLE or not
    /// (`lowered`): when the next one is due.
    pub fn timed(&mut self, bytes: u64, now: Instant, lowered: bool) -> Instant {
        let read = bytes + std::mem::take(&mut self.woken_bytes);
        let batch_bytes = if lowered {
            self.lowered_batch_bytes
        } else {
            self.batch_bytes
        };
        self.sleep = if read == 0 {
            (self.sleep * 2).clamp(self.busy, self.idle)
        } else {
            // What the last sleep let in, scaled to a batch.
            self.sleep
                .mul_f64(batch_bytes as f64 / read as f64)
                .clamp(self.busy, self.longest_busy)
        };
        now + self.sleep
    }
}

/// Gives up the CPU to any runnable thread; the profiler stays runnable. Returns how
/// long the thread was away (see `Courtesy::yielded`).
pub fn yield_cpu() -> Duration {
    let start = Instant::now();
    // SAFETY: sched_yield takes no arguments and cannot fail on Linux.
    unsafe { libc::sched_yield() };
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// The sleeps a steady stream of `bytes_per_second` settles to.
    fn settled_sleep(pace: &mut DrainPace, bytes_per_second: f64) -> Duration {
        settled(pace, bytes_per_second, false)
    }

    fn settled(pace: &mut DrainPace, bytes_per_second: f64, lowered: bool) -> Duration {
        let t0 = Instant::now();
        let mut sleep = pace.busy;
        for _ in 0..20 {
            let read = (bytes_per_second * sleep.as_secs_f64()) as u64;
            sleep = pace.timed(read, t0, lowered) - t0;
        }
        sleep
    }

    #[test]
    fn a_slow_stream_is_read_in_larger_batches() {
        let mut pace = DrainPace::for_ring(16 << 20);
        assert_eq!(pace.batch_bytes, 128 << 10);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        // ~600 bytes of records per exchange: 20k, 5k and 1k exchanges/s.
        assert!((10.0..11.5).contains(&ms(settled_sleep(&mut pace, 12e6))));
        assert!((40.0..46.0).contains(&ms(settled_sleep(&mut pace, 3e6))));
        assert_eq!(settled_sleep(&mut pace, 0.6e6), 50 * MS);
        // A burst brings the busy pace back in one drain.
        assert_eq!(settled_sleep(&mut pace, 200e6), 10 * MS);
    }

    #[test]
    fn under_sched_idle_batches_are_three_times_larger() {
        let mut pace = DrainPace::for_ring(16 << 20);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        assert!((30.0..34.0).contains(&ms(settled(&mut pace, 12e6, true))));
        // Still under the size at which a drain counts as behind.
        assert!(pace.lowered_batch_bytes < Courtesy::for_ring(16 << 20).behind_bytes);
        // Raised again, the reader reads the usual batches.
        assert!((10.0..11.5).contains(&ms(settled(&mut pace, 12e6, false))));
    }

    #[test]
    fn a_small_ring_keeps_the_busy_pace() {
        let mut pace = DrainPace::for_ring(1 << 20);
        assert_eq!(settled_sleep(&mut pace, 3e6), 10 * MS);
    }

    #[test]
    fn drains_slow_down_while_idle_and_speed_up_on_records() {
        let t0 = Instant::now();
        let mut pace = DrainPace::for_ring(16 << 20);
        let idle: Vec<Duration> = (0..6).map(|_| pace.timed(0, t0, false) - t0).collect();
        assert_eq!(idle, [20, 40, 80, 100, 100, 100].map(|ms| ms * MS));
        // 100 ms let in 4 MiB: back to the busy pace at once.
        assert_eq!(pace.timed(4 << 20, t0, false) - t0, 10 * MS);
        assert_eq!(pace.timed(0, t0, false) - t0, 20 * MS);
    }

    #[test]
    fn records_found_by_woken_drains_count_toward_the_batch() {
        let t0 = Instant::now();
        let mut pace = DrainPace::for_ring(16 << 20);
        for _ in 0..4 {
            pace.timed(0, t0, false);
        }
        let deadline = t0 + 100 * MS;
        assert_eq!(pace.woken(0, t0, deadline), None);
        assert_eq!(pace.woken(4 << 20, t0, deadline), Some(t0 + 10 * MS));
        assert_eq!(
            pace.timed(0, t0, false) - t0,
            10 * MS,
            "read by the woken drain"
        );
        assert_eq!(pace.timed(0, t0, false) - t0, 20 * MS);
    }

    #[test]
    fn woken_drains_never_put_the_timed_drain_off() {
        let t0 = Instant::now();
        let mut pace = DrainPace::for_ring(16 << 20);
        let mut deadline = pace.timed(1 << 20, t0, false);
        // Records wake the reader every millisecond, for longer than a timed period.
        for ms in 1..40 {
            if let Some(sooner) = pace.woken(4096, t0 + ms * MS, deadline) {
                deadline = sooner;
            }
        }
        assert_eq!(deadline, t0 + 10 * MS);
    }

    /// The records after which a drain of `n` records yields, each yield lasting `away`.
    fn yields(c: &mut Courtesy, n: u32, away: impl Fn(u32) -> Duration) -> Vec<u32> {
        (1..=n)
            .filter(|&r| {
                let due = c.should_yield(4096, || MS);
                if due {
                    c.yielded(away(r));
                }
                due
            })
            .collect()
    }

    #[test]
    fn yields_further_apart_while_nobody_waits_for_the_cpu() {
        let mut c = Courtesy::for_ring(16 << 20);
        assert_eq!(c.behind_bytes, 512 << 10);
        let quick = |_| Duration::from_micros(1);
        assert_eq!(
            yields(&mut c, 300, quick),
            [8, 24, 56, 120, 184, 248],
            "8, 16, 32, then every 64"
        );
        // The next drain counts from its start, at the interval reached.
        c.drained(4096, MS);
        assert_eq!(yields(&mut c, 130, quick), [64, 128]);
    }

    #[test]
    fn a_yield_that_gave_the_cpu_away_brings_the_next_one_sooner() {
        let mut c = Courtesy::for_ring(16 << 20);
        // The yield after record 56 lets another thread run for 100 us.
        let away = |r| Duration::from_micros(if r == 56 { 100 } else { 1 });
        assert_eq!(
            yields(&mut c, 200, away),
            [8, 24, 56, 64, 80, 112, 176],
            "back to every 8, then doubling again"
        );
    }

    /// Whether a yield comes due within the first interval of a drain that has read
    /// `bytes` and lasted `elapsed`.
    fn due(c: &mut Courtesy, bytes: u64, elapsed: Duration) -> bool {
        (1..=c.min_every).any(|_| c.should_yield(bytes, || elapsed))
    }

    #[test]
    fn keeps_the_cpu_when_a_drain_reads_much_or_takes_long() {
        let fresh = || Courtesy::for_ring(16 << 20);
        assert!(due(&mut fresh(), (512 << 10) - 1, MS));
        assert!(!due(&mut fresh(), 512 << 10, MS));
        assert!(!due(&mut fresh(), 4096, 10 * MS));
    }

    #[test]
    fn stays_behind_across_drains_until_one_finds_little() {
        let mut c = Courtesy::for_ring(16 << 20);
        c.drained(600 << 10, 3 * MS);
        assert!(!due(&mut c, 0, Duration::ZERO), "behind carries over");
        c.drained(200 << 10, MS);
        assert!(!due(&mut c, 0, Duration::ZERO), "not yet caught up");
        c.drained(100 << 10, MS);
        assert!(due(&mut c, 0, Duration::ZERO), "caught up");
        c.drained(4096, 20 * MS);
        assert!(
            due(&mut c, 0, Duration::ZERO),
            "little to read is never behind"
        );
    }
}
