//! Incremental HTTP/1.x parsing of one direction of one connection.
//!
//! Bytes arrive in whatever pieces the syscalls moved, with gaps where records were lost
//! or not copied. The parser finds message heads (httparse), frames bodies by
//! Content-Length, chunked coding or connection close, decodes chunked bodies, and hands
//! each finished message to a [`MessageSink`]. It never panics on any input and keeps at
//! most `Limits` bytes per message.

pub mod head;

use std::sync::Arc;

use crate::chunked::{ChunkedDecoder, ChunkedStep};

/// Text taken from a message head (method, URL, reason, header names and values). Most
/// are under 24 bytes and are then kept inline, without a heap allocation: a message
/// used to cost a dozen allocations for its head alone.
pub type Text = compact_str::CompactString;

/// A header or trailer field: name and value.
pub type Field = (Text, Text);

/// A head's header fields, shared by the messages whose field lines were the same
/// (`head::KnownFields`).
pub type Fields = Arc<[Field]>;

/// Per-message memory bounds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Decoded body bytes kept per message.
    pub max_body: usize,
    /// Wire bytes kept per message for `raw_payload`.
    pub max_raw: usize,
    /// The largest message head (start line and headers) accepted.
    pub max_head: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 16 * 1024,
            max_raw: 4096,
            max_head: 64 * 1024,
        }
    }
}

/// Who made the syscall that moved some bytes, and when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkMeta {
    pub timestamp_ns: u64,
    pub tgid: u32,
    pub tid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Text, url: Text },
    Response { status: u16, reason: Text },
}

/// Why a message was written before it was complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incomplete {
    /// The connection closed before the message ended.
    Closed,
    /// Bytes of the message were not captured and its framing was lost.
    Gap,
    /// Nothing more arrived for the message within the timeout.
    Timeout,
    /// The profiler stopped before the message ended.
    Shutdown,
    /// The head was malformed or larger than the limit.
    BadHead,
}

impl Incomplete {
    pub fn as_str(self) -> &'static str {
        match self {
            Incomplete::Closed => "closed",
            Incomplete::Gap => "gap",
            Incomplete::Timeout => "timeout",
            Incomplete::Shutdown => "shutdown",
            Incomplete::BadHead => "bad_head",
        }
    }
}

/// One HTTP message, complete or cut short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    pub headers: Fields,
    pub trailers: Vec<Field>,
    /// Decoded body, at most `Limits::max_body` bytes.
    pub body: Vec<u8>,
    /// Decoded body bytes in all, kept or not.
    pub body_len: u64,
    pub body_truncated: bool,
    /// The message as on the wire, at most `Limits::max_raw` bytes.
    pub raw: Vec<u8>,
    /// How many leading bytes of `raw` are the head as parsed (all of `raw` when it was
    /// cut within the head): the start line and the fields of `headers`, no other line.
    /// 0 for a message without a parsed head.
    pub head_len: usize,
    /// Wire bytes of the whole message, captured or not.
    pub wire_bytes: u64,
    pub first: ChunkMeta,
    pub last_timestamp_ns: u64,
    pub incomplete: Option<Incomplete>,
    /// Some of the message's bytes were never captured.
    pub capture_gap: bool,
    /// The body went by sendfile or splice, so it was counted but not seen.
    pub body_omitted: Option<&'static str>,
}

impl Message {
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
}

/// Why bytes of a stream are missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Records were lost or not copied: `capture_gap`.
    Lost,
    /// The bytes never passed through user memory (sendfile, splice): `body_omitted`.
    Omitted(&'static str),
}

/// Receives what the parser finds; implemented by the pairing stage.
pub trait MessageSink {
    /// The method of the request the next response answers, if known: a response to
    /// HEAD has no body, and a 2xx response to CONNECT starts a tunnel.
    fn pending_request_method(&self) -> Option<&str>;
    /// A request head was parsed; its response may start before the body ends
    /// (`Expect: 100-continue`).
    fn request_started(&mut self, method: &str, url: &str);
    /// Bytes were not seen where whole messages may have been: which request a later
    /// response answers is no longer known.
    fn records_lost(&mut self);
    fn message(&mut self, message: Box<Message>);
    /// The box of a message already written, for the parser to build the next one in:
    /// its buffers keep their capacity, so that a steady stream of messages allocates
    /// nothing per message. None when there is none to spare.
    fn spare_message(&mut self) -> Option<Box<Message>> {
        None
    }
}

