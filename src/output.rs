//! JSON lines: one object per HTTP message, with the original Go profiler's field names.
//! Every field is described in docs/fields.md.

use base64::Engine as _;
use http_profiler_common::DIRECTION_SEND;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    clock::{WallClock, rfc3339},
    http::StartLine,
    procinfo::ProcessCache,
    redact::{REDACTED, Redactor},
    tracker::Emitted,
};

/// What goes into each line besides the message.
#[derive(Clone, Debug)]
pub struct Format {
    /// Include `raw_payload`.
    pub with_raw: bool,
    pub redact: Redactor,
}

#[derive(Serialize)]
struct RequestRef<'a> {
    method: &'a str,
    url: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    pid: u32,
    tid: u32,
    comm: &'a str,
    cmdline: Option<&'a str>,
    direction: &'static str,
    source_ip: String,
    source_port: u16,
    dest_ip: String,
    dest_port: u16,
    bytes: u64,
    http_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    headers: Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    trailers: Map<String, Value>,
    body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_encoding: Option<&'static str>,
    body_size: u64,
    body_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_omitted: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_payload_encoding: Option<&'static str>,
    conn_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RequestRef<'a>>,
    incomplete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete_reason: Option<&'static str>,
    capture_gap: bool,
}

/// Text as is when it is UTF-8, else base64 with the encoding named.
fn text_or_base64(bytes: &[u8]) -> (String, Option<&'static str>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            Some("base64"),
        ),
    }
}

/// Header fields as an object; repeated fields are joined with ", " under the spelling
/// first seen (RFC 9110 section 5.3).
fn header_object(fields: &[(String, String)], redact: &Redactor) -> Map<String, Value> {
    let mut map = Map::new();
    let mut spelled: Vec<(String, String)> = Vec::new();
    for (name, value) in fields {
        let value = if redact.hides(name) {
            REDACTED
        } else {
            value.as_str()
        };
        let lower = name.to_ascii_lowercase();
        let key = match spelled.iter().find(|(l, _)| *l == lower) {
            Some((_, first)) => first.clone(),
            None => {
                spelled.push((lower, name.clone()));
                name.clone()
            }
        };
        match map.get_mut(&key) {
            Some(Value::String(existing)) => {
                if !(value == REDACTED && existing == REDACTED) {
                    existing.push_str(", ");
                    existing.push_str(value);
                }
            }
            _ => {
                map.insert(key, Value::String(value.to_string()));
            }
        }
    }
    map
}

/// Renders one message as a JSON line (without the newline).
pub fn render(e: &Emitted, procs: &ProcessCache, clock: &WallClock, format: &Format) -> String {
    let m = &e.paired.message;
    let proc = procs.get(m.first.tgid);
    let send = e.direction == DIRECTION_SEND;
    let ep = &e.endpoints;
    let (src, sport, dst, dport) = if send {
        (ep.local, ep.local_port, ep.remote, ep.remote_port)
    } else {
        (ep.remote, ep.remote_port, ep.local, ep.local_port)
    };
    let (method, url, status, reason) = match &m.start {
        StartLine::Request { method, url } => {
            (Some(method.as_str()), Some(url.as_str()), None, None)
        }
        StartLine::Response { status, reason } => {
            (None, None, Some(*status), Some(reason.as_str()))
        }
    };
    let (body, body_encoding) = text_or_base64(&m.body);
    let (raw_payload, raw_payload_encoding) = if format.with_raw {
        let (raw, enc) = text_or_base64(&format.redact.raw(&m.raw));
        (Some(raw), enc)
    } else {
        (None, None)
    };
    let line = Line {
        timestamp: rfc3339(clock.to_wall(m.first.timestamp_ns)),
        pid: m.first.tgid,
        tid: m.first.tid,
        comm: proc.map_or("", |p| p.comm.as_str()),
        cmdline: proc.and_then(|p| p.cmdline.as_deref()),
        direction: if send { "send" } else { "recv" },
        source_ip: src.to_string(),
        source_port: sport,
        dest_ip: dst.to_string(),
        dest_port: dport,
        bytes: m.wire_bytes,
        http_version: if m.version_minor == 0 { "1.0" } else { "1.1" },
        method,
        url,
        status_code: status,
        reason,
        headers: header_object(&m.headers, &format.redact),
        trailers: header_object(&m.trailers, &format.redact),
        body,
        body_encoding,
        body_size: m.body_len,
        body_truncated: m.body_truncated,
        body_omitted: m.body_omitted,
        raw_payload,
        raw_payload_encoding,
        conn_id: e.conn_id,
        latency_ms: e.paired.latency_ns.map(|ns| ns as f64 / 1e6),
        request: e.paired.request.as_ref().map(|r| RequestRef {
            method: &r.method,
            url: &r.url,
        }),
        incomplete: m.incomplete.is_some(),
        incomplete_reason: m.incomplete.map(|i| i.as_str()),
        capture_gap: m.capture_gap,
    };
    serde_json::to_string(&line).expect("a JSON line of strings and numbers always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_joined_under_the_first_spelling() {
        let fields = vec![
            ("Accept".to_string(), "a".to_string()),
            ("X-Rep".to_string(), "1".to_string()),
            ("x-rep".to_string(), "2".to_string()),
        ];
        let obj = header_object(&fields, &Redactor::none());
        assert_eq!(obj["X-Rep"], "1, 2");
        assert_eq!(obj["Accept"], "a");
        assert_eq!(obj.len(), 2);
    }

    #[test]
    fn binary_bodies_are_base64() {
        assert_eq!(text_or_base64(b"hi"), ("hi".to_string(), None));
        assert_eq!(
            text_or_base64(&[0xff, 0x00]),
            ("/wA=".to_string(), Some("base64"))
        );
    }
}
