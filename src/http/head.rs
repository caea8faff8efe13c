//! Parsing a complete message head with httparse, and skipping the parse of its header
//! fields when they repeat.
//!
//! On a kept-alive connection a client sends the same field lines with each request and
//! a server answers with the same ones (its `Date` changes once a second): parsing them
//! and copying them out as text was about a fifth of the reader's work per exchange. Each
//! connection end keeps the field lines of its last head with the fields they parsed to;
//! a head whose field lines are byte for byte the same has only its start line parsed,
//! and shares the fields. httparse reads the start line and the field lines one after the
//! other, so equal field lines parse to equal fields, after any start line. Such a start
//! line, in the plain form nearly all traffic uses, is read here without httparse.
//!
//! The `known_fields` fuzz target checks that every head parses as it does alone.

use std::{mem::MaybeUninit, sync::Arc};

use super::{Fields, Framing, MAX_HEADERS, StartLine, Text, fields_held};

/// Field lines longer than this (large cookies, tokens) are not kept: every connection
/// end would hold them.
const MAX_KEPT_LINES: usize = 1024;

/// A start line that `plain_start_line` leaves to httparse is copied to the stack to be
/// parsed alone; one longer than this is parsed with its head, as if the field lines
/// were new.
const MAX_START_LINE: usize = 512;

#[derive(Debug, PartialEq, Eq)]
pub struct ParsedHead {
    pub start: StartLine,
    pub version_minor: u8,
    pub headers: Fields,
    pub framing: Framing,
}

/// The field lines of a connection end's last head, and the fields they parsed to.
#[derive(Default)]
pub struct KnownFields {
    lines: Vec<u8>,
    fields: Option<(Fields, Framing)>,
    /// What `fields` hold (`fields_held`), counted when they were kept.
    fields_held: usize,
}

impl KnownFields {
    /// Parses a complete head (it ends with its blank line): its start line alone when
    /// its field lines are those kept, else the whole of it, keeping its field lines.
    pub fn parse(&mut self, head: &[u8]) -> Option<ParsedHead> {
        if matches!(head.first(), Some(b'\r' | b'\n')) {
            // httparse skips empty lines before the start line, so the field lines of
            // this head do not follow its first line end: parsed whole, nothing kept.
            // The parser never hands over such a head (each starts like a message).
            return parse_head(head, collect_fields);
        }
        let start_line_len = memchr::memchr(b'\n', head)? + 1;
        let (start_line, lines) = head.split_at(start_line_len);
        if let Some(known) = &self.fields
            && self.lines == lines
            && let Some(parsed) = parse_start_line(start_line, known)
        {
            return Some(parsed);
        }
        let parsed = parse_head(head, collect_fields)?;
        self.keep(lines, &parsed);
        Some(parsed)
    }

    fn keep(&mut self, lines: &[u8], parsed: &ParsedHead) {
        if lines.len() > MAX_KEPT_LINES {
            // The previous lines go too: they would never match again, and would stay
            // counted against the connection's memory.
            *self = Self::default();
            return;
        }
        self.lines.clear();
        self.lines.extend_from_slice(lines);
        self.fields = Some((Arc::clone(&parsed.headers), parsed.framing));
        self.fields_held = fields_held(&parsed.headers);
    }

    /// Bytes kept: the field lines and their fields.
    pub fn held_bytes(&self) -> usize {
        self.lines.capacity() + self.fields_held
    }
}

/// A head of `start_line` (with its line end) and field lines that parsed to `known`.
fn parse_start_line(start_line: &[u8], known: &(Fields, Framing)) -> Option<ParsedHead> {
    if let Some((start, version_minor)) = plain_start_line(start_line) {
        return Some(ParsedHead {
            start,
            version_minor,
            headers: Arc::clone(&known.0),
            framing: known.1,
        });
    }
    let mut buf = [0u8; MAX_START_LINE + 2];
    let (line, blank) = buf
        .get_mut(..start_line.len() + 2)?
        .split_at_mut(start_line.len());
    line.copy_from_slice(start_line);
    blank.copy_from_slice(b"\r\n");
    let alone = &buf[..start_line.len() + 2];
    parse_head(alone, |_| (Arc::clone(&known.0), known.1))
}

