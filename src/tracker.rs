//! The connection table: routes each record to its connection end, runs that end's
//! stream cursors and parsers, and pairs what they find.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http_profiler_common::{
    CloseRecord, DIRECTION_RECV, DataHeader, FLAG_LAST_CHUNK, FLAG_OMITTED_SENDFILE,
    FLAG_OMITTED_SPLICE,
};

use crate::{
    http::{ChunkMeta, Incomplete, Limits, Message, MessageSink, Missing, Parser},
    pairing::{Paired, PairedOut, Pairing},
    record::Record,
    stream::StreamCursor,
};

/// Connections in order of their last record, so that ending the least recently active
/// one takes constant time however full the table is (a search of the table for it cost
/// ~1.6 us per 1,000 entries on every eviction: ~100 us at 65,536).
type Table = lru::LruCache<u64, Connection>;

const AF_INET: u16 = 2;

/// Bytes a connection may carry without a single HTTP message before userspace tells the
/// probes to stop copying it.
const NOT_HTTP_AFTER_BYTES: u64 = 16 * 1024;

/// The two ends' addresses as this connection end sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
}

impl Endpoints {
    fn from_header(h: &DataHeader) -> Self {
        Self {
            local: ip(h.family, &h.local_addr),
            local_port: h.local_port,
            remote: ip(h.family, &h.remote_addr),
            remote_port: h.remote_port,
        }
    }
}

/// An address as a peer would print it: IPv4-mapped IPv6 addresses as IPv4.
pub fn ip(family: u16, bytes: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        return IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]));
    }
    let v6 = Ipv6Addr::from(*bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// A message ready to be written.
#[derive(Debug)]
pub struct Emitted {
    pub paired: Paired,
    /// `DIRECTION_SEND` or `DIRECTION_RECV`.
    pub direction: u8,
    pub conn_id: u64,
    pub endpoints: Endpoints,
}

/// A pairing sink's destination that makes each paired message an `Emitted` of one
/// direction of one connection as it comes: straight into the output, not gathered
/// first and moved again (a message is a few hundred bytes).
struct EmitInto<'a> {
    out: &'a mut Vec<Emitted>,
    /// Boxes of messages already written, for the parser to build new ones in.
    spares: Option<&'a mut Spares>,
    direction: u8,
    conn_id: u64,
    endpoints: Endpoints,
}

impl<'a> EmitInto<'a> {
    fn new(out: &'a mut Vec<Emitted>, direction: u8, conn_id: u64, endpoints: Endpoints) -> Self {
        Self {
            out,
            spares: None,
            direction,
            conn_id,
            endpoints,
        }
    }

    /// Lends the parser the boxes of messages already written (`Tracker::recycle`).
    fn with_spares(self, spares: &'a mut Spares) -> Self {
        Self {
            spares: Some(spares),
            ..self
        }
    }
}

impl PairedOut for EmitInto<'_> {
    fn put(&mut self, paired: Paired) {
        self.out.push(Emitted {
            paired,
            direction: self.direction,
            conn_id: self.conn_id,
            endpoints: self.endpoints,
        });
    }

    fn spare(&mut self) -> Option<Box<Message>> {
        self.spares.as_mut()?.pop()
    }
}

/// Written messages kept for new ones to be built in, each in the box the parser
/// allocated for it (the box is what is reused, so they stay boxed).
type Spares = Vec<Box<Message>>;

/// Boxes of written messages kept for new ones: the few a record's messages need at a
/// time (the reader writes them after each record), so that a steady stream allocates
/// nothing per message. More would only hold memory.
const MAX_SPARES: usize = 16;

/// A written message whose buffers hold more than this is not kept: one large body
/// would otherwise stay allocated for good.
const MAX_SPARE_BYTES: usize = 64 * 1024;

/// A connection the probes should stop copying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ignore {
    pub sock: u64,
    pub generation: u32,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct TrackerStats {
    /// Bytes known to be missing from streams (lost records or uncopied syscall bytes).
    pub gap_bytes: u64,
    /// Connections dropped from a full table.
    pub evicted: u64,
    /// Connections dropped to keep the bytes held for messages in progress within the
    /// limit.
    pub evicted_for_memory: u64,
    /// Connections found not to be HTTP.
    pub ignored: u64,
    /// Requests dropped from a connection's full queue of requests awaiting responses
    /// (`pairing::MAX_PENDING`): the responses to them are written without `request`.
    pub unpaired_dropped: u64,
}