#[derive(Debug)]
enum Body {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

#[derive(Debug)]
enum State {
    /// Looking for a message head; `synced` is false after garbage or a gap, when the
    /// next head may start anywhere.
    Head { synced: bool },
    Body {
        message: Box<Message>,
        body: Body,
        /// What the message's header fields hold (`fields_held`), counted once.
        fields_held: usize,
    },
    /// The connection switched to another protocol (101, CONNECT): nothing more is HTTP.
    Done,
}

pub struct Parser {
    limits: Limits,
    state: State,
    /// Bytes of a head not yet complete.
    head: Vec<u8>,
    head_meta: ChunkMeta,
    head_gap: bool,
    /// Set after a 101 or a CONNECT tunnel: the connection is no longer HTTP.
    switched: bool,
    /// The last head's field lines and fields, for the next head to share.
    known: head::KnownFields,
}

/// The most header (or trailer) fields a message may have; httparse rejects a head with
/// more.
const MAX_HEADERS: usize = 256;

/// A head buffer is kept for the next head up to this size; a larger one (a head with
/// big cookies or tokens) shrinks back once its head is parsed. Kept whole, each
/// connection end that ever saw a 60 KiB head would hold that much for as long as it
/// stays open.
const KEEP_HEAD_CAPACITY: usize = 4096;

/// The starts of a message: each method token the parser accepts as the start of a
/// request, with its space, and a status line's version. Each is at most 8 bytes, so it
/// is compared as one number (`starts_like_message`).
const MESSAGE_STARTS: [&[u8]; 10] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"PATCH ",
    b"OPTIONS ",
    b"CONNECT ",
    b"TRACE ",
    b"HTTP/1.",
];

/// `MESSAGE_STARTS` as little-endian numbers, zero-padded, with their lengths.
const MESSAGE_START_WORDS: [(u64, usize); 10] = {
    let mut words = [(0, 0); 10];
    let mut i = 0;
    while i < MESSAGE_STARTS.len() {
        let start = MESSAGE_STARTS[i];
        assert!(start.len() <= 8);
        let mut bytes = [0u8; 8];
        let mut j = 0;
        while j < start.len() {
            bytes[j] = start[j];
            j += 1;
        }
        words[i] = (u64::from_le_bytes(bytes), start.len());
        i += 1;
    }
    words
};

/// Whether `buf` can be the start of an HTTP/1.x message (as far as it goes). It runs for
/// every head and piece between messages: its first 8 bytes are loaded once and compared
/// with each start under a mask, where ten slice comparisons cost ~370 instructions.
pub fn starts_like_message(buf: &[u8]) -> bool {
    let mut first = [0u8; 8];
    let n = buf.len().min(8);
    first[..n].copy_from_slice(&buf[..n]);
    let word = u64::from_le_bytes(first);
    MESSAGE_START_WORDS.iter().any(|&(start, len)| {
        // The low bytes that both the start and `buf` have.
        let shown = len.min(n);
        let mask = if shown == 8 {
            u64::MAX
        } else {
            (1u64 << (shown * 8)) - 1
        };
        (word ^ start) & mask == 0
    })
}

