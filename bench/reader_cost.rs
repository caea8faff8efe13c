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

#[path = "reader_loop.rs"]
mod reader_loop;

const ROUNDS: usize = 7;

/// Nanoseconds per exchange over `exchanges` exchanges.
fn ns_per_exchange(exchanges: u64, with_raw: bool) -> f64 {
    let mut reader = reader_loop::Reader::new(with_raw);
    let started = Instant::now();
    reader.exchanges(0, exchanges);
    let ns = started.elapsed().as_nanos() as f64 / exchanges as f64;
    assert_eq!(reader.lines, 2 * exchanges, "every message became a line");
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