/// The start line in the forms nearly every client and server writes, read without
/// httparse (which took about 700 instructions a head, its stack copy included):
/// `METHOD SP target SP HTTP/1.x CRLF` with an upper-case method and a printable ASCII
/// target, or `HTTP/1.x SP 3DIGIT [SP reason] CRLF` with a printable ASCII reason.
/// httparse accepts every line this does, with the same result (the `known_fields` fuzz
/// target compares them); any other line, odd or wrong, is None and goes to httparse.
fn plain_start_line(line: &[u8]) -> Option<(StartLine, u8)> {
    let line = line.strip_suffix(b"\r\n")?;
    if let Some(status_line) = line.strip_prefix(b"HTTP/1.") {
        let (&minor, rest) = status_line.split_first()?;
        let (&[b' ', h, t, o], reason) = rest.split_first_chunk::<4>()? else {
            return None;
        };
        if ![h, t, o].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let reason = match reason {
            [] => &[][..],
            [b' ', reason @ ..] => reason,
            _ => return None,
        };
        if !reason
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return None;
        }
        let status = u16::from(h - b'0') * 100 + u16::from(t - b'0') * 10 + u16::from(o - b'0');
        let start = StartLine::Response {
            status,
            reason: ascii_text(reason),
        };
        return Some((start, minor_version(minor)?));
    }
    let (method, rest) = line.split_at(memchr::memchr(b' ', line)?);
    // " target HTTP/1.x", the target at least one byte.
    let (target, version) = rest
        .get(1..)?
        .split_at_checked(rest.len().checked_sub(10)?)?;
    let minor = version.strip_prefix(b" HTTP/1.")?;
    let &[minor] = minor else { return None };
    if method.is_empty()
        || !method.iter().all(u8::is_ascii_uppercase)
        || target.is_empty()
        || !target.iter().all(|&b| (b'!'..=b'~').contains(&b))
    {
        return None;
    }
    let start = StartLine::Request {
        method: ascii_text(method),
        url: ascii_text(target),
    };
    Some((start, minor_version(minor)?))
}

/// The minor version of `HTTP/1.x`: httparse knows 1.0 and 1.1 only.
fn minor_version(digit: u8) -> Option<u8> {
    matches!(digit, b'0' | b'1').then(|| digit - b'0')
}

