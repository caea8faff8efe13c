//! Unit tests of the HTTP/1.x parser, with the pairing stage as its sink.

use super::*;
use crate::pairing::{Paired, Pairing};

/// One connection end: a parser per direction sharing one pairing queue.
struct Conn {
    requests: Parser,
    responses: Parser,
    pairing: Pairing,
    out: Vec<Paired>,
    clock: u64,
}

impl Conn {
    fn new(limits: Limits) -> Self {
        Self {
            requests: Parser::new(limits),
            responses: Parser::new(limits),
            pairing: Pairing::default(),
            out: Vec::new(),
            clock: 0,
        }
    }
    fn meta(&mut self) -> ChunkMeta {
        self.clock += 1_000_000;
        ChunkMeta {
            timestamp_ns: self.clock,
            tgid: 7,
            tid: 8,
        }
    }
    fn req(&mut self, bytes: &[u8]) {
        let meta = self.meta();
        self.requests
            .feed(bytes, meta, &mut self.pairing.sink(&mut self.out));
    }
    fn resp(&mut self, bytes: &[u8]) {
        let meta = self.meta();
        self.responses
            .feed(bytes, meta, &mut self.pairing.sink(&mut self.out));
    }
    /// `n` request bytes missing, for reason `why`.
    fn req_gap(&mut self, n: u64, why: Missing) {
        self.requests
            .gap(n, why, &mut self.pairing.sink(&mut self.out));
    }
    /// `n` response bytes missing, for reason `why`.
    fn resp_gap(&mut self, n: u64, why: Missing) {
        self.responses
            .gap(n, why, &mut self.pairing.sink(&mut self.out));
    }
    fn close(&mut self) {
        self.requests
            .end(Incomplete::Closed, &mut self.pairing.sink(&mut self.out));
        self.responses
            .end(Incomplete::Closed, &mut self.pairing.sink(&mut self.out));
    }
    fn messages(&self) -> Vec<&Message> {
        self.out.iter().map(|p| &*p.message).collect()
    }
}

fn request(m: &Message) -> (&str, &str) {
    match &m.start {
        StartLine::Request { method, url } => (method, url),
        other => panic!("not a request: {other:?}"),
    }
}

fn status(m: &Message) -> u16 {
    match &m.start {
        StartLine::Response { status, .. } => *status,
        other => panic!("not a response: {other:?}"),
    }
}

const POST: &[u8] =
    b"POST /echo?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-Rep: 1\r\nx-rep: 2\r\n\r\nhello";

#[test]
fn request_split_byte_by_byte() {
    let mut c = Conn::new(Limits::default());
    for b in POST {
        c.req(std::slice::from_ref(b));
    }
    let msgs = c.messages();
    assert_eq!(msgs.len(), 1);
    let m = msgs[0];
    assert_eq!(request(m), ("POST", "/echo?x=1"));
    assert_eq!(m.body, b"hello");
    assert_eq!(m.wire_bytes, POST.len() as u64);
    assert_eq!(m.raw, POST);
    assert_eq!(m.incomplete, None);
    assert!(!m.body_truncated);
    assert_eq!(
        m.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-rep"))
            .count(),
        2
    );
    // The first byte's syscall, not the last one's, dates the message.
    assert_eq!(m.first.timestamp_ns, 1_000_000);
    assert_eq!(m.last_timestamp_ns, POST.len() as u64 * 1_000_000);
}

#[test]
fn two_pipelined_requests_in_one_read_pair_in_order() {
    let mut c = Conn::new(Limits::default());
    c.req(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    c.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nBB");
    let urls: Vec<_> = c
        .out
        .iter()
        .filter(|p| p.message.is_request())
        .map(|p| request(&p.message).1)
        .collect();
    assert_eq!(urls, ["/a", "/b"]);
    let responses: Vec<_> = c.out.iter().filter(|p| !p.message.is_request()).collect();
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].request.as_ref().unwrap().url, "/a");
    assert_eq!(status(&responses[0].message), 200);
    assert_eq!(responses[0].message.body, b"A");
    assert_eq!(responses[1].request.as_ref().unwrap().url, "/b");
    assert_eq!(status(&responses[1].message), 404);
    assert_eq!(responses[1].message.body, b"BB");
    assert!(responses.iter().all(|r| r.latency_ns.is_some()));
}

