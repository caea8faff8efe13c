//! A steady stream of kept-alive exchanges costs the reader no heap allocation: records
//! go through the connection table, the parser, pairing and rendering as the profiler
//! runs them, the written messages go back to the tracker (`Tracker::recycle`), and an
//! allocator that counts this thread's allocations finds none once every connection has
//! seen a few exchanges.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

#[path = "../bench/reader_loop.rs"]
mod reader_loop;

/// Counts the allocations (and reallocations) of the thread that turned counting on;
/// other threads of the test harness allocate as they like.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: thread-locals may be gone while a thread exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations_in_steady_state(with_raw: bool) -> u64 {
    let mut reader = reader_loop::Reader::new(with_raw);
    let connections = reader_loop::CONNECTIONS;
    // Every connection opens, and its parsers, pairing queue and kept parts of lines
    // reach their working sizes.
    let warm_up = 10 * connections;
    reader.exchanges(0, warm_up);
    let measured = 20 * connections;
    COUNTING.with(|on| on.set(true));
    reader.exchanges(warm_up, measured);
    COUNTING.with(|on| on.set(false));
    assert_eq!(
        reader.lines,
        2 * (warm_up + measured),
        "every message became a line"
    );
    ALLOCATIONS.with(|n| n.replace(0))
}

#[test]
fn kept_alive_exchanges_allocate_nothing_once_warm() {
    assert_eq!(
        allocations_in_steady_state(true),
        0,
        "heap allocations over 1,000 exchanges with raw_payload"
    );
    assert_eq!(
        allocations_in_steady_state(false),
        0,
        "heap allocations over 1,000 exchanges without raw_payload"
    );
}