struct Direction {
    cursor: StreamCursor,
    parser: Parser,
}

struct Connection {
    id: u64,
    generation: u32,
    endpoints: Endpoints,
    dirs: [Direction; 2],
    pairing: Pairing,
    last_seen_ns: u64,
    bytes_seen: u64,
    messages: u64,
    ignored: bool,
    /// What it held for messages in progress when last counted (`Tracker::recount`).
    held: usize,
}

pub struct Tracker {
    conns: Table,
    next_id: u64,
    limits: Limits,
    max_conns: usize,
    /// Bytes all connections hold for messages in progress (the sum of their `held`),
    /// and the most they may.
    held: usize,
    max_held: usize,
    /// Boxes of written messages, for new ones (`recycle`).
    spares: Spares,
    pub stats: TrackerStats,
}

impl Tracker {
    /// A table of at most `max_conns` connections whose messages in progress hold at
    /// most `max_held` bytes.
    pub fn new(limits: Limits, max_conns: usize, max_held: usize) -> Self {
        Self {
            conns: Table::unbounded(),
            next_id: 1,
            limits,
            max_conns: max_conns.max(1),
            held: 0,
            max_held,
            spares: Vec::with_capacity(MAX_SPARES),
            stats: TrackerStats::default(),
        }
    }

    /// Takes back the messages in `written` once they are written, emptying it: their
    /// boxes and buffers are where the next messages are built.
    pub fn recycle(&mut self, written: &mut Vec<Emitted>) {
        for e in written.drain(..) {
            let m = e.paired.message;
            if self.spares.len() < MAX_SPARES
                && m.raw.capacity() + m.body.capacity() <= MAX_SPARE_BYTES
            {
                self.spares.push(m);
            }
        }
    }

    /// Bytes all connections hold for messages in progress.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Handles one record; returns a connection to stop copying, if this one showed it.
    pub fn on_record(&mut self, record: &Record<'_>, out: &mut Vec<Emitted>) -> Option<Ignore> {
        match record {
            Record::Data { header, payload } => self.on_data(header, payload, out),
            Record::Close(close) => {
                self.on_close(close, out);
                None
            }
            // Names are the process cache's business: no connection changes.
            Record::Exec(_) => None,
        }
    }

    fn on_data(
        &mut self,
        h: &DataHeader,
        payload: &[u8],
        out: &mut Vec<Emitted>,
    ) -> Option<Ignore> {
        let reused = self
            .conns
            .peek(&h.sock)
            .is_some_and(|c| c.generation != h.generation);
        if reused {
            // The kernel object now holds another connection: the old one closed unseen.
            self.end_conn(h.sock, Incomplete::Closed, out);
        }
        match self.conns.peek(&h.sock) {
            // Left as not HTTP: its records change nothing, so they do not make it recent.
            Some(conn) if conn.ignored => return None,
            Some(_) => {}
            None => {
                self.make_room(out);
                let conn = self.new_conn(h);
                self.conns.put(h.sock, conn);
            }
        }
        // Moves it to the recent end of the table.
        let conn = self.conns.get_mut(&h.sock)?;
        conn.last_seen_ns = h.timestamp_ns;
        conn.bytes_seen += payload.len() as u64;
        let meta = ChunkMeta {
            timestamp_ns: h.timestamp_ns,
            tgid: h.tgid,
            tid: h.tid,
        };
        let d = (h.direction == DIRECTION_RECV) as usize;
        let emitted_before = out.len();
        {
            let mut to = EmitInto::new(out, h.direction, conn.id, conn.endpoints)
                .with_spares(&mut self.spares);
            let mut sink = conn.pairing.sink(&mut to);
            // Bytes of either direction that came before this record and were never seen:
            // requests or responses may have been among them.
            let seen = |dir: &Direction| dir.cursor.next_pos().unwrap_or(0);
            if (conn.dirs[d].cursor.next_pos().is_none() && h.stream_pos > 0)
                || h.other_pos > seen(&conn.dirs[1 - d])
            {
                sink.records_lost();
            }
            let dir = &mut conn.dirs[d];
            let placed = dir.cursor.place(h.stream_pos, payload);
            if placed.gap > 0 {
                self.stats.gap_bytes = self.stats.gap_bytes.saturating_add(placed.gap);
                dir.parser.gap(placed.gap, Missing::Lost, &mut sink);
            }
            dir.parser.feed(placed.bytes, meta, &mut sink);
            let copied_end = h.syscall_offset as u64 + h.data_len as u64;
            if h.flags & FLAG_LAST_CHUNK != 0 && copied_end < h.syscall_bytes {
                // Positions come from the kernel: saturate rather than trust them not to wrap.
                let syscall_end = h
                    .stream_pos
                    .saturating_sub(h.syscall_offset as u64)
                    .saturating_add(h.syscall_bytes);
                let hole = dir.cursor.advance_to(syscall_end);
                let why = if h.flags & FLAG_OMITTED_SENDFILE != 0 {
                    Missing::Omitted("sendfile")
                } else if h.flags & FLAG_OMITTED_SPLICE != 0 {
                    Missing::Omitted("splice")
                } else {
                    self.stats.gap_bytes = self.stats.gap_bytes.saturating_add(hole);
                    Missing::Lost
                };
                dir.parser.gap(hole, why, &mut sink);
            }
        }
        conn.messages += (out.len() - emitted_before) as u64;
        self.stats.unpaired_dropped += std::mem::take(&mut conn.pairing.evicted);
        Self::recount(&mut self.held, conn);
        let switched = conn.dirs.iter().any(|d| d.parser.switched_protocols());
        let not_http = conn.messages == 0
            && conn.bytes_seen > NOT_HTTP_AFTER_BYTES
            && !conn.dirs.iter().any(|d| d.parser.in_message());
        let ignore = (switched || not_http).then(|| {
            conn.ignored = true;
            self.stats.ignored += 1;
            Ignore {
                sock: h.sock,
                generation: h.generation,
            }
        });
        if self.held > self.max_held {
            self.shed_memory(h.sock, out);
        }
        debug_assert_eq!(
            self.held,
            self.conns.iter().map(|(_, c)| c.held).sum::<usize>()
        );
        ignore
    }

