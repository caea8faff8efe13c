//! Unit tests of the connection table, fed records as the probes would write them.

use http_profiler_common::{DIRECTION_SEND, RecordKind};

use super::*;
use crate::http::StartLine;

const SOCK: u64 = 0xffff_8880_0000_1000;

/// A data record's header for connection SOCK of process 10 (also used by `stages`'s tests).
pub(crate) fn header(direction: u8, pos: u64, len: usize, ts: u64) -> DataHeader {
    DataHeader {
        kind: RecordKind::Data as u32,
        flags: FLAG_LAST_CHUNK,
        tgid: 10,
        tid: 11,
        fd: 3,
        generation: 1,
        sock: SOCK,
        timestamp_ns: ts,
        stream_pos: pos,
        syscall_bytes: len as u64,
        other_pos: 0,
        syscall_offset: 0,
        data_len: len as u32,
        direction,
        _pad: 0,
        family: 2,
        local_port: 40000,
        remote_port: 80,
        local_addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        remote_addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        comm: [0; 16],
    }
}

fn feed(t: &mut Tracker, h: DataHeader, payload: &[u8]) -> Vec<Emitted> {
    let mut out = Vec::new();
    t.on_record(&Record::Data { header: h, payload }, &mut out);
    out
}

fn close(t: &mut Tracker, send_end: u64, recv_end: u64) -> Vec<Emitted> {
    let mut out = Vec::new();
    let rec = CloseRecord {
        kind: RecordKind::Close as u32,
        _pad: 0,
        tgid: 10,
        tid: 11,
        fd: 3,
        generation: 1,
        sock: SOCK,
        timestamp_ns: 0,
        send_end,
        recv_end,
    };
    t.on_record(&Record::Close(rec), &mut out);
    out
}

const REQ: &[u8] = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[test]
fn a_request_and_its_response_on_one_connection_end() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let out = feed(&mut t, header(DIRECTION_SEND, 0, REQ.len(), 1_000), REQ);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].direction, DIRECTION_SEND);
    assert_eq!(
        out[0].endpoints.remote,
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))
    );
    let out = feed(&mut t, header(DIRECTION_RECV, 0, RESP.len(), 5_000), RESP);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].paired.request.as_ref().unwrap().url, "/x");
    assert_eq!(out[0].paired.latency_ns, Some(4_000));
    assert_eq!(out[0].conn_id, 1);
}

#[test]
fn bytes_not_copied_by_the_probe_are_a_flagged_gap_with_the_size_kept() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let head = b"POST /big HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
    let mut payload = head.to_vec();
    payload.extend_from_slice(&[b'a'; 20]);
    // The syscall moved head + 100 bytes, the probe copied head + 20.
    let mut h = header(DIRECTION_SEND, 0, payload.len(), 1);
    h.syscall_bytes = (head.len() + 100) as u64;
    let out = feed(&mut t, h, &payload);
    assert_eq!(out.len(), 1);
    let m = &out[0].paired.message;
    assert!(m.capture_gap && m.body_truncated && m.incomplete.is_none());
    assert_eq!(m.wire_bytes, (head.len() + 100) as u64);
    assert_eq!(m.body_len, 100);
    assert_eq!(t.stats.gap_bytes, 80);
}

#[test]
fn a_lost_record_inside_a_body_is_a_gap() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let head = b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
    assert!(feed(&mut t, header(DIRECTION_SEND, 0, head.len(), 1), head).is_empty());
    // Bytes head.len()..head.len()+6 were lost; the last 4 arrive.
    let out = feed(
        &mut t,
        header(DIRECTION_SEND, head.len() as u64 + 6, 4, 2),
        b"wxyz",
    );
    assert_eq!(out.len(), 1);
    assert!(out[0].paired.message.capture_gap);
    assert_eq!(out[0].paired.message.wire_bytes, head.len() as u64 + 10);
}

#[test]
fn close_writes_what_is_in_progress_and_sees_trailing_loss() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    feed(&mut t, header(DIRECTION_SEND, 0, REQ.len(), 1), REQ);
    let part = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nabc";
    assert!(feed(&mut t, header(DIRECTION_RECV, 0, part.len(), 2), part).is_empty());
    // The probe saw 10 more bytes arrive than userspace got records for.
    let out = close(&mut t, REQ.len() as u64, part.len() as u64 + 10);
    assert_eq!(out.len(), 1);
    let m = &out[0].paired.message;
    assert_eq!(m.incomplete, Some(Incomplete::Closed));
    assert!(m.capture_gap);
    assert_eq!(t.connections(), 0);
}

