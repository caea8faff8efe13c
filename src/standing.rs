//! The reader's scheduling policy: SCHED_IDLE while it keeps up, SCHED_BATCH while it
//! catches up.
//!
//! A SCHED_IDLE thread runs only on a CPU that no other thread wants, and any other
//! thread that wakes takes its CPU at once. Records wait in the ring buffer, so while the
//! reader keeps up that is all it needs: a service never waits behind it, it need not
//! yield every few records, and it reads larger batches (nginx at 20k requests/s, 8
//! interleaved rounds of 20 s: the reader's CPU 1.72 against 1.96 us per exchange as
//! SCHED_BATCH with its yields, nginx's p99 1.09 against 1.10 times its baseline's).
//! But on CPUs that other threads keep busy a SCHED_IDLE thread hardly runs: in the
//! closed loop of the benchmark, without the watchdog, it read one record in ten and
//! the ring buffer dropped the rest. So a watchdog thread, of the normal policy and
//! asleep until the reader's next timed drain is due, raises the reader to SCHED_BATCH
//! (the same share of CPU as any thread) when that drain is `grace` late; the reader goes back to SCHED_IDLE once it
//! has caught up and a hold has passed. The hold doubles each time the reader is raised
//! again soon after going back, so a machine that stays busy keeps it raised.

use std::{
    io,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::clock::monotonic_ns;

/// How late the reader's timed drain may be before the reader is raised.
pub const GRACE: Duration = Duration::from_millis(20);
/// The shortest and the longest the reader stays raised.
const HOLD_MIN: Duration = Duration::from_secs(1);
const HOLD_MAX: Duration = Duration::from_secs(32);
/// Raised again within this many holds of going back: the next hold is twice as long.
const SOON_AFTER: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Idle,
    Batch,
}

