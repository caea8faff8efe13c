//! `http-profiler check`: verifies a capture of known traffic, such as traffic-gen's
//! `--count N` against demo-server with both on the profiled host. Every request must
//! be there on both sides (sent by the client, received by the server) with its response
//! on both sides, every line must hold the documented fields with the right types, and
//! nothing may be flagged incomplete or cut by a capture gap. The VM tests and the NixOS
//! test use this one checker.
//!
//! Pure: it takes the file's text and returns the problems found.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    time::{Duration, SystemTime},
};

use serde_json::{Map, Value};

/// What the capture must hold.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// Requests the client sent (traffic-gen's `sent`).
    pub requests: u64,
    /// Only lines with this port at either end count; others are ignored.
    pub port: Option<u16>,
}

/// The outcome: no problems means the capture passes.
#[derive(Debug)]
pub struct Verdict {
    pub problems: Vec<String>,
    /// Lines checked (with the port filter, those of that port).
    pub lines: usize,
    /// Lines left out by the port filter.
    pub ignored: usize,
    pub connections: usize,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Direction {
    Send,
    Recv,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Request {
        method: String,
        url: String,
    },
    Response {
        status: u64,
        /// The request it answers, as the profiler paired it.
        answers: Option<(String, String)>,
        latency_ms: Option<f64>,
    },
}

/// One line, with what the checks need.
#[derive(Clone, Debug)]
struct Message {
    line: usize,
    timestamp: SystemTime,
    direction: Direction,
    conn_id: u64,
    source: (IpAddr, u16),
    dest: (IpAddr, u16),
    kind: Kind,
}

impl Message {
    fn describe(&self) -> String {
        let what = match &self.kind {
            Kind::Request { method, url } => format!("request {method} {url}"),
            Kind::Response {
                status, answers, ..
            } => match answers {
                Some((m, u)) => format!("response {status} to {m} {u}"),
                None => format!("response {status}"),
            },
        };
        format!(
            "line {}: {what} from {}:{} to {}:{} (conn_id {})",
            self.line, self.source.0, self.source.1, self.dest.0, self.dest.1, self.conn_id
        )
    }

    fn is_request(&self) -> bool {
        matches!(self.kind, Kind::Request { .. })
    }

    /// 1xx answers other than 101 come before the final response to the same request.
    fn is_interim(&self) -> bool {
        matches!(self.kind, Kind::Response { status, .. } if (100..200).contains(&status) && status != 101)
    }
}

/// Timestamps before this are a monotonic clock printed as wall-clock time.
const EARLIEST: Duration = Duration::from_secs(946_684_800); // 2000-01-01T00:00:00Z
/// Clocks of the capturing host and the checking one may differ a little.
const FUTURE_SLACK: Duration = Duration::from_secs(300);

/// Checks the JSON lines in `text` against `expect`; `now` bounds the timestamps.
pub fn check(text: &str, expect: Expect, now: SystemTime) -> Verdict {
    let mut problems = Vec::new();
    let mut messages = Vec::new();
    let mut ignored = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            problems.push(format!("line {line}: empty"));
            continue;
        }
        let value: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("line {line}: not JSON ({e})"));
                continue;
            }
        };
        let Some(obj) = value.as_object() else {
            problems.push(format!("line {line}: not a JSON object"));
            continue;
        };
        if expect.port.is_some_and(|p| !may_have_port(obj, p)) {
            ignored += 1;
            continue;
        }
        if let Some(m) = parse_message(line, obj, now, &mut problems) {
            messages.push(m);
        }
    }
    if messages.is_empty() && problems.is_empty() {
        problems.push(match expect.port {
            Some(p) => format!("no HTTP message with port {p} in the capture"),
            None => "no HTTP message in the capture".to_string(),
        });
    }
    check_counts(&messages, expect.requests, &mut problems);
    let connections = check_connections(&messages, &mut problems);
    check_both_sides(&messages, &mut problems);
    Verdict {
        problems,
        lines: messages.len(),
        ignored,
        connections,
    }
}

/// Whether a line may belong to the traffic on `port`: it names the port at either end,
/// or its ports cannot be read (then its fields are checked and reported).
fn may_have_port(obj: &Map<String, Value>, port: u16) -> bool {
    let read = |name| obj.get(name).and_then(Value::as_u64);
    match (read("source_port"), read("dest_port")) {
        (Some(s), Some(d)) => s == u64::from(port) || d == u64::from(port),
        _ => true,
    }
}