#[test]
fn a_reused_kernel_socket_starts_a_new_connection() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let part = b"POST /old HTTP/1.1\r\nContent-Length: 50\r\n\r\nabc";
    feed(&mut t, header(DIRECTION_SEND, 0, part.len(), 1), part);
    let mut h = header(DIRECTION_SEND, 0, REQ.len(), 2);
    h.generation = 2;
    let out = feed(&mut t, h, REQ);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].paired.message.incomplete, Some(Incomplete::Closed));
    assert_eq!(out[0].conn_id, 1);
    assert!(matches!(&out[1].paired.message.start, StartLine::Request { url, .. } if url == "/x"));
    assert_eq!(out[1].conn_id, 2);
}

#[test]
fn stalled_messages_time_out_and_idle_connections_are_forgotten() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let part = b"POST /slow HTTP/1.1\r\nContent-Length: 50\r\n\r\nabc";
    feed(&mut t, header(DIRECTION_SEND, 0, part.len(), 1_000), part);
    let mut out = Vec::new();
    t.expire(2_000, 5_000, 50_000, &mut out);
    assert!(out.is_empty());
    t.expire(10_000, 5_000, 50_000, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].paired.message.incomplete, Some(Incomplete::Timeout));
    assert_eq!(t.connections(), 1);
    t.expire(100_000, 5_000, 50_000, &mut out);
    assert_eq!(t.connections(), 0);
}

fn on_sock(sock: u64, pos: u64, payload: &[u8], ts: u64) -> DataHeader {
    let mut h = header(DIRECTION_SEND, pos, payload.len(), ts);
    h.sock = sock;
    h
}

#[test]
fn a_stalled_message_is_found_behind_quiet_connections_and_before_busy_ones() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let exchange = [&b"GET /a HTTP/1.1\r\n\r\n"[..], RESP];
    // Oldest: a finished exchange (quiet). Then a head that stalls. Then a busy one.
    for (d, part) in exchange.iter().enumerate() {
        let mut h = on_sock(1, 0, part, 1_000);
        h.direction = d as u8;
        feed(&mut t, h, part);
    }
    let stalled = b"GET /b HTTP/1.1\r\n";
    feed(&mut t, on_sock(2, 0, stalled, 2_000), stalled);
    feed(&mut t, on_sock(3, 0, stalled, 59_000), stalled);
    let mut out = Vec::new();
    t.expire(60_000, 5_000, 500_000, &mut out);
    let ended: Vec<u64> = out.iter().map(|e| e.conn_id).collect();
    assert_eq!(ended, [2]);
    assert_eq!(out[0].paired.message.incomplete, Some(Incomplete::Timeout));
    // Past the forget horizon the two idle ones go; the busy one stays.
    t.expire(510_000, 5_000, 500_000, &mut out);
    assert_eq!(t.connections(), 1);
}

#[test]
fn a_full_table_evicts_the_least_recently_active_connection() {
    let mut t = Tracker::new(Limits::default(), 2, usize::MAX);
    let start = b"GET /a HTTP/1.1\r\n";
    feed(&mut t, on_sock(1, 0, start, 1), start);
    feed(&mut t, on_sock(2, 0, start, 2), start);
    // The first connection is the older one, but the more recently active.
    feed(
        &mut t,
        on_sock(1, start.len() as u64, b"Host: h\r\n", 3),
        b"Host: h\r\n",
    );
    let out = feed(&mut t, on_sock(3, 0, start, 4), start);
    assert_eq!(t.connections(), 2);
    assert_eq!(t.stats.evicted, 1);
    // The second one's head in progress is written, flagged, as it goes.
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].conn_id, 2);
    assert_eq!(out[0].paired.message.incomplete, Some(Incomplete::Timeout));
}

#[test]
fn a_connection_left_as_not_http_does_not_become_recent() {
    let mut t = Tracker::new(Limits::default(), 2, usize::MAX);
    let binary = vec![0u8; 20 * 1024];
    assert!(
        t.on_record(
            &Record::Data {
                header: on_sock(1, 0, &binary, 1),
                payload: &binary
            },
            &mut Vec::new()
        )
        .is_some()
    );
    let start = b"GET /a HTTP/1.1\r\n";
    feed(&mut t, on_sock(2, 0, start, 2), start);
    // Records already in flight for the first one arrive after the second's.
    feed(&mut t, on_sock(1, binary.len() as u64, b"more", 3), b"more");
    let out = feed(&mut t, on_sock(3, 0, start, 4), start);
    // Ending the HTTP one would have written its head in progress.
    assert!(out.is_empty(), "the HTTP connection was evicted: {out:?}");
    assert_eq!(t.stats.evicted, 1);
}