    fn on_close(&mut self, close: &CloseRecord, out: &mut Vec<Emitted>) {
        let Some(conn) = self.conns.peek_mut(&close.sock) else {
            return;
        };
        if conn.generation != close.generation {
            return;
        }
        // Records lost at the very end show as the distance to the final positions.
        for (d, end) in [(0, close.send_end), (1, close.recv_end)] {
            let dir = &mut conn.dirs[d];
            if dir.cursor.next_pos().is_some() {
                let hole = dir.cursor.advance_to(end);
                if hole > 0 {
                    self.stats.gap_bytes = self.stats.gap_bytes.saturating_add(hole);
                    let mut to = EmitInto::new(out, d as u8, conn.id, conn.endpoints);
                    dir.parser
                        .gap(hole, Missing::Lost, &mut conn.pairing.sink(&mut to));
                }
            }
        }
        self.end_conn(close.sock, Incomplete::Closed, out);
    }

    fn new_conn(&mut self, h: &DataHeader) -> Connection {
        let id = self.next_id;
        self.next_id += 1;
        let dir = || Direction {
            cursor: StreamCursor::default(),
            parser: Parser::new(self.limits),
        };
        Connection {
            id,
            generation: h.generation,
            endpoints: Endpoints::from_header(h),
            dirs: [dir(), dir()],
            pairing: Pairing::default(),
            last_seen_ns: h.timestamp_ns,
            bytes_seen: 0,
            messages: 0,
            ignored: false,
            held: 0,
        }
    }

    /// Counts again what `conn` holds for messages in progress (its parsers' buffers
    /// and its queue of requests awaiting responses) and moves the table's `total` by
    /// the difference.
    fn recount(total: &mut usize, conn: &mut Connection) {
        let held = conn
            .dirs
            .iter()
            .map(|d| d.parser.held_bytes())
            .sum::<usize>()
            + conn.pairing.held_bytes();
        *total = *total - conn.held + held;
        conn.held = held;
    }

    /// Frees the caches of the least recently active connections other than `busy` until
    /// the total is at `target`; returns whether it got there. A connection with no
    /// message in progress holds nothing else, so a host of many idle kept-alive
    /// connections is not made to end them for memory that is only a cache.
    fn drop_caches(&mut self, busy: u64, target: usize) -> bool {
        for (sock, conn) in self.conns.iter_mut().rev() {
            if self.held <= target {
                break;
            }
            if *sock == busy || conn.held == 0 {
                continue;
            }
            for d in &mut conn.dirs {
                d.parser.drop_caches();
            }
            Self::recount(&mut self.held, conn);
        }
        self.held <= target
    }

