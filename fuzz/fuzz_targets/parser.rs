//! One connection end's two parsers and their pairing, fed arbitrary pieces, gaps (lost or
//! omitted bytes) and ends (close, timeout, shutdown), as the connection table drives them.

#![no_main]

use http_profiler::{
    clock::WallClock,
    http::{ChunkMeta, Incomplete, Missing, Parser},
    pairing::Pairing,
    procinfo::ProcessCache,
    tracker::{Emitted, Endpoints},
};
use http_profiler_fuzz::{Input, check, limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let mut input = Input::new(raw);
    let limits = limits(input.config);
    let mut parsers = [Parser::new(limits), Parser::new(limits)];
    let mut pairing = Pairing::default();
    let procs = ProcessCache::default();
    let clock = WallClock::from_offset(0);
    let endpoints = Endpoints {
        local: [127, 0, 0, 1].into(),
        local_port: 8080,
        remote: [10, 0, 0, 2].into(),
        remote_port: 40000,
    };
    let mut found = Vec::new();
    let mut now = 0u64;
    let step = |found: &mut Vec<_>, dir: usize| {
        for paired in found.drain(..) {
            let e = Emitted {
                paired,
                direction: dir as u8,
                conn_id: 1,
                endpoints,
            };
            check(&e, limits, &procs, &clock);
        }
    };
    while let Some(op) = input.next_op() {
        let dir = (op.selector & 1) as usize;
        now += 1_000;
        let meta = ChunkMeta {
            timestamp_ns: now,
            tgid: 1,
            tid: 2,
        };
        let mut sink = pairing.sink(&mut found);
        match op.kind % 4 {
            0 | 1 => parsers[dir].feed(input.take(op.len as usize), meta, &mut sink),
            2 => {
                let why = if op.selector & 2 == 0 {
                    Missing::Lost
                } else {
                    Missing::Omitted("sendfile")
                };
                parsers[dir].gap(
                    op.len as u64 * (1 + (op.selector >> 2) as u64),
                    why,
                    &mut sink,
                );
            }
            _ => {
                let why = match op.selector >> 1 & 3 {
                    0 => Incomplete::Closed,
                    1 => Incomplete::Timeout,
                    2 => Incomplete::Shutdown,
                    _ => Incomplete::Gap,
                };
                parsers[dir].end(why, &mut sink);
            }
        }
        step(&mut found, dir);
    }
    let meta = ChunkMeta::default();
    parsers[0].feed(input.rest(), meta, &mut pairing.sink(&mut found));
    step(&mut found, 0);
    for (dir, parser) in parsers.iter_mut().enumerate() {
        parser.end(Incomplete::Closed, &mut pairing.sink(&mut found));
        step(&mut found, dir);
    }
});