#[test]
fn memory_is_taken_back_from_the_least_recently_active_connections() {
    let mut t = Tracker::new(Limits::default(), 16, 100 * 1024);
    let start = b"GET / HTTP/1.1\r\n";
    let rest = format!("X-Big: {}", "a".repeat(30 * 1024));
    // The first connection is the oldest, but the most recently active when the fourth
    // takes the total past the limit.
    feed(&mut t, on_sock(1, 0, start, 1), start);
    for sock in 2u64..=3 {
        let head = [&start[..], rest.as_bytes()].concat();
        feed(&mut t, on_sock(sock, 0, &head, sock), &head);
    }
    let touch = on_sock(1, start.len() as u64, rest.as_bytes(), 4);
    feed(&mut t, touch, rest.as_bytes());
    assert_eq!(
        t.stats.evicted_for_memory, 0,
        "the limit was reached too soon"
    );
    let head = [&start[..], rest.as_bytes()].concat();
    let out = feed(&mut t, on_sock(4, 0, &head, 5), &head);
    let ended: Vec<u64> = out.iter().map(|e| e.conn_id).collect();
    assert_eq!(ended, [2, 3]);
    assert_eq!(t.stats.evicted_for_memory, 2);
}

#[test]
fn idle_connections_give_back_their_caches_before_any_is_ended() {
    // Field lines of about 900 bytes: kept by each connection end with their fields,
    // beside a head buffer of the same size, while the connection is idle.
    let request = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(900));
    let idle_exchange = |t: &mut Tracker, sock: u64| {
        for (d, part) in [request.as_bytes(), RESP].into_iter().enumerate() {
            let mut h = on_sock(sock, 0, part, sock);
            h.direction = d as u8;
            assert_eq!(feed(t, h, part).len(), 1);
        }
    };
    let mut probe = Tracker::new(Limits::default(), 64, usize::MAX);
    idle_exchange(&mut probe, 1);
    let per_connection = probe.held_bytes();
    assert!(per_connection > 2 * 900, "{per_connection}");
    // A limit that 20 idle connections pass.
    let limit = per_connection * 15;
    let mut t = Tracker::new(Limits::default(), 64, limit);
    for sock in 1..=20 {
        idle_exchange(&mut t, sock);
    }
    assert_eq!(
        t.stats.evicted_for_memory, 0,
        "an idle connection was ended"
    );
    assert_eq!(t.connections(), 20);
    assert!(t.held_bytes() <= limit, "{} > {limit}", t.held_bytes());
    // Only some of the oldest connections' caches were freed; a freed connection parses
    // its next head whole, as it did its first.
    assert!(t.held_bytes() >= per_connection * 10, "{}", t.held_bytes());
    let mut again = on_sock(1, request.len() as u64, request.as_bytes(), 30);
    again.direction = 0;
    let out = feed(&mut t, again, request.as_bytes());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].paired.message.headers[0].1.len(), 900);
}

fn with_other_pos(mut h: DataHeader, other_pos: u64) -> DataHeader {
    h.other_pos = other_pos;
    h
}

#[test]
fn a_response_whose_request_was_lost_whole_is_flagged_not_paired() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let req_a = b"GET /a HTTP/1.1\r\n\r\n";
    feed(&mut t, header(DIRECTION_SEND, 0, req_a.len(), 1), req_a);
    let a = feed(
        &mut t,
        with_other_pos(header(DIRECTION_RECV, 0, RESP.len(), 2), req_a.len() as u64),
        RESP,
    );
    assert_eq!(a[0].paired.request.as_ref().unwrap().url, "/a");
    // The record of a second request (28 bytes) was lost: only its response arrives, and
    // it says the send direction reached further than userspace saw.
    let sent = req_a.len() as u64 + 28;
    let lost = feed(
        &mut t,
        with_other_pos(
            header(DIRECTION_RECV, RESP.len() as u64, RESP.len(), 3),
            sent,
        ),
        RESP,
    );
    assert!(lost[0].paired.request.is_none() && lost[0].paired.request_lost);
    // The next exchange pairs again.
    let c = feed(&mut t, header(DIRECTION_SEND, sent, REQ.len(), 4), REQ);
    assert_eq!(c.len(), 1);
    let next = (2 * RESP.len()) as u64;
    let resp = feed(
        &mut t,
        with_other_pos(
            header(DIRECTION_RECV, next, RESP.len(), 5),
            sent + REQ.len() as u64,
        ),
        RESP,
    );
    assert_eq!(resp[0].paired.request.as_ref().unwrap().url, "/x");
    assert!(!resp[0].paired.request_lost);
}