#[test]
fn chunked_body_with_extensions_and_trailers_is_decoded() {
    let wire: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\n";
    for piece in [1, 3, 7, wire.len()] {
        let mut c = Conn::new(Limits::default());
        c.req(b"GET /c HTTP/1.1\r\n\r\n");
        for part in wire.chunks(piece) {
            c.resp(part);
        }
        let m = c.messages()[1];
        assert_eq!(m.body, b"Wikipedia", "piece {piece}");
        assert_eq!(m.trailers, vec![("X-Trailer".into(), "yes".into())]);
        assert_eq!(m.wire_bytes, wire.len() as u64);
        assert_eq!(m.incomplete, None);
    }
}

#[test]
fn chunked_request_upload_is_decoded() {
    let mut c = Conn::new(Limits::default());
    c.req(b"PUT /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(c.messages()[0].body, b"abc");
}

#[test]
fn head_204_and_304_responses_have_no_body() {
    let mut c = Conn::new(Limits::default());
    c.req(b"HEAD /h HTTP/1.1\r\n\r\n");
    // A response to HEAD carries the Content-Length of the GET it stands for, no body.
    c.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    c.req(b"DELETE /d HTTP/1.1\r\n\r\n");
    c.resp(b"HTTP/1.1 204 No Content\r\n\r\n");
    c.req(b"GET /n HTTP/1.1\r\nIf-None-Match: x\r\n\r\n");
    c.resp(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 20\r\n\r\n");
    let responses: Vec<_> = c.out.iter().filter(|p| !p.message.is_request()).collect();
    assert_eq!(
        responses
            .iter()
            .map(|p| status(&p.message))
            .collect::<Vec<_>>(),
        [200, 204, 304]
    );
    assert_eq!(
        responses
            .iter()
            .map(|p| p.request.as_ref().unwrap().method.as_str())
            .collect::<Vec<_>>(),
        ["HEAD", "DELETE", "GET"]
    );
    assert!(
        responses
            .iter()
            .all(|p| p.message.body.is_empty() && p.message.incomplete.is_none())
    );
}

#[test]
fn bodies_of_zero_one_and_a_mebibyte() {
    let mib = 1024 * 1024;
    for size in [0usize, 1, mib] {
        let body = vec![b'x'; size];
        let mut wire = format!("POST /b HTTP/1.1\r\nContent-Length: {size}\r\n\r\n").into_bytes();
        let head_len = wire.len();
        wire.extend_from_slice(&body);
        // Large enough to keep it all.
        let mut c = Conn::new(Limits {
            max_body: 2 * mib,
            ..Limits::default()
        });
        for part in wire.chunks(65536) {
            c.req(part);
        }
        let m = c.messages()[0];
        assert_eq!(m.body.len(), size);
        assert!(!m.body_truncated);
        assert_eq!(m.wire_bytes, (head_len + size) as u64);
        // The default cap keeps 16 KiB and says so, with the size still exact.
        let mut c = Conn::new(Limits::default());
        c.req(&wire);
        let m = c.messages()[0];
        assert_eq!(m.body.len(), size.min(16384));
        assert_eq!(m.body_truncated, size > 16384);
        assert_eq!(m.body_len, size as u64);
        assert_eq!(m.raw.len(), wire.len().min(4096));
    }
}

#[test]
fn bytes_that_are_not_http_at_the_start_give_no_message() {
    let mut c = Conn::new(Limits::default());
    c.req(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ]);
    c.req(b"\x00\x01binary stuff\r\n\r\nmore");
    c.close();
    assert!(c.out.is_empty());
}

#[test]
fn resyncs_at_the_next_message_after_garbage() {
    let mut c = Conn::new(Limits::default());
    c.req(b"garbage line\r\nGET /ok HTTP/1.1\r\n\r\n");
    assert_eq!(request(c.messages()[0]).1, "/ok");
}

#[test]
fn connection_closed_mid_body_writes_a_flagged_message() {
    let mut c = Conn::new(Limits::default());
    c.req(b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    assert!(c.out.is_empty());
    c.close();
    let m = c.messages()[0];
    assert_eq!(m.incomplete, Some(Incomplete::Closed));
    assert!(m.body_truncated);
    assert_eq!(m.body, b"abc");
}

#[test]
fn response_without_length_runs_to_close() {
    let mut c = Conn::new(Limits::default());
    c.req(b"GET / HTTP/1.0\r\n\r\n");
    c.resp(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of");
    c.resp(b" this");
    assert_eq!(c.out.len(), 1);
    c.close();
    let m = c.messages()[1];
    assert_eq!(m.body, b"all of this");
    assert_eq!(m.incomplete, None);
    assert_eq!(m.version_minor, 0);
}

#[test]
fn a_gap_inside_a_sized_body_keeps_framing() {
    let mut c = Conn::new(Limits::default());
    c.req(b"POST /g HTTP/1.1\r\nContent-Length: 10\r\n\r\nab");
    c.req_gap(5, Missing::Lost);
    c.req(b"cdeGET /next HTTP/1.1\r\n\r\n");
    let msgs = c.messages();
    assert_eq!(msgs.len(), 2);
    assert!(msgs[0].capture_gap && msgs[0].body_truncated);
    assert_eq!(msgs[0].wire_bytes, 40 + 10);
    assert_eq!(msgs[0].incomplete, None);
    assert_eq!(request(msgs[1]).1, "/next");
}

#[test]
fn a_gap_inside_a_chunked_body_flags_it_and_resyncs() {
    let mut c = Conn::new(Limits::default());
    c.req(b"GET /c HTTP/1.1\r\n\r\n");
    c.resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
    c.resp_gap(100, Missing::Lost);
    c.resp(b"xyz\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
    let responses: Vec<_> = c.out.iter().filter(|p| !p.message.is_request()).collect();
    assert_eq!(responses[0].message.incomplete, Some(Incomplete::Gap));
    assert!(responses[0].message.capture_gap);
    assert_eq!(status(&responses[1].message), 204);
}

#[test]
fn continue_and_final_response_pair_with_one_request() {
    let mut c = Conn::new(Limits::default());
    c.req(b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    c.resp(b"HTTP/1.1 100 Continue\r\n\r\n");
    c.req(b"abc");
    c.resp(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    let responses: Vec<_> = c.out.iter().filter(|p| !p.message.is_request()).collect();
    assert_eq!(responses.len(), 2);
    assert!(
        responses
            .iter()
            .all(|r| r.request.as_ref().unwrap().url == "/up")
    );
    assert_eq!(responses[1].latency_ns, Some(1_000_000));
}

#[test]
fn switching_protocols_stops_parsing() {
    let mut c = Conn::new(Limits::default());
    c.req(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    c.resp(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello");
    assert!(c.responses.switched_protocols());
    c.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(c.out.len(), 2);
}

#[test]
fn oversized_head_is_cut_and_flagged() {
    let mut c = Conn::new(Limits {
        max_head: 1024,
        ..Limits::default()
    });
    let mut wire = b"GET /big HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        wire.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(20)).as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    c.req(&wire);
    c.req(b"GET /after HTTP/1.1\r\n\r\n");
    let msgs = c.messages();
    assert_eq!(msgs[0].incomplete, Some(Incomplete::BadHead));
    assert_eq!(request(msgs[0]).1, "/big");
    assert_eq!(request(msgs[msgs.len() - 1]).1, "/after");
}

#[test]
fn an_endless_head_of_noise_after_a_method_gives_no_message() {
    let mut c = Conn::new(Limits {
        max_head: 1024,
        ..Limits::default()
    });
    let mut wire = b"GET \xff\xfe\x01junk\n".to_vec();
    wire.extend(std::iter::repeat_n(b'x', 4096));
    c.req(&wire);
    c.close();
    assert!(c.out.is_empty());
}

#[test]
fn a_body_sent_by_sendfile_is_counted_flagged_and_keeps_the_stream_in_sync() {
    let mut c = Conn::new(Limits::default());
    c.req(b"GET /file HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
    c.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 2097152\r\n\r\n");
    c.resp_gap(2097152, Missing::Omitted("sendfile"));
    c.resp(b"HTTP/1.1 204 No Content\r\n\r\n");
    let responses: Vec<_> = c.out.iter().filter(|p| !p.message.is_request()).collect();
    assert_eq!(responses.len(), 2);
    let file = &responses[0].message;
    assert_eq!(file.body_omitted, Some("sendfile"));
    assert!(!file.capture_gap && file.incomplete.is_none() && file.body.is_empty());
    assert_eq!(file.body_len, 2097152);
    assert_eq!(responses[1].request.as_ref().unwrap().url, "/next");
}

fn paired_url(p: &Paired) -> Option<&str> {
    p.request.as_ref().map(|r| r.url.as_str())
}

#[test]
fn a_whole_exchange_lost_on_both_sides_costs_one_flagged_response() {
    let mut c = Conn::new(Limits::default());
    c.req(b"GET /a HTTP/1.1\r\n\r\n");
    c.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    // GET /x and its response are lost; each side learns of it with its next record.
    c.req_gap(19, Missing::Lost);
    c.req(b"GET /c HTTP/1.1\r\n\r\n");
    c.resp_gap(38, Missing::Lost);
    c.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc");
    c.req(b"GET /d HTTP/1.1\r\n\r\n");
    c.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nd");
    let responses: Vec<_> = c.out.iter().filter(|p| !p.message.is_request()).collect();
    let pairs: Vec<_> = responses
        .iter()
        .map(|p| (paired_url(p), p.request_lost))
        .collect();
    assert_eq!(
        pairs,
        [(Some("/a"), false), (None, true), (Some("/d"), false)]
    );
}

#[test]
fn after_a_loss_responses_are_flagged_until_one_request_waits_alone() {
    let mut c = Conn::new(Limits::default());
    c.req(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    // The response to /a is lost whole: FIFO order would pair /b's response with /a.
    c.resp_gap(38, Missing::Lost);
    c.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb");
    c.req(b"GET /c HTTP/1.1\r\n\r\n");
    c.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc");
    let responses: Vec<_> = c.out.iter().filter(|p| !p.message.is_request()).collect();
    assert_eq!(responses.len(), 2);
    assert_eq!(paired_url(responses[0]), None);
    assert!(responses[0].request_lost && responses[0].latency_ns.is_none());
    assert_eq!(paired_url(responses[1]), Some("/c"));
    assert!(!responses[1].request_lost && responses[1].latency_ns.is_some());
}

#[test]
fn a_gap_inside_a_body_keeps_pairing_certain() {
    let mut c = Conn::new(Limits::default());
    c.req(b"POST /g HTTP/1.1\r\nContent-Length: 10\r\n\r\nab");
    c.req_gap(5, Missing::Lost);
    c.req(b"cde");
    c.resp(b"HTTP/1.1 204 No Content\r\n\r\n");
    let response = c.out.last().unwrap();
    assert_eq!(paired_url(response), Some("/g"));
    assert!(!response.request_lost);
}

/// Found by fuzzing: a gap as large as the number range inside a body that runs to the
/// close, then more body bytes, overflowed the message's size counters.
#[test]
fn sizes_saturate_after_a_gap_as_large_as_the_number_range() {
    let mut c = Conn::new(Limits::default());
    c.req(b"GET / HTTP/1.0\r\n\r\n");
    c.resp(b"HTTP/1.0 200 OK\r\n\r\nab");
    c.resp_gap(u64::MAX, Missing::Lost);
    c.resp(b"cd");
    c.close();
    let m = c.messages()[1];
    assert_eq!((m.wire_bytes, m.body_len), (u64::MAX, u64::MAX));
    assert!(m.capture_gap && m.body_truncated);
}

#[test]
fn an_endless_trailer_section_is_cut_at_the_header_limit() {
    let mut c = Conn::new(Limits::default());
    c.req(b"GET /t HTTP/1.1\r\n\r\n");
    c.resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n");
    for i in 0..10_000 {
        c.resp(format!("X-T{i}: v\r\n").as_bytes());
    }
    let m = c.messages()[1];
    assert_eq!(m.trailers.len(), MAX_HEADERS);
    assert_eq!(m.incomplete, Some(Incomplete::BadHead));
    assert_eq!(m.body, b"ok");
    c.resp(b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(status(c.messages().last().unwrap()), 204);
}

#[test]
fn a_large_head_leaves_no_large_buffer_behind() {
    let mut c = Conn::new(Limits::default());
    // In two pieces: a head that comes whole is parsed where it lies, without the buffer.
    c.req(b"GET /a HTTP/1.1\r\nHo");
    c.req(b"st: h\r\n\r\n");
    let small = c.requests.head.capacity();
    assert!(small > 0, "a small head's buffer is kept for the next one");
    let big = format!(
        "GET /b HTTP/1.1\r\nCookie: {}\r\n\r\n",
        "c".repeat(40 * 1024)
    );
    // In pieces, as a socket delivers it: the buffer grows past 40 KiB on the way.
    for piece in big.as_bytes().chunks(1000) {
        c.req(piece);
    }
    let urls: Vec<&str> = c
        .messages()
        .iter()
        .map(|m| match &m.start {
            StartLine::Request { url, .. } => url.as_str(),
            StartLine::Response { .. } => "",
        })
        .collect();
    assert_eq!(urls, ["/a", "/b"]);
    assert!(
        c.requests.head.capacity() <= KEEP_HEAD_CAPACITY,
        "{} bytes kept after a 40 KiB head",
        c.requests.head.capacity()
    );
    // A start that turns out not to be HTTP gives its buffer back the same way.
    c.req(b"GE");
    c.req(&[b'X'; 20 * 1024]);
    assert_eq!(c.messages().len(), 2);
    assert!(c.requests.head.capacity() <= KEEP_HEAD_CAPACITY);
}

#[test]
fn a_body_in_progress_counts_the_fields_of_its_head() {
    let mut c = Conn::new(Limits::default());
    let value = "v".repeat(1000);
    let fields: String = (0..20).map(|i| format!("X-{i}: {value}\r\n")).collect();
    c.req(format!("POST / HTTP/1.1\r\n{fields}Content-Length: 10\r\n\r\n12345").as_bytes());
    assert!(c.messages().is_empty());
    let held = c.requests.held_bytes();
    assert!(held >= 20 * 1000, "{held}");
    c.req(b"67890");
    assert_eq!(c.messages().len(), 1);
    assert!(c.requests.held_bytes() <= KEEP_HEAD_CAPACITY);
}

/// The head-end search against the plain definition (the first CRLF CRLF whose first byte
/// is at most 3 before `from`, else the first LF LF at most 1 before it), over every
/// string of up to 8 bytes of CR, LF and one other byte, from every position.
#[test]
fn head_end_is_the_first_blank_line_from_near_where_the_search_resumes() {
    fn reference(head: &[u8], from: usize) -> Option<usize> {
        let find = |start: usize, blank: &[u8]| {
            (start..head.len())
                .find(|&i| head[i..].starts_with(blank))
                .map(|i| i + blank.len())
        };
        find(from.saturating_sub(3), b"\r\n\r\n").or_else(|| find(from.saturating_sub(1), b"\n\n"))
    }
    let mut checked = 0;
    for len in 0..=8u32 {
        for mut code in 0..3usize.pow(len) {
            let head: Vec<u8> = (0..len)
                .map(|_| {
                    let b = [b'\r', b'\n', b'a'][code % 3];
                    code /= 3;
                    b
                })
                .collect();
            for from in 0..=head.len() {
                assert_eq!(
                    find_head_end(&head, from),
                    reference(&head, from),
                    "{head:?} from {from}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50_000, "{checked}");
}

/// `head_len` covers only a head parsed whole, and never more than `raw` holds: the
/// bytes it covers are not searched again for fields to redact.
#[test]
fn head_len_is_the_parsed_head_within_the_raw_payload() {
    let mut c = Conn::new(Limits {
        max_raw: 20,
        ..Limits::default()
    });
    c.req(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    c.req(b"GET /cut HTTP/1.1\r\nHost: h\r\nX-Long: 0123456789\r\n\r\n");
    c.req(b"GET /partial HTTP/1.1\r\nCookie: a");
    c.close();
    let msgs = c.messages();
    assert_eq!(msgs.len(), 3);
    assert_eq!((msgs[0].head_len, msgs[0].raw.len()), (20, 20));
    assert_eq!((msgs[1].head_len, msgs[1].raw.len()), (20, 20));
    assert_eq!(msgs[2].incomplete, Some(Incomplete::Closed));
    assert_eq!(msgs[2].head_len, 0);

    let mut c = Conn::new(Limits::default());
    c.req(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.messages()[0].head_len, 27);
}

#[test]
fn field_values_keep_utf8_and_replace_bytes_that_are_not() {
    let mut c = Conn::new(Limits::default());
    c.req("GET / HTTP/1.1\r\nX-Ascii: plain\r\nX-Utf8: caf\u{e9} \u{1F600}\r\nX-Latin1: caf\u{e9}\r\n\r\n".as_bytes());
    c.req(b"GET / HTTP/1.1\r\nX-Latin1: caf\xe9\r\nX-Cut: \xf0\x9f\x98\r\n\r\n");
    let msgs = c.messages();
    let values =
        |m: &Message| -> Vec<String> { m.headers.iter().map(|(_, v)| v.to_string()).collect() };
    assert_eq!(
        values(msgs[0]),
        ["plain", "caf\u{e9} \u{1F600}", "caf\u{e9}"]
    );
    assert_eq!(values(msgs[1]), ["caf\u{FFFD}", "\u{FFFD}"]);
}

/// `starts_like_message` as slices: every start, compared as far as `buf` goes.
fn starts_like_message_by_slices(buf: &[u8]) -> bool {
    MESSAGE_STARTS.iter().any(|p| {
        let n = p.len().min(buf.len());
        buf[..n] == p[..n]
    })
}

#[test]
fn message_starts_compared_as_numbers_agree_with_slices() {
    let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), b"GET /x HTTP/1.1".to_vec()];
    for start in MESSAGE_STARTS {
        let long = [start, b"/index.html HTTP/1.1\r\n"].concat();
        for len in 0..=long.len().min(12) {
            let prefix = long[..len].to_vec();
            // Each byte changed in turn, to its other case and to a byte no start has.
            for i in 0..len {
                for replace in [prefix[i] ^ 0x20, b'x', 0, 0xff] {
                    let mut changed = prefix.clone();
                    changed[i] = replace;
                    inputs.push(changed);
                }
            }
            inputs.push(prefix);
        }
    }
    let mut accepted = 0;
    for input in &inputs {
        let expected = starts_like_message_by_slices(input);
        assert_eq!(starts_like_message(input), expected, "{input:?}");
        accepted += usize::from(expected);
    }
    // Both answers occur: the comparison is not vacuous.
    assert!(
        accepted > 100 && accepted < inputs.len() - 100,
        "{accepted}"
    );
}

#[test]
fn head_ends_found_by_one_search_are_those_found_line_by_line() {
    let heads: [&[u8]; 6] = [
        POST,
        b"GET / HTTP/1.1\nA: 1\n\nbody\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: 1\n\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: 1\r\n",
        b"\r\n\r\n",
        b"\r\n\r\r\n\r\n\n\n",
    ];
    let mut found = 0;
    for head in heads {
        for from in 0..=head.len() + 1 {
            let line_by_line = blank_line_end(head, from.saturating_sub(3), b"\r\n\r\n")
                .or_else(|| blank_line_end(head, from.saturating_sub(1), b"\n\n"));
            assert_eq!(find_head_end(head, from), line_by_line, "{head:?} {from}");
            found += usize::from(line_by_line.is_some());
        }
    }
    assert!(found > 20, "{found}");
}
