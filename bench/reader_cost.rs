//! What the reader's own work costs per exchange, without a kernel: records of nginx
//! answering wrk on 50 kept-alive connections go through the connection table, the HTTP
//! parser, pairing, redaction and rendering with `raw_payload`, as the profiler does them
//! with its defaults. Not counted: reading the ring buffer and writing the file. Timed on
//! one CPU with nothing else to wait for, so it varies less than the live figures, but
//! still with what else the machine runs; the instructions it executes per exchange,
//! which `make bench` (bench/run.py) also counts under callgrind, do not, and show a
//! change in the reader from one table to the next on one kind of CPU.
//! `cargo run --release --example reader_cost [EXCHANGES [ROUNDS]] [--no-raw-payload]`
//! alone prints the figure as JSON.

use std::time::Instant;

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

#[path = "records.rs"]
mod records;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:34927\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Thu, 26 Nov 2026 18:11:50 GMT\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\
Connection: keep-alive\r\n\r\nhello from nginx\n";
const CONNECTIONS: u64 = 50;
const ROUNDS: usize = 7;
/// pid 1 always exists, so its name and command line are read from /proc as a served
/// process's would be.
const PID: u32 = 1;

fn header(sock: u64, direction: u8, pos: u64, len: usize, ts: u64) -> DataHeader {
    let mut h = records::data_header(sock, direction, pos, len, ts);
    h.tgid = PID;
    h.tid = PID;
    h.local_port = 34927;
    h.remote_port = 40000 + sock as u16;
    h.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    h.remote_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    h.comm[..5].copy_from_slice(b"nginx");
    h
}

/// Nanoseconds per exchange over `exchanges` exchanges.
fn ns_per_exchange(exchanges: u64, with_raw: bool) -> f64 {
    let mut tracker = Tracker::new(Limits::default(), 4096, usize::MAX);
    let mut procs = ProcessCache::default();
    let clock = WallClock::now();
    let format = Format {
        with_raw,
        redact: Redactor::new::<&str>(&[]),
    };
    let (mut emitted, mut out) = (Vec::new(), Vec::with_capacity(1 << 20));
    let mut kept = output::Kept::default();
    let mut lines = 0;
    let started = Instant::now();
    for i in 0..exchanges {
        let sock = 1 + i % CONNECTIONS;
        let round = i / CONNECTIONS;
        let ts = 1_000_000 + i * 50_000;
        for (direction, bytes) in [(DIRECTION_RECV, REQUEST), (DIRECTION_SEND, RESPONSE)] {
            let pos = round * bytes.len() as u64;
            let h = header(sock, direction, pos, bytes.len(), ts + u64::from(direction));
            procs.observe(h.tgid, &h.comm);
            let record = Record::Data {
                header: h,
                payload: bytes,
            };
            tracker.on_record(&record, &mut emitted);
            for e in &emitted {
                output::render_into(&mut out, e, &procs, &clock, &format, &mut kept);
                out.push(b'\n');
                lines += 1;
            }
            tracker.recycle(&mut emitted);
            // As the sink hands its buffer to write(2) when it fills.
            if out.len() > (1 << 20) - 8192 {
                std::hint::black_box(&out);
                out.clear();
            }
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / exchanges as f64;
    assert_eq!(lines, 2 * exchanges, "every message became a line");
    ns
}

fn main() {
    // `--no-raw-payload`, anywhere: the lines without raw_payload, as that option writes them.
    let (flags, numbers): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let with_raw = match flags.as_slice() {
        [] => true,
        [flag] if flag == "--no-raw-payload" => false,
        other => panic!("unknown options {other:?}: the only one is --no-raw-payload"),
    };
    let mut numbers = numbers.into_iter();
    let exchanges: u64 = numbers
        .next()
        .map_or(200_000, |a| a.parse().expect("a number of exchanges"));
    let rounds: usize = numbers
        .next()
        .map_or(ROUNDS, |a| a.parse().expect("a number of rounds"));
    // The fastest round: the others were slowed by what else ran on the machine.
    let best = (0..rounds)
        .map(|_| ns_per_exchange(exchanges, with_raw))
        .fold(f64::INFINITY, f64::min);
    println!(
        "{{\"exchanges\": {exchanges}, \"rounds\": {rounds}, \"raw_payload\": {with_raw}, \"ns_per_exchange\": {best:.0}}}"
    );
}