#[test]
fn a_connection_first_seen_past_its_start_lost_its_first_records() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    // The request and the start of the response stream were lost.
    let out = feed(
        &mut t,
        with_other_pos(header(DIRECTION_RECV, 0, RESP.len(), 2), REQ.len() as u64),
        RESP,
    );
    assert!(out[0].paired.request.is_none() && out[0].paired.request_lost);
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let out = feed(&mut t, header(DIRECTION_RECV, 40, RESP.len(), 2), RESP);
    assert!(out[0].paired.request_lost);
    // A connection that predates the profiler: nothing before its first record, so a
    // response without a request is not a loss.
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let out = feed(&mut t, header(DIRECTION_RECV, 0, RESP.len(), 2), RESP);
    assert!(out[0].paired.request.is_none() && !out[0].paired.request_lost);
}

/// Found by fuzzing: a record whose stream position plus its syscall's size passes the end
/// of u64 overflowed the arithmetic that finds the uncopied tail.
#[test]
fn positions_at_the_end_of_the_number_range_do_not_overflow() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    feed(&mut t, header(DIRECTION_SEND, 0, REQ.len(), 1), REQ);
    let mut h = header(DIRECTION_SEND, u64::MAX - 10, 4, 2);
    h.syscall_bytes = 100;
    let out = feed(&mut t, h, b"GET ");
    assert!(out.is_empty());
    assert!(t.stats.gap_bytes > u64::MAX / 2);
    let mut out = Vec::new();
    t.finish_all(&mut out);
    assert!(out.iter().all(|e| e.paired.message.incomplete.is_some()));
}

#[test]
fn requests_beyond_the_pending_queue_are_dropped_and_counted() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let n = crate::pairing::MAX_PENDING + 44;
    let mut pos = 0;
    for i in 0..n {
        let req = format!("GET /q{i} HTTP/1.1\r\n\r\n");
        feed(
            &mut t,
            header(DIRECTION_SEND, pos, req.len(), i as u64),
            req.as_bytes(),
        );
        pos += req.len() as u64;
    }
    assert_eq!(t.stats.unpaired_dropped, 44);
    // The oldest were dropped: the next response pairs with the oldest kept request.
    let out = feed(
        &mut t,
        header(DIRECTION_RECV, 0, RESP.len(), 1_000_000),
        RESP,
    );
    assert_eq!(out[0].paired.request.as_ref().unwrap().url, "/q44");
}

#[test]
fn heads_in_progress_past_the_memory_limit_end_the_oldest_connections() {
    let mut t = Tracker::new(Limits::default(), 16, 100 * 1024);
    let mut ended = Vec::new();
    for sock in 1u64..=3 {
        let head = format!("GET /{sock} HTTP/1.1\r\nX-Big: {}", "a".repeat(40 * 1024));
        let h = on_sock(sock, 0, head.as_bytes(), sock);
        ended.extend(feed(&mut t, h, head.as_bytes()));
    }
    // About 120 KiB held against 100 KiB: the oldest go until 75 KiB is left.
    assert_eq!(t.stats.evicted_for_memory, 2);
    assert_eq!(t.connections(), 1);
    assert!(t.held_bytes() <= 75 * 1024, "{}", t.held_bytes());
    let urls: Vec<_> = ended
        .iter()
        .map(|e| {
            let m = &e.paired.message;
            assert_eq!(m.incomplete, Some(Incomplete::Timeout));
            match &m.start {
                StartLine::Request { url, .. } => url.to_string(),
                StartLine::Response { .. } => panic!("a response"),
            }
        })
        .collect();
    assert_eq!(urls, ["/1", "/2"]);
    // What is left is counted down as it goes.
    let mut out = Vec::new();
    t.finish_all(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(t.held_bytes(), 0);
}

#[test]
fn the_connection_being_fed_is_never_ended_for_memory() {
    let mut t = Tracker::new(Limits::default(), 16, 1024);
    let head = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(8 * 1024));
    let out = feed(
        &mut t,
        header(DIRECTION_SEND, 0, head.len(), 1),
        head.as_bytes(),
    );
    assert!(out.is_empty());
    assert_eq!(t.stats.evicted_for_memory, 0);
    // Its head completes and is written whole; what it leaves (a 4 KiB head buffer, the
    // request awaiting its response) is small.
    let out = feed(
        &mut t,
        header(DIRECTION_SEND, head.len() as u64, 4, 2),
        b"\r\n\r\n",
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].paired.message.incomplete, None);
    assert!(t.held_bytes() <= 5 * 1024, "{}", t.held_bytes());
}