/// Text of bytes checked to be ASCII.
fn ascii_text(bytes: &[u8]) -> Text {
    debug_assert!(bytes.is_ascii());
    // SAFETY: every caller checked that the bytes are ASCII, which is valid UTF-8.
    Text::from(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// Parses a complete head; `collect` makes its fields, and reads their framing, from
/// httparse's.
fn parse_head(
    head: &[u8],
    collect: impl FnOnce(&[httparse::Header<'_>]) -> (Fields, Framing),
) -> Option<ParsedHead> {
    // Header slots left uninitialised on the stack: a zeroed array of MAX_HEADERS on the
    // heap for every message cost more than the parse itself.
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut no_headers = [];
    let config = httparse::ParserConfig::default();
    let (start, version_minor, headers) = if head.starts_with(b"HTTP/") {
        let mut res = httparse::Response::new(&mut no_headers);
        let Ok(httparse::Status::Complete(_)) =
            config.parse_response_with_uninit_headers(&mut res, head, &mut storage)
        else {
            return None;
        };
        let start = StartLine::Response {
            status: res.code?,
            reason: res.reason.unwrap_or_default().into(),
        };
        (start, res.version?, res.headers)
    } else {
        let mut req = httparse::Request::new(&mut no_headers);
        let Ok(httparse::Status::Complete(_)) =
            config.parse_request_with_uninit_headers(&mut req, head, &mut storage)
        else {
            return None;
        };
        let start = StartLine::Request {
            method: req.method?.into(),
            url: req.path?.into(),
        };
        (start, req.version?, req.headers)
    };
    let (headers, framing) = collect(headers);
    Some(ParsedHead {
        start,
        version_minor,
        headers,
        framing,
    })
}

/// The fields of a head parsed whole, and their framing.
fn collect_fields(headers: &[httparse::Header<'_>]) -> (Fields, Framing) {
    let fields = collect_headers(headers);
    let framing = Framing::of(&fields);
    (fields, framing)
}

/// The fields as text, in one allocation: httparse hands over only the fields it parsed,
/// so their number is known before the first is copied.
fn collect_headers(headers: &[httparse::Header<'_>]) -> Fields {
    headers
        .iter()
        .map(|h| (Text::from(h.name), field_value(h.value)))
        .collect()
}

/// A field's value as text, invalid UTF-8 replaced. Values are nearly always ASCII, and
/// checking for that costs a fraction of a full UTF-8 validation of a short value, which
/// showed in the reader's profile (about 110 instructions a value).
fn field_value(value: &[u8]) -> Text {
    if value.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        Text::from(unsafe { std::str::from_utf8_unchecked(value) })
    } else {
        Text::from_utf8_lossy(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Field;

    fn names_and_values(fields: &[Field]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn request_target(parsed: &ParsedHead) -> (String, String) {
        match &parsed.start {
            StartLine::Request { method, url } => (method.to_string(), url.to_string()),
            StartLine::Response { .. } => panic!("a response"),
        }
    }

    #[test]
    fn repeated_field_lines_are_shared_and_new_ones_parsed() {
        let mut known = KnownFields::default();
        let first = known
            .parse(b"GET /a HTTP/1.1\r\nHost: h\r\nX: 1\r\n\r\n")
            .unwrap();
        let again = known
            .parse(b"POST /b HTTP/1.0\r\nHost: h\r\nX: 1\r\n\r\n")
            .unwrap();
        assert!(Arc::ptr_eq(&first.headers, &again.headers));
        assert_eq!(request_target(&again), ("POST".into(), "/b".into()));
        assert_eq!(again.version_minor, 0);
        let other = known
            .parse(b"GET /c HTTP/1.1\r\nHost: h\r\nX: 2\r\n\r\n")
            .unwrap();
        assert!(!Arc::ptr_eq(&first.headers, &other.headers));
        assert_eq!(
            names_and_values(&other.headers),
            [("Host".into(), "h".into()), ("X".into(), "2".into())]
        );
        // A response after requests with the same lines shares them too.
        let response = known
            .parse(b"HTTP/1.1 204 No\r\nHost: h\r\nX: 2\r\n\r\n")
            .unwrap();
        assert!(Arc::ptr_eq(&other.headers, &response.headers));
        assert!(matches!(
            response.start,
            StartLine::Response { status: 204, .. }
        ));
    }

    #[test]
    fn a_bad_start_line_fails_even_with_known_field_lines() {
        let mut known = KnownFields::default();
        assert!(known.parse(b"GET / HTTP/1.1\r\nA: 1\r\n\r\n").is_some());
        assert!(known.parse(b"GET / HTTP/9.1\r\nA: 1\r\n\r\n").is_none());
        assert!(known.parse(b"G\x01T / HTTP/1.1\r\nA: 1\r\n\r\n").is_none());
        assert!(known.parse(b"HTTP/1.1 2000 OK\r\nA: 1\r\n\r\n").is_none());
        // A head after empty lines has its start line further on: the lines after its
        // first line end are not its field lines, and are neither kept nor matched.
        let lines = b"GET /c HTTP/1.1\nA: 1\r\n\r\n";
        let after_empty = [&b"\r\n"[..], lines].concat();
        let parsed = known.parse(&after_empty).unwrap();
        assert_eq!(request_target(&parsed), ("GET".into(), "/c".into()));
        assert!(
            known
                .parse(&[&b"HTTP/1.1 200\n"[..], lines].concat())
                .is_none()
        );
        // Bare LF line ends parse alone as they do in a whole head.
        let lf = known.parse(b"GET /lf HTTP/1.1\nA: 1\r\n\r\n").unwrap();
        assert_eq!(request_target(&lf), ("GET".into(), "/lf".into()));
    }

    #[test]
    fn parsing_with_kept_lines_equals_parsing_afresh() {
        let heads: [&[u8]; 9] = [
            b"GET / HTTP/1.1\r\nA: 1\r\nB:  x y \r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: 1\r\nB:  x y \r\n\r\n",
            b"HTTP/1.0 404 Not\xffFound\r\nA: 1\r\nB:  x y \r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"PUT /p HTTP/1.1\r\n\r\n",
            b"PUT /p HTTP/1.1\r\nV: caf\xc3\xa9 \xff\r\n\r\n",
            b"POST /p HTTP/1.1\r\nContent-Length: 12\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x1\r\n\r\n",
        ];
        let mut known = KnownFields::default();
        for head in heads.iter().chain(heads.iter().rev()) {
            let kept = known.parse(head).unwrap();
            let fresh = KnownFields::default().parse(head).unwrap();
            assert_eq!(kept.start, fresh.start);
            assert_eq!(kept.version_minor, fresh.version_minor);
            assert_eq!(kept.headers, fresh.headers);
            assert_eq!(kept.framing, fresh.framing);
        }
    }

    #[test]
    fn long_lines_and_start_lines_are_parsed_whole() {
        let mut known = KnownFields::default();
        let big = format!(
            "GET / HTTP/1.1\r\nC: {}\r\n\r\n",
            "c".repeat(MAX_KEPT_LINES)
        );
        known.parse(big.as_bytes()).unwrap();
        assert_eq!(known.held_bytes(), 0, "lines over the bound are not kept");
        known.parse(b"GET / HTTP/1.1\r\nA: 1\r\n\r\n").unwrap();
        assert!(known.held_bytes() > 0);
        // Lines over the bound also free the lines kept before them.
        known.parse(big.as_bytes()).unwrap();
        assert_eq!(known.held_bytes(), 0);
        known.parse(b"GET / HTTP/1.1\r\nA: 1\r\n\r\n").unwrap();
        // Start lines of every length around the bound, with their line end: parsed
        // alone up to MAX_START_LINE bytes, whole beyond it, never out of the buffer.
        let around = MAX_START_LINE - 20..MAX_START_LINE + 20;
        for start_line_len in around {
            let url = "u".repeat(start_line_len - "GET / HTTP/1.1\r\n".len());
            let long = format!("GET /{url} HTTP/1.1\r\nA: 1\r\n\r\n");
            let parsed = known.parse(long.as_bytes()).unwrap();
            assert_eq!(request_target(&parsed).1, format!("/{url}"));
        }
    }

    /// The start line as httparse reads it alone, with a blank line after it.
    fn by_httparse(start_line: &[u8]) -> Option<(StartLine, u8)> {
        let head = [start_line, b"\r\n"].concat();
        let parsed = parse_head(&head, |_| (Fields::default(), Framing::of(&[])))?;
        Some((parsed.start, parsed.version_minor))
    }

    #[test]
    fn plain_start_lines_read_as_httparse_reads_them() {
        let plain: [&[u8]; 10] = [
            b"GET / HTTP/1.1\r\n",
            b"POST /api/items?id=7&x=%20 HTTP/1.0\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"CONNECT example.test:443 HTTP/1.1\r\n",
            b"M /\"{}|\\^`~ HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/1.0 404 Not Found\r\n",
            b"HTTP/1.1 204\r\n",
            b"HTTP/1.1 200 \r\n",
            b"HTTP/1.1 599 a\tb ~ \r\n",
        ];
        for line in plain {
            let quick = plain_start_line(line);
            assert!(quick.is_some(), "{:?}", String::from_utf8_lossy(line));
            assert_eq!(
                quick,
                by_httparse(line),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // Left to httparse: odd but valid lines, and wrong ones.
        let others: [&[u8]; 18] = [
            b"GET / HTTP/1.1\n",
            b"get / HTTP/1.1\r\n",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/1.1 \r\n",
            b"GET /a b HTTP/1.1\r\n",
            b"GET HTTP/1.1\r\n",
            b" / HTTP/1.1\r\n",
            b"GET / HTTP/1.2\r\n",
            b"GET / HTTP/2.0\r\n",
            b"G\x01T / HTTP/1.1\r\n",
            b"HTTP/1.1 200 O\xffK\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 20 OK\r\n",
            b"HTTP/1.1  200 OK\r\n",
            b"HTTP/1.1 200 O\rK\r\n",
            b"HTTP/1.2 200 OK\r\n",
            b"HTTP/1.1 2x0 OK\r\n",
        ];
        for line in others {
            assert_eq!(
                plain_start_line(line),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
