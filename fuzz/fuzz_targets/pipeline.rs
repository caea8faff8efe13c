//! The whole pure pipeline as the profiler runs it (src/stages.rs): records as the probes
//! write them (arbitrary syscall boundaries, both directions, several connections, lost
//! and uncopied bytes, repeats, closes, socket reuse, execs, timeouts) through the process
//! cache, the connection table, stream cursors, parsers, pairing and JSON output. Each
//! line is written as the profiler writes it, reusing the parts of the connection's last
//! lines that it keeps, and must be byte for byte the line written afresh.

#![no_main]

use http_profiler::{
    http::Limits, procinfo::ProcessCache, record::Record, stages::Stages, tracker::Tracker,
};
use http_profiler_common::{
    COMM_LEN, CloseRecord, DataHeader, ExecRecord, FLAG_LAST_CHUNK, FLAG_OMITTED_SENDFILE,
    FLAG_OMITTED_SPLICE, RecordKind,
};
use http_profiler_fuzz::{Input, check, formats, limits};
use libfuzzer_sys::fuzz_target;

const SOCKS: usize = 4;

/// Thread names the records carry: a name, none (sent before on that connection), another.
const NAMES: [[u8; COMM_LEN]; 3] = [
    *b"fuzz\0\0\0\0\0\0\0\0\0\0\0\0",
    [0; COMM_LEN],
    *b"exec'd\0\0\0\0\0\0\0\0\0\0",
];

struct Driver {
    stages: Stages,
    /// Which of `formats()` the stages write lines in.
    format: usize,
    limits: Limits,
    max_conns: usize,
    pos: [[u64; 2]; SOCKS],
    generation: [u32; SOCKS],
    /// Which of NAMES each connection's records carry.
    name: [usize; SOCKS],
    now: u64,
}