#[test]
fn requests_awaiting_responses_count_against_the_memory_limit() {
    let mut t = Tracker::new(Limits::default(), 16, 300 * 1024);
    let long_url = "u".repeat(2048);
    let requests: Vec<u8> = (0..100)
        .flat_map(|i| format!("GET /{i}{long_url} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes())
        .collect();
    for sock in 1u64..=2 {
        let h = on_sock(sock, 0, &requests, sock);
        assert_eq!(feed(&mut t, h, &requests).len(), 100);
    }
    // 100 URLs of 2 KiB waiting on each: the older connection goes.
    assert_eq!(t.stats.evicted_for_memory, 1);
    assert_eq!(t.connections(), 1);
    let waiting = t.held_bytes();
    assert!(waiting > 200 * 1024, "{waiting}");
    // Answered, the requests leave the queue and their bytes with them.
    let responses = RESP.repeat(100);
    let mut h = header(DIRECTION_RECV, 0, responses.len(), 3);
    h.sock = 2;
    let out = feed(&mut t, h, &responses);
    assert_eq!(out.len(), 100);
    assert!(out.iter().all(|e| e.paired.request.is_some()));
    assert!(t.held_bytes() < 20 * 1024, "{}", t.held_bytes());
}

/// Feeds `stream` (pairs of direction and bytes, each one record) and returns the
/// messages, recycling each record's messages before the next record when `recycle`.
fn messages_of(stream: &[(u8, &[u8])], recycle: bool) -> Vec<Message> {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let (mut pos, mut messages) = ([0u64; 2], Vec::new());
    for (i, &(direction, bytes)) in stream.iter().enumerate() {
        let d = direction as usize;
        let h = header(direction, pos[d], bytes.len(), 1_000 * (i as u64 + 1));
        pos[d] += bytes.len() as u64;
        let mut out = feed(&mut t, h, bytes);
        messages.extend(out.iter().map(|e| (*e.paired.message).clone()));
        if recycle {
            t.recycle(&mut out);
        } else {
            out.clear();
        }
    }
    messages
}

/// A message built in the box of one written before reads exactly as one built anew:
/// nothing of the earlier message (its body, trailers, raw bytes, flags) stays behind.
#[test]
fn messages_built_in_recycled_boxes_equal_new_ones() {
    let stream: &[(u8, &[u8])] = &[
        (
            DIRECTION_SEND,
            b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        (DIRECTION_SEND, b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n"),
        (
            DIRECTION_RECV,
            b"HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\ncreated",
        ),
        (DIRECTION_SEND, REQ),
        (DIRECTION_RECV, b"HTTP/1.1 204 No Content\r\n\r\n"),
        (DIRECTION_SEND, b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n"),
        (
            DIRECTION_RECV,
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab",
        ),
        (DIRECTION_RECV, b"cd"),
        (DIRECTION_SEND, REQ),
        (DIRECTION_RECV, RESP),
    ];
    let fresh = messages_of(stream, false);
    assert_eq!(fresh.len(), 8);
    assert_eq!(
        fresh[0].trailers.len(),
        1,
        "the chunked request has a trailer"
    );
    assert_eq!(messages_of(stream, true), fresh);
}

/// What is kept for new messages is bounded: a few boxes, none holding a large body.
#[test]
fn recycling_keeps_few_boxes_and_no_large_buffers() {
    let mut t = Tracker::new(Limits::default(), 16, usize::MAX);
    let mut out = Vec::new();
    let mut pos = 0;
    for _ in 0..2 * MAX_SPARES {
        let h = header(DIRECTION_SEND, pos, REQ.len(), 1_000);
        pos += REQ.len() as u64;
        out.extend(feed(&mut t, h, REQ));
    }
    assert_eq!(out.len(), 2 * MAX_SPARES);
    out[0].paired.message.body.reserve(MAX_SPARE_BYTES + 1);
    t.recycle(&mut out);
    assert!(out.is_empty());
    assert_eq!(t.spares.len(), MAX_SPARES);
    assert!(
        t.spares
            .iter()
            .all(|m| m.body.capacity() <= MAX_SPARE_BYTES)
    );
}
