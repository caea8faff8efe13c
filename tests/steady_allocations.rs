//! A steady stream of kept-alive exchanges costs the reader no heap allocation: records
//! go through the connection table, the parser, pairing and rendering as the profiler
//! runs them, the written messages go back to the tracker (`Tracker::recycle`), and an
//! allocator that counts this thread's allocations finds none once every connection has
//! seen a few exchanges.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use http_profiler::{
    clock::WallClock,
    http::Limits,
    output::{self, Format},
    procinfo::ProcessCache,
    record::Record,
    redact::Redactor,
    tracker::Tracker,
};
use http_profiler_common::{DIRECTION_RECV, DIRECTION_SEND, DataHeader};

#[path = "../bench/records.rs"]
mod records;

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

const REQUEST: &[u8] = b"GET /items?page=2 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
User-Agent: steady/1.0\r\nAccept: */*\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: steady\r\nContent-Type: text/plain\r\n\
Content-Length: 17\r\nConnection: keep-alive\r\n\r\nhello from steady";
const CONNECTIONS: u64 = 20;
/// pid 1 always exists: its name and command line are read from /proc, as a served
/// process's are.
const PID: u32 = 1;

fn header(sock: u64, direction: u8, pos: u64, len: usize, ts: u64) -> DataHeader {
    let mut h = records::data_header(sock, direction, pos, len, ts);
    h.tgid = PID;
    h.tid = PID;
    h.local_port = 8080;
    h.remote_port = 40000 + sock as u16;
    h.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    h.remote_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    h
}

/// Allocations while `exchanges` more exchanges (after `start` of them) go through the
/// reader, spread over the connections in turn.
struct Reader {
    tracker: Tracker,
    procs: ProcessCache,
    clock: WallClock,
    format: Format,
    kept: output::Kept,
    emitted: Vec<http_profiler::tracker::Emitted>,
    out: Vec<u8>,
    lines: u64,
}

impl Reader {
    fn new(with_raw: bool) -> Self {
        Self {
            tracker: Tracker::new(Limits::default(), 4096, usize::MAX),
            procs: ProcessCache::default(),
            clock: WallClock::now(),
            format: Format {
                with_raw,
                redact: Redactor::new::<&str>(&[]),
            },
            kept: output::Kept::default(),
            emitted: Vec::new(),
            out: Vec::with_capacity(1 << 20),
            lines: 0,
        }
    }

    fn exchanges(&mut self, start: u64, exchanges: u64) {
        for i in start..start + exchanges {
            let sock = 1 + i % CONNECTIONS;
            let round = i / CONNECTIONS;
            let ts = 1_000_000 + i * 50_000;
            for (direction, bytes) in [(DIRECTION_RECV, REQUEST), (DIRECTION_SEND, RESPONSE)] {
                let pos = round * bytes.len() as u64;
                let h = header(sock, direction, pos, bytes.len(), ts + u64::from(direction));
                self.procs.observe(h.tgid, &h.comm);
                let record = Record::Data {
                    header: h,
                    payload: bytes,
                };
                self.tracker.on_record(&record, &mut self.emitted);
                for e in &self.emitted {
                    output::render_into(
                        &mut self.out,
                        e,
                        &self.procs,
                        &self.clock,
                        &self.format,
                        &mut self.kept,
                    );
                    self.out.push(b'\n');
                    self.lines += 1;
                }
                self.tracker.recycle(&mut self.emitted);
                // As the sink hands its buffer to write(2) when it fills.
                if self.out.len() > (1 << 20) - 8192 {
                    self.out.clear();
                }
            }
        }
    }
}

fn allocations_in_steady_state(with_raw: bool) -> u64 {
    let mut reader = Reader::new(with_raw);
    // Every connection opens, and its parsers, pairing queue and kept parts of lines
    // reach their working sizes.
    let warm_up = 10 * CONNECTIONS;
    reader.exchanges(0, warm_up);
    let measured = 50 * CONNECTIONS;
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
