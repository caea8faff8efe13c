//! `http-profiler check`: verifies a capture of known traffic, such as traffic-gen's
//! `--count N` against demo-server with both on the profiled host. Every request must
//! be there on both sides (sent by the client, received by the server) with its response
//! on both sides, every line must hold the documented fields with the right types, and
//! nothing may be flagged incomplete or cut by a capture gap. The VM tests and the NixOS
//! test use this one checker.
//!
//! Pure: it takes the file's text and returns the problems found.
//!
//! `message` reads and validates each line; `exchanges` checks the lines against each
//! other: counts, pairing per connection, and both sides of every message.

mod exchanges;
mod message;

use std::time::SystemTime;

use serde_json::{Map, Value};

use message::parse_message;

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
    exchanges::check_counts(&messages, expect.requests, &mut problems);
    let connections = exchanges::check_connections(&messages, &mut problems);
    exchanges::check_both_sides(&messages, &mut problems);
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

#[cfg(test)]
mod tests;
