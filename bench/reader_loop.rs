//! The reader's work on kept-alive exchanges, without a kernel: records as the probes
//! write them for nginx answering a client on `CONNECTIONS` connections, each taken by
//! the profiler's own stages (`http_profiler::stages`: the process cache, the connection
//! table, then each message it finished rendered into an output buffer and given back to
//! the tracker), as its loop takes a record from the ring buffer. Shared by
//! bench/reader_cost.rs, which times it, and tests/steady_allocations.rs, which counts its
//! allocations.

use http_profiler::{
    http::Limits, output::Format, record::Record, redact::Redactor, stages::Stages,
    tracker::Tracker,
};
use http_profiler_common::{DIRECTION_RECV, DIRECTION_SEND, DataHeader};

#[path = "records.rs"]
mod records;

pub const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:34927\r\n\r\n";
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Thu, 26 Nov 2026 18:11:50 GMT\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\
Connection: keep-alive\r\n\r\nhello from nginx\n";
pub const CONNECTIONS: u64 = 50;
/// pid 1 always exists, so its name and command line are read from /proc as a served
/// process's would be.
const PID: u32 = 1;
/// The output buffer is handed to write(2) when it holds this much (as the sink does).
const OUT_BYTES: usize = 1 << 20;

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

/// The stages after the ring buffer, with the profiler's defaults.
pub struct Reader {
    stages: Stages,
    out: Vec<u8>,
    /// Lines written so far.
    pub lines: u64,
}

impl Reader {
    /// `with_raw`: the lines carry raw_payload (the default) or not (--no-raw-payload).
    pub fn new(with_raw: bool) -> Self {
        Self {
            stages: Stages::new(
                Tracker::new(Limits::default(), 4096, usize::MAX),
                Format {
                    with_raw,
                    redact: Redactor::new::<&str>(&[]),
                },
            ),
            out: Vec::with_capacity(OUT_BYTES),
            lines: 0,
        }
    }

    /// Exchanges `first..first + count`, exchange `i` on connection `1 + i % CONNECTIONS`,
    /// its request and response one record each.
    pub fn exchanges(&mut self, first: u64, count: u64) {
        for i in first..first + count {
            let sock = 1 + i % CONNECTIONS;
            let round = i / CONNECTIONS;
            let ts = 1_000_000 + i * 50_000;
            for (direction, bytes) in [(DIRECTION_RECV, REQUEST), (DIRECTION_SEND, RESPONSE)] {
                let pos = round * bytes.len() as u64;
                let h = header(sock, direction, pos, bytes.len(), ts + u64::from(direction));
                self.record(&Record::Data {
                    header: h,
                    payload: bytes,
                });
            }
        }
    }

    fn record(&mut self, record: &Record<'_>) {
        self.stages.take(record);
        let (out, lines) = (&mut self.out, &mut self.lines);
        self.stages.write_finished(|mut line| {
            line.render_into(out);
            out.push(b'\n');
            *lines += 1;
        });
        if self.out.len() > OUT_BYTES - 8192 {
            std::hint::black_box(&self.out);
            self.out.clear();
        }
    }
}
