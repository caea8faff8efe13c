//! The lines against each other: how many of each view of an exchange, responses paired
//! with requests on each connection end, and every message seen by both of its ends.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use super::message::{Direction, Kind, Message};

/// Each of the four views of an exchange holds exactly the expected number.
pub(super) fn check_counts(messages: &[Message], expected: u64, problems: &mut Vec<String>) {
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
pub(super) fn check_connections(messages: &[Message], problems: &mut Vec<String>) -> usize {
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
pub(super) fn check_both_sides(messages: &[Message], problems: &mut Vec<String>) {
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