impl Parser {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Head { synced: true },
            head: Vec::new(),
            head_meta: ChunkMeta::default(),
            head_gap: false,
            switched: false,
            known: head::KnownFields::default(),
        }
    }

    /// Whether the connection left HTTP (101 Switching Protocols, a CONNECT tunnel).
    pub fn switched_protocols(&self) -> bool {
        self.switched
    }

    /// Bytes this parser holds for a message in progress: its head buffer, and the
    /// body and raw bytes kept so far (allocated sizes).
    pub fn held_bytes(&self) -> usize {
        let message = match &self.state {
            State::Body {
                message,
                fields_held,
                ..
            } => message.body.capacity() + message.raw.capacity() + fields_held,
            State::Head { .. } | State::Done => 0,
        };
        self.head.capacity() + self.known.held_bytes() + message
    }

    /// Frees what the parser keeps between messages only to go faster: its head buffer
    /// when no head is in progress, and its last head's field lines with their fields.
    /// The first memory a connection gives back when all hold too much.
    pub fn drop_caches(&mut self) {
        if self.head.is_empty() {
            self.head = Vec::new();
        }
        self.known = head::KnownFields::default();
    }

    /// Whether a message has started and not yet been written.
    pub fn in_message(&self) -> bool {
        matches!(self.state, State::Body { .. }) || !self.head.is_empty()
    }

    pub fn feed(&mut self, mut bytes: &[u8], meta: ChunkMeta, sink: &mut dyn MessageSink) {
        while !bytes.is_empty() {
            let used = match &mut self.state {
                State::Done => return,
                State::Head { .. } => self.feed_head(bytes, meta, sink),
                State::Body { .. } => self.feed_body(bytes, meta, sink),
            };
            bytes = &bytes[used..];
        }
    }

    /// `len` bytes of this direction were not captured.
    pub fn gap(&mut self, len: u64, why: Missing, sink: &mut dyn MessageSink) {
        if len == 0 {
            return;
        }
        match &mut self.state {
            State::Done => {}
            State::Head { synced } => {
                *synced = false;
                sink.records_lost();
                if !self.head.is_empty() {
                    self.head_gap = true;
                    self.flush_head(Incomplete::Gap, sink);
                }
            }
            State::Body { message, body, .. } => {
                match why {
                    Missing::Lost => message.capture_gap = true,
                    Missing::Omitted(reason) => message.body_omitted = Some(reason),
                }
                message.body_truncated = true;
                message.wire_bytes = message.wire_bytes.saturating_add(len);
                match body {
                    Body::Length(remaining) if *remaining > len => {
                        *remaining -= len;
                        message.body_len = message.body_len.saturating_add(len);
                    }
                    Body::Length(remaining) => {
                        // The message ends inside the gap; past its end, if the gap runs
                        // on, where the next message starts is unknown.
                        let beyond = len - *remaining;
                        message.wire_bytes = message.wire_bytes.saturating_sub(beyond);
                        message.body_len = message.body_len.saturating_add(*remaining);
                        self.finish_body(None, sink);
                        if beyond > 0 {
                            self.state = State::Head { synced: false };
                            sink.records_lost();
                        }
                    }
                    Body::UntilClose => message.body_len = message.body_len.saturating_add(len),
                    Body::Chunked(_) => {
                        self.finish_body(Some(Incomplete::Gap), sink);
                        self.state = State::Head { synced: false };
                        sink.records_lost();
                    }
                }
            }
        }
    }

    /// The connection closed (or the profiler stops, or the message timed out): write
    /// what is in progress.
    pub fn end(&mut self, why: Incomplete, sink: &mut dyn MessageSink) {
        match &self.state {
            State::Body {
                body: Body::UntilClose,
                ..
            } if why == Incomplete::Closed => {
                self.finish_body(None, sink);
            }
            State::Body { .. } => self.finish_body(Some(why), sink),
            State::Head { .. } => self.flush_head(why, sink),
            State::Done => {}
        }
        if !matches!(self.state, State::Done) {
            self.state = State::Head {
                synced: why != Incomplete::Timeout,
            };
        }
    }

    fn feed_head(&mut self, bytes: &[u8], meta: ChunkMeta, sink: &mut dyn MessageSink) -> usize {
        let State::Head { synced } = &mut self.state else {
            return 0;
        };
        if self.head.is_empty() {
            // Between messages: skip what cannot start one (a stray CRLF after a body is
            // allowed by RFC 9112; anything else is garbage or the tail of a lost message).
            let start = if *synced {
                skip_crlf(bytes)
            } else {
                find_message_start(bytes)
            };
            let Some(start) = start else {
                return bytes.len();
            };
            if start > 0 {
                return start;
            }
            if !starts_like_message(bytes) {
                *synced = false;
                return find_message_start(&bytes[1..]).map_or(bytes.len(), |i| i + 1);
            }
            self.head_meta = meta;
        }
        let before = self.head.len();
        let take = bytes
            .len()
            .min(self.limits.max_head + 4 - before.min(self.limits.max_head));
        // A head wholly in these bytes (most are: a client writes its head at once) is
        // parsed where it lies, not copied into the head buffer first.
        if before == 0
            && let Some(end) = find_head_end(&bytes[..take], 0)
        {
            self.parse_taken_head(&bytes[..end], meta, sink);
            return end;
        }
        self.head.extend_from_slice(&bytes[..take]);
        // Into an empty buffer went bytes just searched: no head ends in them.
        let end = if before == 0 {
            None
        } else {
            find_head_end(&self.head, before)
        };
        match end {
            Some(end) => {
                let used = end - before;
                self.head.truncate(end);
                self.parse_head(meta, sink);
                used
            }
            None if self.head.len() > self.limits.max_head => {
                self.flush_head(Incomplete::BadHead, sink);
                self.state = State::Head { synced: false };
                take
            }
            None => {
                if !starts_like_message(&self.head) {
                    let head = std::mem::take(&mut self.head);
                    self.recycle_head(head);
                    self.state = State::Head { synced: false };
                }
                take
            }
        }
    }

    fn parse_head(&mut self, meta: ChunkMeta, sink: &mut dyn MessageSink) {
        let head = std::mem::take(&mut self.head);
        self.parse_taken_head(&head, meta, sink);
        self.recycle_head(head);
    }

    /// The buffer goes back for the next head: one allocation per direction, not one per
    /// message, but no larger than KEEP_HEAD_CAPACITY.
    fn recycle_head(&mut self, mut head: Vec<u8>) {
        head.clear();
        head.shrink_to(KEEP_HEAD_CAPACITY);
        self.head = head;
    }

    fn parse_taken_head(&mut self, head: &[u8], meta: ChunkMeta, sink: &mut dyn MessageSink) {
        let gap = std::mem::take(&mut self.head_gap);
        let Some(parsed) = self.known.parse(head) else {
            self.state = State::Head { synced: false };
            return;
        };
        let body = match &parsed.start {
            StartLine::Request { method, url } => {
                sink.request_started(method, url);
                request_body(parsed.framing)
            }
            StartLine::Response { status, .. } => {
                let method = sink.pending_request_method();
                let tunnel =
                    *status == 101 || (method == Some("CONNECT") && (200..300).contains(status));
                if tunnel {
                    self.switched = true;
                }
                response_body(*status, method, parsed.framing)
            }
        };
        // The raw payload takes the body too: sized for it now, not grown when it comes.
        let body_len = match body {
            Body::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
            _ => 0,
        };
        let mut message = self.message_from_head(
            sink.spare_message(),
            parsed.start,
            parsed.version_minor,
            parsed.headers,
            head,
            body_len,
        );
        message.capture_gap = gap;
        message.last_timestamp_ns = meta.timestamp_ns;
        message.head_len = head.len().min(message.raw.len());
        match body {
            Body::Length(0) => {
                sink.message(message);
                self.state = if self.switched {
                    State::Done
                } else {
                    State::Head { synced: true }
                };
            }
            body => {
                self.state = State::Body {
                    fields_held: fields_held(&message.headers),
                    message,
                    body,
                }
            }
        }
    }

    fn feed_body(&mut self, bytes: &[u8], meta: ChunkMeta, sink: &mut dyn MessageSink) -> usize {
        let State::Body { message, body, .. } = &mut self.state else {
            return 0;
        };
        let limits = self.limits;
        message.last_timestamp_ns = meta.timestamp_ns;
        let (used, done) = match body {
            Body::Length(remaining) => {
                let n = (*remaining).min(bytes.len() as u64) as usize;
                keep_body(message, &bytes[..n], limits);
                *remaining -= n as u64;
                (n, *remaining == 0)
            }
            Body::UntilClose => {
                keep_body(message, bytes, limits);
                (bytes.len(), false)
            }
            Body::Chunked(decoder) => {
                let mut used = 0;
                let mut done = false;
                let mut bad = false;
                while used < bytes.len() && !done && !bad {
                    match decoder.step(&bytes[used..]) {
                        ChunkedStep::Data { consumed, data } => {
                            let range = used + data.start..used + data.end;
                            keep_body_decoded(message, &bytes[range], limits);
                            used += consumed;
                        }
                        ChunkedStep::Framing { consumed } => used += consumed,
                        ChunkedStep::Trailer {
                            consumed,
                            name,
                            value,
                        } => {
                            used += consumed;
                            // As many trailer fields as header fields; an endless trailer
                            // section is treated as the malformed framing it is.
                            if message.trailers.len() >= MAX_HEADERS {
                                bad = true;
                            } else {
                                message.trailers.push((name, value));
                            }
                        }
                        ChunkedStep::End { consumed } => {
                            used += consumed;
                            done = true;
                        }
                        ChunkedStep::Invalid => bad = true,
                    }
                }
                keep_raw(message, &bytes[..used], limits);
                message.wire_bytes = message.wire_bytes.saturating_add(used as u64);
                if bad {
                    self.finish_body(Some(Incomplete::BadHead), sink);
                    self.state = State::Head { synced: false };
                    return used.max(1).min(bytes.len());
                }
                (used, done)
            }
        };
        if done {
            self.finish_body(None, sink);
        }
        used
    }

    fn finish_body(&mut self, why: Option<Incomplete>, sink: &mut dyn MessageSink) {
        let state = std::mem::replace(
            &mut self.state,
            if self.switched {
                State::Done
            } else {
                State::Head { synced: true }
            },
        );
        if let State::Body { mut message, .. } = state {
            message.incomplete = why;
            if why.is_some() {
                message.body_truncated = true;
            }
            sink.message(message);
        }
    }

    /// A message of just its head, dated from the head's first byte, built in `spare`
    /// when there is one.
    fn message_from_head(
        &self,
        mut spare: Option<Box<Message>>,
        start: StartLine,
        version_minor: u8,
        headers: Fields,
        head: &[u8],
        body_len: usize,
    ) -> Box<Message> {
        let max_raw = self.limits.max_raw;
        let (mut raw, mut body, mut trailers) = match &mut spare {
            Some(m) => (
                std::mem::take(&mut m.raw),
                std::mem::take(&mut m.body),
                std::mem::take(&mut m.trailers),
            ),
            None => Default::default(),
        };
        raw.clear();
        body.clear();
        trailers.clear();
        raw.reserve(head.len().saturating_add(body_len).min(max_raw));
        raw.extend_from_slice(&head[..head.len().min(max_raw)]);
        let message = Message {
            start,
            version_minor,
            headers,
            trailers,
            body,
            body_len: 0,
            body_truncated: false,
            raw,
            head_len: 0,
            wire_bytes: head.len() as u64,
            first: self.head_meta,
            last_timestamp_ns: self.head_meta.timestamp_ns,
            incomplete: None,
            capture_gap: false,
            body_omitted: None,
        };
        match spare {
            Some(mut boxed) => {
                *boxed = message;
                boxed
            }
            None => Box::new(message),
        }
    }

    /// Writes a head that never completed, if it at least has a start line.
    fn flush_head(&mut self, why: Incomplete, sink: &mut dyn MessageSink) {
        let head = std::mem::take(&mut self.head);
        let gap = std::mem::take(&mut self.head_gap);
        let Some(start) = partial_start_line(&head) else {
            return;
        };
        let mut message =
            self.message_from_head(sink.spare_message(), start, 1, Fields::default(), &head, 0);
        message.capture_gap = gap || why == Incomplete::Gap;
        message.incomplete = Some(why);
        sink.message(message);
    }
}

