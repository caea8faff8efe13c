//! What the profiler's once-a-second housekeeping (`Tracker::expire`) costs with a full
//! connection table: 65,536 connections (the default --max-connections) fed as the
//! probes would feed them, then timed passes with every connection busy and with every
//! one idle past --message-timeout. Run by `make bench` (bench/run.py), which puts the
//! figures in the README's table; `cargo run --release --example housekeeping [N]` alone
//! prints them as JSON.

use std::time::Instant;

use http_profiler::{http::Limits, record::Record, tracker::Tracker};
use http_profiler_common::{DIRECTION_RECV, DIRECTION_SEND, DataHeader};

#[path = "records.rs"]
mod records;
use records::data_header as header;

const PASSES: u32 = 50;
const TIMEOUT_NS: u64 = 30_000_000_000;
const FORGET_NS: u64 = 10 * TIMEOUT_NS;

/// Milliseconds one `expire(now)` takes, averaged over PASSES.
fn ms_per_pass(t: &mut Tracker, now_ns: u64) -> f64 {
    let mut out = Vec::new();
    let start = Instant::now();
    for _ in 0..PASSES {
        t.expire(now_ns, TIMEOUT_NS, FORGET_NS, &mut out);
    }
    start.elapsed().as_secs_f64() * 1e3 / f64::from(PASSES)
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(65536, |a| a.parse().expect("a number of connections"));
    let mut t = Tracker::new(Limits::default(), n as usize, usize::MAX);
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut out = Vec::new();
    let sock = |i: u64| 0xffff_8880_0000_0000 + i * 4096;
    let mut feed = |h: DataHeader, payload: &[u8]| {
        t.on_record(&Record::Data { header: h, payload }, &mut out);
        out.clear();
    };
    // One exchange on each connection, then a request on every third, so that the order
    // of last use is not the order of creation.
    for i in 0..n {
        feed(
            header(sock(i), DIRECTION_SEND, 0, request.len(), 1 + i),
            request,
        );
        feed(
            header(sock(i), DIRECTION_RECV, 0, response.len(), 1 + i),
            response,
        );
    }
    for i in (0..n).step_by(3) {
        let pos = request.len() as u64;
        feed(
            header(sock(i), DIRECTION_SEND, pos, request.len(), n + 1 + i),
            request,
        );
    }
    let last = 2 * n + 1;
    let busy = ms_per_pass(&mut t, last + 1_000_000);
    let idle = ms_per_pass(&mut t, last + TIMEOUT_NS + 1_000_000);
    assert_eq!(t.connections() as u64, n, "a pass forgot connections");
    println!(
        "{{\"connections\": {n}, \"busy_ms_per_pass\": {busy:.4}, \"idle_ms_per_pass\": {idle:.4}}}"
    );
}