/// Field access that records what is wrong with a line.
struct Fields<'a> {
    line: usize,
    obj: &'a Map<String, Value>,
    problems: &'a mut Vec<String>,
    ok: bool,
}

impl Fields<'_> {
    fn bad(&mut self, what: String) {
        self.problems.push(format!("line {}: {what}", self.line));
        self.ok = false;
    }

    fn get(&mut self, name: &str) -> Option<&Value> {
        let v = self.obj.get(name);
        if v.is_none() {
            self.problems
                .push(format!("line {}: field `{name}` missing", self.line));
            self.ok = false;
        }
        v
    }

    fn typed<T>(
        &mut self,
        name: &str,
        expected: &str,
        conv: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<T> {
        let v = self.get(name)?.clone();
        let t = conv(&v);
        if t.is_none() {
            self.bad(format!("field `{name}` is {v}, expected {expected}"));
        }
        t
    }

    fn string(&mut self, name: &str) -> Option<String> {
        self.typed(name, "a string", |v| v.as_str().map(str::to_string))
    }

    fn uint(&mut self, name: &str) -> Option<u64> {
        self.typed(name, "a non-negative integer", Value::as_u64)
    }

    fn boolean(&mut self, name: &str) -> Option<bool> {
        self.typed(name, "true or false", Value::as_bool)
    }

    fn port(&mut self, name: &str) -> Option<u16> {
        self.typed(name, "a port number (1-65535)", |v| {
            v.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
        })
    }

    fn ip(&mut self, name: &str) -> Option<IpAddr> {
        self.typed(name, "an IP address", |v| v.as_str()?.parse().ok())
    }

    /// An optional field: absent is fine, present must convert.
    fn optional<T>(
        &mut self,
        name: &str,
        expected: &str,
        conv: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<T> {
        if self.obj.contains_key(name) {
            self.typed(name, expected, conv)
        } else {
            None
        }
    }

    fn string_object(&mut self, name: &str) {
        let ok = self.get(name).map(|v| {
            v.as_object()
                .is_some_and(|o| o.values().all(Value::is_string))
        });
        if ok == Some(false) {
            self.bad(format!(
                "field `{name}` is not an object of strings (header name -> value)"
            ));
        }
    }
}

/// Validates one line's fields (docs/fields.md) and its flags; the message when its
/// identity (time, direction, connection, addresses, start line) could be read.
fn parse_message(
    line: usize,
    obj: &Map<String, Value>,
    now: SystemTime,
    problems: &mut Vec<String>,
) -> Option<Message> {
    let mut f = Fields {
        line,
        obj,
        problems,
        ok: true,
    };
    let timestamp = f.typed("timestamp", "an RFC 3339 time", |v| {
        humantime::parse_rfc3339(v.as_str()?).ok()
    });
    if let Some(t) = timestamp {
        if t < SystemTime::UNIX_EPOCH + EARLIEST {
            f.bad(format!(
                "timestamp {} is before 2000: a monotonic clock shown as wall-clock time",
                humantime::format_rfc3339_nanos(t)
            ));
        } else if t > now + FUTURE_SLACK {
            f.bad(format!(
                "timestamp {} is in the future",
                humantime::format_rfc3339_nanos(t)
            ));
        }
    }
    for name in ["pid", "tid"] {
        if f.uint(name) == Some(0) {
            f.bad(format!("field `{name}` is 0"));
        }
    }
    f.string("comm");
    f.typed("cmdline", "a string or null", |v| {
        (v.is_string() || v.is_null()).then_some(())
    });
    let direction = f.typed("direction", "\"send\" or \"recv\"", |v| match v.as_str() {
        Some("send") => Some(Direction::Send),
        Some("recv") => Some(Direction::Recv),
        _ => None,
    });
    let source = (f.ip("source_ip"), f.port("source_port"));
    let dest = (f.ip("dest_ip"), f.port("dest_port"));
    let bytes = f.uint("bytes");
    f.typed("http_version", "\"1.0\" or \"1.1\"", |v| {
        matches!(v.as_str(), Some("1.0" | "1.1")).then_some(())
    });
    f.string_object("headers");
    if f.obj.contains_key("trailers") {
        f.string_object("trailers");
    }
    f.string("body");
    f.optional("body_encoding", "\"base64\"", |v| {
        (v.as_str() == Some("base64")).then_some(())
    });
    let body_size = f.uint("body_size");
    f.boolean("body_truncated");
    f.optional("body_omitted", "a string", |v| v.as_str().map(|_| ()));
    f.optional("raw_payload", "a string", |v| v.as_str().map(|_| ()));
    f.optional("raw_payload_encoding", "\"base64\"", |v| {
        (v.as_str() == Some("base64")).then_some(())
    });
    let conn_id = f.uint("conn_id");
    if let (Some(b), Some(s)) = (bytes, body_size)
        && s > b
    {
        f.bad(format!(
            "body_size {s} is larger than the message's {b} bytes"
        ));
    }
    if f.boolean("incomplete") == Some(true) {
        let why = f
            .obj
            .get("incomplete_reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        f.bad(format!("flagged incomplete ({why})"));
    }
    if f.boolean("capture_gap") == Some(true) {
        f.bad("flagged capture_gap: bytes of it were never captured".to_string());
    }

    let is_request = f.obj.contains_key("method");
    let is_response = f.obj.contains_key("status_code");
    let kind = match (is_request, is_response) {
        (true, false) => {
            let method = f.string("method");
            let url = f.string("url");
            for stray in ["reason", "latency_ms", "request"] {
                if f.obj.contains_key(stray) {
                    f.bad(format!("a request with field `{stray}`"));
                }
            }
            Some(Kind::Request {
                method: method?,
                url: url?,
            })
        }
        (false, true) => {
            let status = f.typed("status_code", "a status code (100-599)", |v| {
                v.as_u64().filter(|s| (100..=599).contains(s))
            });
            f.string("reason");
            let answers = f.optional("request", "{\"method\", \"url\"} of strings", |v| {
                let r = v.as_object()?;
                Some((
                    r.get("method")?.as_str()?.to_string(),
                    r.get("url")?.as_str()?.to_string(),
                ))
            });
            let latency_ms = f.optional("latency_ms", "a non-negative number", |v| {
                v.as_f64().filter(|l| l.is_finite() && *l >= 0.0)
            });
            Some(Kind::Response {
                status: status?,
                answers,
                latency_ms,
            })
        }
        (true, true) => {
            f.bad("both `method` and `status_code`: neither a request nor a response".into());
            None
        }
        (false, false) => {
            f.bad("neither `method` (a request) nor `status_code` (a response)".into());
            None
        }
    };
    let ok = f.ok;
    let message = Message {
        line,
        timestamp: timestamp?,
        direction: direction?,
        conn_id: conn_id?,
        source: (source.0?, source.1?),
        dest: (dest.0?, dest.1?),
        kind: kind?,
    };
    // A line with problems is reported once; the cross-checks count it as missing.
    ok.then_some(message)
}

/// Each of the four views of an exchange holds exactly the expected number.
fn check_counts(messages: &[Message], expected: u64, problems: &mut Vec<String>) {
    let views = [
        (Direction::Send, true, "requests sent (client side)"),
        (Direction::Recv, true, "requests received (server side)"),
        (Direction::Send, false, "final responses sent (server side)"),
        (
            Direction::Recv,
            false,
            "final responses received (client side)",
        ),
    ];
    for (direction, request, name) in views {
        let n = messages
            .iter()
            .filter(|m| m.direction == direction && m.is_request() == request && !m.is_interim())
            .count() as u64;
        if n != expected {
            problems.push(format!("{name}: {n}, expected {expected}"));
        }
    }
}

/// Per connection end: its requests go one way and its responses the other, timestamps
/// never go back within a direction, and the i-th final response answers the i-th
/// request, after it, with a latency. Returns the number of connection ends.
fn check_connections(messages: &[Message], problems: &mut Vec<String>) -> usize {
    let mut conns: BTreeMap<u64, Vec<&Message>> = BTreeMap::new();
    for m in messages {
        conns.entry(m.conn_id).or_default().push(m);
    }
    for (conn_id, msgs) in &conns {
        let mut last: HashMap<Direction, &Message> = HashMap::new();
        for m in msgs {
            if let Some(prev) = last.get(&m.direction)
                && m.timestamp < prev.timestamp
            {
                problems.push(format!(
                    "line {}: timestamp {} is earlier than line {}'s {} on conn_id {conn_id} ({:?}): \
                     messages of one stream go back in time",
                    m.line,
                    humantime::format_rfc3339_nanos(m.timestamp),
                    prev.line,
                    humantime::format_rfc3339_nanos(prev.timestamp),
                    m.direction
                ));
            }
            last.insert(m.direction, m);
        }
        let requests: Vec<&&Message> = msgs.iter().filter(|m| m.is_request()).collect();
        let responses: Vec<&&Message> = msgs
            .iter()
            .filter(|m| !m.is_request() && !m.is_interim())
            .collect();
        if let Some(first) = requests.first()
            && let Some(odd) = requests
                .iter()
                .chain(responses.iter())
                .find(|m| (m.direction == first.direction) != m.is_request())
        {
            problems.push(format!(
                "{}: goes the wrong way: the requests of this connection end are {:?}",
                odd.describe(),
                first.direction
            ));
        }
        pair_in_order(&requests, &responses, problems);
    }
    conns.len()
}

fn start_line(m: &Message) -> Option<(String, String)> {
    match &m.kind {
        Kind::Request { method, url } => Some((method.clone(), url.clone())),
        Kind::Response { .. } => None,
    }
}

fn answers(m: &Message) -> Option<&(String, String)> {
    match &m.kind {
        Kind::Response { answers, .. } => answers.as_ref(),
        Kind::Request { .. } => None,
    }
}

/// Walks one connection end's requests and final responses in order. A response that
/// names a later request means the requests before it went unanswered; one that names
/// no request still waiting is paired wrongly.
fn pair_in_order(requests: &[&&Message], responses: &[&&Message], problems: &mut Vec<String>) {
    let mut r = 0;
    for (i, req) in requests.iter().enumerate() {
        let Some(resp) = responses.get(r) else {
            problems.push(format!("{}: no response captured", req.describe()));
            continue;
        };
        let named = answers(resp);
        if named != start_line(req).as_ref() {
            let answers_later = requests[i + 1..]
                .iter()
                .any(|later| named == start_line(later).as_ref());
            if answers_later {
                problems.push(format!("{}: no response captured", req.describe()));
                continue;
            }
            problems.push(format!(
                "{}: paired with the wrong request (line {} is {})",
                resp.describe(),
                req.line,
                start_line(req).map_or(String::new(), |(m, u)| format!("{m} {u}"))
            ));
        }
        if let Kind::Response {
            latency_ms: None, ..
        } = resp.kind
        {
            problems.push(format!("{}: no latency_ms", resp.describe()));
        }
        if resp.timestamp < req.timestamp {
            problems.push(format!(
                "{}: starts before its request (line {})",
                resp.describe(),
                req.line
            ));
        }
        r += 1;
    }
    for resp in &responses[r.min(responses.len())..] {
        problems.push(format!("{}: answers no captured request", resp.describe()));
    }
}

/// The key under which one side's message meets the other side's.
fn exchange_key(m: &Message) -> (IpAddr, u16, IpAddr, u16, bool, String) {
    let what = match &m.kind {
        Kind::Request { method, url } => format!("{method} {url}"),
        Kind::Response {
            status, answers, ..
        } => match answers {
            Some((method, url)) => format!("{status} {method} {url}"),
            None => status.to_string(),
        },
    };
    (
        m.source.0,
        m.source.1,
        m.dest.0,
        m.dest.1,
        m.is_request(),
        what,
    )
}

/// Everything sent was received and everything received was sent: the same message,
/// between the same endpoints, on both sides.
fn check_both_sides(messages: &[Message], problems: &mut Vec<String>) {
    let mut unmatched: HashMap<_, Vec<&Message>> = HashMap::new();
    for m in messages.iter().filter(|m| m.direction == Direction::Send) {
        unmatched.entry(exchange_key(m)).or_default().push(m);
    }
    for m in messages.iter().filter(|m| m.direction == Direction::Recv) {
        match unmatched.get_mut(&exchange_key(m)).and_then(Vec::pop) {
            Some(_) => {}
            None => problems.push(format!(
                "{}: received, but the sender's side of it was not captured",
                m.describe()
            )),
        }
    }
    let mut left: Vec<&Message> = unmatched.into_values().flatten().collect();
    left.sort_by_key(|m| m.line);
    for m in left {
        problems.push(format!(
            "{}: sent, but the receiver's side of it was not captured",
            m.describe()
        ));
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
