//! One line of the capture: its fields checked against docs/fields.md, and what the
//! cross-checks need from it.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime},
};

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Direction {
    Send,
    Recv,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Kind {
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
pub(super) struct Message {
    pub(super) line: usize,
    pub(super) timestamp: SystemTime,
    pub(super) direction: Direction,
    pub(super) conn_id: u64,
    pub(super) source: (IpAddr, u16),
    pub(super) dest: (IpAddr, u16),
    pub(super) kind: Kind,
}

impl Message {
    pub(super) fn describe(&self) -> String {
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

    pub(super) fn is_request(&self) -> bool {
        matches!(self.kind, Kind::Request { .. })
    }

    /// 1xx answers other than 101 come before the final response to the same request.
    pub(super) fn is_interim(&self) -> bool {
        matches!(self.kind, Kind::Response { status, .. } if (100..200).contains(&status) && status != 101)
    }
}

/// Timestamps before this are a monotonic clock printed as wall-clock time.
const EARLIEST: Duration = Duration::from_secs(946_684_800); // 2000-01-01T00:00:00Z
/// Clocks of the capturing host and the checking one may differ a little.
const FUTURE_SLACK: Duration = Duration::from_secs(300);

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
pub(super) fn parse_message(
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