impl Driver {
    fn header(&self, sock: usize, dir: usize, pos: u64, len: usize) -> DataHeader {
        DataHeader {
            kind: RecordKind::Data as u32,
            flags: FLAG_LAST_CHUNK,
            tgid: 100 + sock as u32,
            tid: 200,
            fd: 3,
            generation: self.generation[sock],
            sock: 0x1000 + sock as u64,
            timestamp_ns: self.now,
            stream_pos: pos,
            syscall_bytes: len as u64,
            // The other direction's position as the probe would report it: where this
            // driver has got to, so losses the driver makes show on both sides.
            other_pos: self.pos[sock][1 - dir],
            syscall_offset: 0,
            data_len: len as u32,
            direction: dir as u8,
            _pad: 0,
            family: if sock % 2 == 0 { 2 } else { 10 },
            local_port: 8080,
            remote_port: 40000 + sock as u16,
            local_addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            remote_addr: [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            comm: NAMES[self.name[sock]],
        }
    }

    fn record(&mut self, record: &Record<'_>) {
        self.stages.take(record);
        self.drain();
    }

    /// Writes the finished messages as the profiler does (then the next messages are
    /// built in their boxes), checking each line.
    fn drain(&mut self) {
        let (limits, format) = (self.limits, self.format);
        self.stages.write_finished(|mut line| {
            let afresh = check(line.message, limits, line.procs, line.clock);
            let mut written = Vec::new();
            line.render_into(&mut written);
            assert_eq!(
                String::from_utf8(written).expect("lines are UTF-8"),
                afresh[format],
                "a line written with the connection's kept parts differs from the line \
                 written afresh"
            );
        });
        assert!(self.stages.tracker.connections() <= self.max_conns);
    }

    /// The process of `sock`'s records exec'd: its records carry another name from now.
    fn exec(&mut self, sock: usize, name: usize) {
        self.name[sock] = name % NAMES.len();
        self.record(&Record::Exec(ExecRecord {
            kind: RecordKind::Exec as u32,
            _pad: 0,
            tgid: 100 + sock as u32,
            tid: 200,
            comm: NAMES[self.name[sock]],
        }));
    }

    fn data(&mut self, sock: usize, dir: usize, bytes: &[u8]) {
        let h = self.header(sock, dir, self.pos[sock][dir], bytes.len());
        self.pos[sock][dir] = self.pos[sock][dir].saturating_add(bytes.len() as u64);
        self.record(&Record::Data {
            header: h,
            payload: bytes,
        });
    }

    /// One syscall copied in two records, the second cut short by `uncopied` bytes that
    /// were lost, or sent by sendfile/splice.
    fn split_syscall(&mut self, sock: usize, dir: usize, bytes: &[u8], uncopied: u64, why: u8) {
        let start = self.pos[sock][dir];
        let total = bytes.len() as u64 + uncopied;
        let half = bytes.len() / 2;
        let mut first = self.header(sock, dir, start, half);
        first.flags = 0;
        first.syscall_bytes = total;
        self.record(&Record::Data {
            header: first,
            payload: &bytes[..half],
        });
        let mut second = self.header(
            sock,
            dir,
            start.saturating_add(half as u64),
            bytes.len() - half,
        );
        second.syscall_bytes = total;
        second.syscall_offset = half as u32;
        second.flags |= match why % 3 {
            0 => 0,
            1 => FLAG_OMITTED_SENDFILE,
            _ => FLAG_OMITTED_SPLICE,
        };
        self.record(&Record::Data {
            header: second,
            payload: &bytes[half..],
        });
        self.pos[sock][dir] = start.saturating_add(total);
    }

    fn close(&mut self, sock: usize, extra: u64) {
        let rec = CloseRecord {
            kind: RecordKind::Close as u32,
            _pad: 0,
            tgid: 100,
            tid: 200,
            fd: 3,
            generation: self.generation[sock],
            sock: 0x1000 + sock as u64,
            timestamp_ns: self.now,
            send_end: self.pos[sock][0].saturating_add(extra),
            recv_end: self.pos[sock][1].saturating_add(extra / 2),
        };
        self.record(&Record::Close(rec));
        self.generation[sock] += 1;
        self.pos[sock] = [0, 0];
    }
}

fuzz_target!(|raw: &[u8]| {
    let mut input = Input::new(raw);
    let limits = limits(input.config);
    let max_conns = [1, 2, 3, 64][(input.config >> 2) as usize & 3];
    let max_held = [usize::MAX, 1 << 20, 8 * 1024, 0][(input.config >> 4) as usize & 3];
    let format = (input.config >> 6) as usize & 1;
    let mut d = Driver {
        // No /proc to read: names come from the records, as for processes already gone.
        stages: Stages::new(
            Tracker::new(limits, max_conns, max_held),
            formats()[format].clone(),
        )
        .with_process_cache(ProcessCache::with_root("/nonexistent/proc")),
        format,
        limits,
        max_conns,
        pos: [[0; 2]; SOCKS],
        generation: [1; SOCKS],
        name: [0; SOCKS],
        now: 1_000_000,
    };
    while let Some(op) = input.next_op() {
        let sock = (op.selector >> 1) as usize % SOCKS;
        let dir = (op.selector & 1) as usize;
        let len = op.len as usize;
        d.now += 1_000;
        match op.kind % 9 {
            0 => {
                let bytes = input.take(len);
                d.data(sock, dir, bytes);
            }
            1 => {
                let bytes = input.take(len & 0xff);
                d.split_syscall(sock, dir, bytes, (len >> 8) as u64 * 97, op.selector >> 3);
            }
            // Records lost in the ring buffer: the stream jumps.
            2 => d.pos[sock][dir] = d.pos[sock][dir].saturating_add(len as u64),
            // Two threads racing on one socket: bytes seen again.
            3 => d.pos[sock][dir] = d.pos[sock][dir].saturating_sub(len as u64),
            4 => d.close(sock, len as u64 & 0xff),
            // The socket object holds a new connection, its close never seen.
            5 => {
                d.generation[sock] += 1;
                d.pos[sock] = [len as u64, len as u64 / 3];
            }
            6 => {
                d.now += len as u64 * 10_000_000;
                d.stages.expire(d.now, 30_000_000_000, 300_000_000_000);
                d.drain();
            }
            // Positions far along the stream, up to where they would wrap.
            7 => d.pos[sock][dir] = u64::MAX - len as u64,
            _ => d.exec(sock, len as usize),
        }
    }
    let rest = input.rest();
    d.data(0, 0, rest);
    d.stages.finish_all();
    d.drain();
});