fn keep_body(message: &mut Message, bytes: &[u8], limits: Limits) {
    keep_body_decoded(message, bytes, limits);
    keep_raw(message, bytes, limits);
    message.wire_bytes = message.wire_bytes.saturating_add(bytes.len() as u64);
}

fn keep_body_decoded(message: &mut Message, bytes: &[u8], limits: Limits) {
    let room = limits.max_body.saturating_sub(message.body.len());
    if bytes.len() > room {
        message.body_truncated = true;
    }
    message
        .body
        .extend_from_slice(&bytes[..bytes.len().min(room)]);
    message.body_len = message.body_len.saturating_add(bytes.len() as u64);
}

fn keep_raw(message: &mut Message, bytes: &[u8], limits: Limits) {
    let room = limits.max_raw.saturating_sub(message.raw.len());
    message
        .raw
        .extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn skip_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b != b'\r' && b != b'\n')
}

/// The first position in `bytes` where a message may start: at 0, or after a line end.
pub fn find_message_start(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find(|&i| {
        (i == 0 || bytes[i - 1] == b'\n')
            && bytes[i] != b'\r'
            && bytes[i] != b'\n'
            && starts_like_message(&bytes[i..])
    })
}

/// The end of the head (just past the blank line), searching from near `from`. One
/// SIMD search for CRLF CRLF (memmem), not a step from each LF to the next: a head of
/// seven lines took seven searches.
fn find_head_end(head: &[u8], from: usize) -> Option<usize> {
    static CRLF_CRLF: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    let start = from.saturating_sub(3);
    let crlf = head
        .get(start..)
        .and_then(|h| CRLF_CRLF.find(h))
        .map(|i| start + i + 4);
    crlf.or_else(|| {
        // Bare LF line ends are tolerated by RFC 9112 section 2.2.
        blank_line_end(head, from.saturating_sub(1), b"\n\n")
    })
}