    /// Takes a connection out of the table, and what it held out of the total.
    fn remove_conn(&mut self, sock: u64) -> Option<Connection> {
        let conn = self.conns.pop(&sock)?;
        self.held -= conn.held;
        Some(conn)
    }

    /// Ends a connection: messages in progress are written, flagged with `why`.
    fn end_conn(&mut self, sock: u64, why: Incomplete, out: &mut Vec<Emitted>) {
        let Some(mut conn) = self.remove_conn(sock) else {
            return;
        };
        Self::flush(&mut conn, why, out);
    }

    fn flush(conn: &mut Connection, why: Incomplete, out: &mut Vec<Emitted>) {
        for d in 0..2 {
            let mut to = EmitInto::new(out, d as u8, conn.id, conn.endpoints);
            conn.dirs[d]
                .parser
                .end(why, &mut conn.pairing.sink(&mut to));
        }
    }

    /// Brings what connections hold back under three quarters of the limit: first by
    /// freeing what the least recently active connections, other than `busy` (the one
    /// just fed), keep only to go faster (`Parser::drop_caches`), then by ending them.
    /// Going a little below the limit spares a search of the whole table for every
    /// record while memory is tight. Messages in progress on the connections ended are
    /// written, flagged `timeout`. Cold: it runs only past the limit, and kept out of
    /// line it leaves the per-record path as compact as before it grew.
    #[cold]
    fn shed_memory(&mut self, busy: u64, out: &mut Vec<Emitted>) {
        // Only the busy connection holds anything: there is nothing to end, and no need
        // to search the table for every record of it.
        if self.conns.peek(&busy).is_some_and(|c| c.held == self.held) {
            return;
        }
        let target = self.max_held / 4 * 3;
        if self.drop_caches(busy, target) {
            return;
        }
        if self.stats.evicted_for_memory == 0 {
            log::warn!(
                "messages in progress hold more than {} MiB: ending the least recently active \
                 connections (counted; --max-buffered-bytes raises the limit)",
                self.max_held >> 20
            );
        }
        let excess = self.held - target;
        let mut freed = 0;
        let oldest_holders: Vec<u64> = self
            .conns
            .iter()
            .rev()
            .filter(|(s, c)| **s != busy && c.held > 0)
            .take_while(|(_, c)| {
                let enough = freed >= excess;
                freed += c.held;
                !enough
            })
            .map(|(s, _)| *s)
            .collect();
        for sock in oldest_holders {
            self.stats.evicted_for_memory += 1;
            self.end_conn(sock, Incomplete::Timeout, out);
        }
    }

    fn make_room(&mut self, out: &mut Vec<Emitted>) {
        if self.conns.len() < self.max_conns {
            return;
        }
        if let Some(oldest) = self.conns.peek_lru().map(|(s, _)| *s) {
            self.stats.evicted += 1;
            self.end_conn(oldest, Incomplete::Timeout, out);
        }
    }

    /// Writes messages stalled for longer than `timeout_ns` (flagged), and forgets
    /// connections idle for longer than `forget_ns`.
    ///
    /// Walks from the least recently active end and stops at the first connection active
    /// within both: every one after it is more recent still. (Timestamps come from several
    /// CPUs, so the order can be off by the few microseconds between their records; a
    /// connection that this hides is found by the next call.) With every connection busy
    /// this looks at one; only idle ones cost a step each.
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64, forget_ns: u64, out: &mut Vec<Emitted>) {
        let recent = timeout_ns.min(forget_ns);
        let mut forget = Vec::new();
        for (sock, conn) in self.conns.iter_mut().rev() {
            let idle = now_ns.saturating_sub(conn.last_seen_ns);
            if idle <= recent {
                break;
            }
            if idle > timeout_ns && conn.dirs.iter().any(|d| d.parser.in_message()) {
                Self::flush(conn, Incomplete::Timeout, out);
                Self::recount(&mut self.held, conn);
            }
            if idle > forget_ns {
                forget.push(*sock);
            }
        }
        for sock in forget {
            self.remove_conn(sock);
        }
    }

    /// Writes every message in progress, flagged: the profiler is stopping.
    pub fn finish_all(&mut self, out: &mut Vec<Emitted>) {
        self.held = 0;
        while let Some((_, mut conn)) = self.conns.pop_lru() {
            Self::flush(&mut conn, Incomplete::Shutdown, out);
        }
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
pub(crate) mod tests;
