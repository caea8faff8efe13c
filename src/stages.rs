//! The stages after the ring buffer, one decoded record at a time: the process cache, the
//! connection table (and through it the parser and pairing), then each message the record
//! finished, handed out with what renders its JSON line and given back to the tracker once
//! written, so that the next message is built in it. The profiler's loop (src/main.rs)
//! takes its records from the ring buffer and writes the lines to its sink;
//! bench/reader_loop.rs makes its records and keeps the lines in memory, so the reader's
//! benchmark times this code itself rather than a copy of its steps.

use crate::{
    clock::WallClock,
    output::{self, Format},
    procinfo::ProcessCache,
    record::Record,
    tracker::{Emitted, Ignore, Tracker},
};

pub struct Stages {
    /// Public for its counters (`Tracker::stats`).
    pub tracker: Tracker,
    procs: ProcessCache,
    clock: WallClock,
    format: Format,
    kept: output::Kept,
    /// Messages finished and not yet written.
    finished: Vec<Emitted>,
}

/// A finished message, and what its line is rendered with.
pub struct Finished<'a> {
    pub message: &'a Emitted,
    pub procs: &'a ProcessCache,
    pub clock: &'a WallClock,
    format: &'a Format,
    kept: &'a mut output::Kept,
}

impl Finished<'_> {
    /// Appends the message's JSON line, without its newline, to `out`.
    #[inline]
    pub fn render_into(&mut self, out: &mut Vec<u8>) {
        output::render_into(
            out,
            self.message,
            self.procs,
            self.clock,
            self.format,
            self.kept,
        );
    }
}

impl Stages {
    pub fn new(tracker: Tracker, format: Format) -> Self {
        Self {
            tracker,
            procs: ProcessCache::default(),
            clock: WallClock::now(),
            format,
            kept: output::Kept::default(),
            finished: Vec::new(),
        }
    }

    /// The same stages with `procs` as the process cache (one reading another /proc, or
    /// none, for tests and fuzzing).
    pub fn with_process_cache(self, procs: ProcessCache) -> Self {
        Self { procs, ..self }
    }

    /// Takes one record: a data record's thread name into the process cache (an exec's
    /// new name replaces the old), then the record into the connection table. Returns a
    /// connection the probes are to stop copying (see `Tracker::on_record`).
    #[inline]
    pub fn take(&mut self, record: &Record<'_>) -> Option<Ignore> {
        match record {
            Record::Data { header, .. } => self.procs.observe(header.tgid, &header.comm),
            Record::Exec(exec) => self.procs.exec(exec.tgid, &exec.comm),
            Record::Close(_) => {}
        }
        self.tracker.on_record(record, &mut self.finished)
    }

    /// Ends the messages that waited too long (see `Tracker::expire`).
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64, forget_ns: u64) {
        self.tracker
            .expire(now_ns, timeout_ns, forget_ns, &mut self.finished);
    }

    /// Ends every message still in progress (at shutdown).
    pub fn finish_all(&mut self) {
        self.tracker.finish_all(&mut self.finished);
    }

    /// Hands each finished message to `write`, in the order they finished, then gives
    /// them back to the tracker, buffers and all.
    #[inline]
    pub fn write_finished(&mut self, mut write: impl FnMut(Finished<'_>)) {
        for message in &self.finished {
            write(Finished {
                message,
                procs: &self.procs,
                clock: &self.clock,
                format: &self.format,
                kept: &mut self.kept,
            });
        }
        self.tracker.recycle(&mut self.finished);
    }
}

#[cfg(test)]
mod tests {
    use http_profiler_common::{COMM_LEN, DIRECTION_RECV, DIRECTION_SEND, ExecRecord, RecordKind};

    use super::*;
    use crate::{http::Limits, redact::Redactor};

    /// A pid no process has: its name comes from the records, not from /proc.
    const TGID: u32 = u32::MAX - 1;

    fn name(text: &[u8]) -> [u8; COMM_LEN] {
        let mut comm = [0; COMM_LEN];
        comm[..text.len()].copy_from_slice(text);
        comm
    }

    fn data(direction: u8, payload: &[u8], comm: [u8; COMM_LEN]) -> Record<'_> {
        let mut header = crate::tracker::tests::header(direction, 0, payload.len(), 1_000);
        (header.tgid, header.tid, header.comm) = (TGID, TGID, comm);
        Record::Data { header, payload }
    }

    fn lines(stages: &mut Stages) -> Vec<String> {
        let mut lines = Vec::new();
        stages.write_finished(|mut line| {
            let mut out = Vec::new();
            line.render_into(&mut out);
            lines.push(String::from_utf8(out).unwrap());
        });
        lines
    }

    #[test]
    fn lines_carry_the_names_records_and_execs_give_and_are_handed_out_once() {
        let mut stages = Stages::new(
            Tracker::new(Limits::default(), 16, usize::MAX),
            Format {
                with_raw: false,
                redact: Redactor::none(),
            },
        );
        stages.take(&data(
            DIRECTION_SEND,
            b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n",
            name(b"client"),
        ));
        let first = lines(&mut stages);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(first[0].contains(r#""comm":"client""#), "{}", first[0]);
        assert!(first[0].contains(r#""url":"/x""#), "{}", first[0]);
        assert!(lines(&mut stages).is_empty(), "a message handed out twice");

        stages.take(&Record::Exec(ExecRecord {
            kind: RecordKind::Exec as u32,
            _pad: 0,
            tgid: TGID,
            tid: TGID,
            comm: name(b"renamed"),
        }));
        // No name in the record: the kernel sent it with this thread's first record.
        stages.take(&data(
            DIRECTION_RECV,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            [0; COMM_LEN],
        ));
        let second = lines(&mut stages);
        assert_eq!(second.len(), 1, "{second:?}");
        assert!(second[0].contains(r#""comm":"renamed""#), "{}", second[0]);
        assert!(second[0].contains(r#""status_code":200"#), "{}", second[0]);
    }
}