/// Just past the first `blank` (which ends in LF) that lies wholly at or after `start`.
fn blank_line_end(head: &[u8], start: usize, blank: &[u8]) -> Option<usize> {
    let first = start + blank.len() - 1;
    memchr::memchr_iter(b'\n', head.get(first..)?)
        .map(|i| first + i + 1)
        .find(|&end| head[end - blank.len()..end] == *blank)
}

/// The start line of a head that never completed, when it is a well-formed one: the
/// message is then written, flagged; anything else is dropped as noise.
fn partial_start_line(head: &[u8]) -> Option<StartLine> {
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..line_end])
        .ok()?
        .trim_end_matches('\r');
    if line.chars().any(|c| c.is_control()) {
        return None;
    }
    let mut parts = line.splitn(3, ' ');
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    let version = |v: &str| v == "HTTP/1.0" || v == "HTTP/1.1";
    if version(a) {
        let status = b.parse().ok().filter(|s| (100..600).contains(s))?;
        Some(StartLine::Response {
            status,
            reason: c.into(),
        })
    } else if version(c) && starts_like_message(head) && !b.is_empty() {
        Some(StartLine::Request {
            method: a.into(),
            url: b.into(),
        })
    } else {
        None
    }
}

/// Bytes a list of header fields holds: the list, and its text (`text_held`).
fn fields_held(fields: &[Field]) -> usize {
    let text = fields
        .iter()
        .flat_map(|(name, value)| [name, value])
        .map(text_held)
        .sum::<usize>();
    std::mem::size_of_val(fields) + text
}