/// Sets the scheduling policy of thread `tid` (0: the calling thread).
pub fn set_policy(tid: i32, policy: Policy) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    let policy = match policy {
        Policy::Idle => libc::SCHED_IDLE,
        Policy::Batch => libc::SCHED_BATCH,
    };
    // SAFETY: param is a valid sched_param for the call; a bad tid fails with ESRCH.
    if unsafe { libc::sched_setscheduler(tid, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a thread of this process can leave SCHED_IDLE once in it: the kernel allows it
/// with CAP_SYS_NICE, or with an RLIMIT_NICE that permits the thread's nice value. Asked
/// of a thread started for the question, which exits stuck if the answer is no.
pub fn can_leave_idle() -> io::Result<()> {
    std::thread::spawn(|| {
        set_policy(0, Policy::Idle)?;
        set_policy(0, Policy::Batch)
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the thread asking panicked")))
}

/// How long the reader stays raised: at least `current` after being raised, which doubles
/// (up to a bound) when it is raised again soon after going back.
#[derive(Clone, Copy, Debug)]
pub struct Hold {
    min: Duration,
    max: Duration,
    current: Duration,
    raised_at: Option<Instant>,
    lowered_at: Option<Instant>,
}

impl Hold {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            current: min,
            raised_at: None,
            lowered_at: None,
        }
    }

    pub fn raised(&mut self, now: Instant) {
        let soon = self
            .lowered_at
            .is_some_and(|at| now.duration_since(at) < self.current * SOON_AFTER);
        self.current = if soon {
            (self.current * 2).min(self.max)
        } else {
            self.min
        };
        self.raised_at = Some(now);
    }

    /// Whether a reader raised by `raised` may go back at `now`.
    pub fn over(&self, now: Instant) -> bool {
        self.raised_at
            .is_some_and(|at| now.duration_since(at) >= self.current)
    }

    pub fn lowered(&mut self, now: Instant) {
        self.raised_at = None;
        self.lowered_at = Some(now);
    }

    pub fn current(&self) -> Duration {
        self.current
    }
}

/// Whether a drain due at `due_ns` is late by more than `grace` at `now_ns`.
pub fn late(due_ns: u64, now_ns: u64, grace: Duration) -> bool {
    now_ns >= due_ns.saturating_add(grace.as_nanos() as u64)
}

struct Shared {
    reader_tid: i32,
    /// CLOCK_MONOTONIC ns at which the reader's next timed drain is due.
    due_ns: AtomicU64,
    idle: AtomicBool,
    /// Held while the policy changes, so that the two threads never cross.
    hold: Mutex<Hold>,
    raised: AtomicU64,
    /// A raise failed and was reported: the watchdog asks again each `grace`, once said
    /// is enough.
    raise_failed: AtomicBool,
}

impl Shared {
    fn raise(&self, why: &str) {
        let mut hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
        if !self.idle.load(Ordering::Acquire) {
            return;
        }
        match set_policy(self.reader_tid, Policy::Batch) {
            Ok(()) => {
                hold.raised(Instant::now());
                self.idle.store(false, Ordering::Release);
                self.raised.fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "reader raised to SCHED_BATCH ({why}) for at least {:?}",
                    hold.current()
                );
            }
            Err(e) => {
                if !self.raise_failed.swap(true, Ordering::Relaxed) {
                    log::error!(
                        "the reader is falling behind and cannot leave SCHED_IDLE ({e}): records may be dropped"
                    );
                }
            }
        }
    }
}

/// The reader's side; see the module's text.
pub struct Standing {
    shared: Arc<Shared>,
}

impl Standing {
    /// Starts the watchdog and puts the calling thread (the reader) under SCHED_IDLE;
    /// fails, changing nothing, where the reader could not be raised again.
    pub fn start(grace: Duration) -> io::Result<Self> {
        can_leave_idle()?;
        // SAFETY: gettid has no preconditions.
        let reader_tid = unsafe { libc::gettid() };
        let shared = Arc::new(Shared {
            reader_tid,
            // Due now: until the reader says when its first drain is due, the watchdog
            // looks again within `grace`.
            due_ns: AtomicU64::new(monotonic_ns()),
            idle: AtomicBool::new(false),
            hold: Mutex::new(Hold::new(HOLD_MIN, HOLD_MAX)),
            raised: AtomicU64::new(0),
            raise_failed: AtomicBool::new(false),
        });
        // Started before the reader lowers itself: a thread inherits its creator's policy.
        // It holds the shared state weakly and ends once the reader's side is gone (also
        // when lowering fails below).
        let watched = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("reader-watchdog".into())
            .spawn(move || watch(&watched, grace))?;
        set_policy(0, Policy::Idle)?;
        shared.idle.store(true, Ordering::Release);
        Ok(Self { shared })
    }

    /// The reader's next timed drain is due at `deadline`.
    pub fn due(&self, deadline: Instant) {
        let from_now = deadline.saturating_duration_since(Instant::now());
        let due = monotonic_ns().saturating_add(from_now.as_nanos() as u64);
        self.shared.due_ns.store(due, Ordering::Release);
    }

    /// Whether the reader is under SCHED_IDLE now.
    pub fn idle(&self) -> bool {
        self.shared.idle.load(Ordering::Acquire)
    }

    /// A timed drain ended with the reader caught up (`caught_up`): a raised reader goes
    /// back to SCHED_IDLE once its hold is over.
    pub fn drained(&self, caught_up: bool) {
        if !caught_up || self.idle() {
            return;
        }
        let mut hold = self.shared.hold.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if !hold.over(now) {
            return;
        }
        match set_policy(0, Policy::Idle) {
            Ok(()) => {
                hold.lowered(now);
                self.shared.idle.store(true, Ordering::Release);
                log::debug!("reader caught up: back to SCHED_IDLE");
            }
            Err(e) => log::warn!("cannot put the reader back under SCHED_IDLE: {e}"),
        }
    }

    /// For the last drains at exit: they run raised, whatever the machine is doing.
    pub fn raise(&self) {
        self.shared.raise("stopping");
    }

    /// Times the reader was raised.
    pub fn times_raised(&self) -> u64 {
        self.shared.raised.load(Ordering::Relaxed)
    }
}

/// The watchdog: sleeps until the reader's timed drain is `grace` late and raises it if
/// it has not run that drain by then; ends when the reader's side is dropped.
fn watch(shared: &Weak<Shared>, grace: Duration) {
    while let Some(shared) = shared.upgrade() {
        let due = shared.due_ns.load(Ordering::Acquire);
        let now = monotonic_ns();
        if !late(due, now, grace) {
            let until = due.saturating_add(grace.as_nanos() as u64);
            let wait = Duration::from_nanos(until.saturating_sub(now)).min(Duration::from_secs(1));
            std::thread::sleep(wait.max(Duration::from_millis(1)));
            continue;
        }
        shared.raise("a timed drain is late");
        // Raised (or already so), the reader runs that drain and moves its deadline.
        std::thread::sleep(grace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_drain_is_late_only_past_the_grace() {
        let due = 1_000_000_000;
        assert!(!late(due, due, 20 * MS));
        assert!(!late(due, due + 19_999_999, 20 * MS));
        assert!(late(due, due + 20_000_000, 20 * MS));
    }

    #[test]
    fn the_hold_lasts_its_length_from_the_raise() {
        let t0 = Instant::now();
        let mut hold = Hold::new(1000 * MS, 8000 * MS);
        assert!(!hold.over(t0), "never raised: nothing to go back from");
        hold.raised(t0);
        assert!(!hold.over(t0 + 999 * MS));
        assert!(hold.over(t0 + 1000 * MS));
    }

    #[test]
    fn raised_again_soon_after_going_back_holds_twice_as_long_up_to_the_bound() {
        let t0 = Instant::now();
        let mut hold = Hold::new(1000 * MS, 4000 * MS);
        let mut t = t0;
        let mut lengths = vec![];
        for _ in 0..5 {
            hold.raised(t);
            lengths.push(hold.current().as_millis());
            t += hold.current();
            assert!(hold.over(t));
            hold.lowered(t);
            t += 100 * MS;
        }
        assert_eq!(lengths, [1000, 2000, 4000, 4000, 4000]);
    }

    #[test]
    fn raised_long_after_going_back_starts_over_at_the_shortest_hold() {
        let t0 = Instant::now();
        let mut hold = Hold::new(1000 * MS, 4000 * MS);
        hold.raised(t0);
        hold.lowered(t0 + 1000 * MS);
        hold.raised(t0 + 1500 * MS);
        assert_eq!(hold.current(), 2000 * MS);
        hold.lowered(t0 + 3500 * MS);
        // Ten holds (20 s) after going back: a new episode.
        hold.raised(t0 + 23_500 * MS);
        assert_eq!(hold.current(), 1000 * MS);
    }
}