/// Bytes `text` holds outside itself: none when it is short enough to be kept inline.
pub fn text_held(text: &Text) -> usize {
    if text.is_heap_allocated() {
        text.capacity()
    } else {
        0
    }
}

fn header<'a>(headers: &'a [Field], name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// What frames a message's body, as its header fields say: read once per set of fields,
/// and kept with them when they repeat (`head::KnownFields`), instead of searching the
/// fields by name for every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// The last transfer coding is chunked.
    chunked: bool,
    /// The first Content-Length, parsed (`Err` when it is not a number).
    content_length: Option<Result<u64, ()>>,
}

impl Framing {
    fn of(headers: &[Field]) -> Self {
        Self {
            chunked: is_chunked(headers),
            content_length: content_length(headers),
        }
    }
}

fn is_chunked(headers: &[Field]) -> bool {
    header(headers, "transfer-encoding")
        .flat_map(|v| v.split(','))
        .last()
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

fn content_length(headers: &[Field]) -> Option<Result<u64, ()>> {
    let v = header(headers, "content-length").next()?;
    Some(v.trim().parse::<u64>().map_err(|_| ()))
}

/// RFC 9112 section 6.3, for requests: chunked, else Content-Length, else no body.
fn request_body(framing: Framing) -> Body {
    if framing.chunked {
        Body::Chunked(ChunkedDecoder::default())
    } else {
        match framing.content_length {
            Some(Ok(n)) => Body::Length(n),
            // An invalid length cannot be framed; the head is kept, the rest resyncs.
            Some(Err(())) | None => Body::Length(0),
        }
    }
}

/// RFC 9112 section 6.3, for responses.
fn response_body(status: u16, request_method: Option<&str>, framing: Framing) -> Body {
    if (100..200).contains(&status)
        || status == 204
        || status == 304
        || request_method == Some("HEAD")
    {
        return Body::Length(0);
    }
    if request_method == Some("CONNECT") && (200..300).contains(&status) {
        return Body::Length(0);
    }
    if framing.chunked {
        return Body::Chunked(ChunkedDecoder::default());
    }
    match framing.content_length {
        Some(Ok(n)) => Body::Length(n),
        Some(Err(())) | None => Body::UntilClose,
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
