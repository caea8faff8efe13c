use std::time::Duration;

use super::*;

use serde_json::json;

const CLIENT: &str = "10.0.0.1";
const SERVER: &str = "10.0.0.2";
const SERVER_PORT: u16 = 8080;

fn now() -> SystemTime {
    humantime::parse_rfc3339("2026-11-25T19:00:00Z").unwrap()
}

fn at(ms: u64) -> String {
    let t = humantime::parse_rfc3339("2026-11-25T18:00:00Z").unwrap() + Duration::from_millis(ms);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// One line as the profiler writes it.
fn line(
    ms: u64,
    direction: &str,
    conn_id: u64,
    client_port: u16,
    kind: serde_json::Value,
) -> serde_json::Value {
    let request = kind.get("method").is_some();
    // Requests go client -> server, responses server -> client.
    let (src, sport, dst, dport) = if request {
        (CLIENT, client_port, SERVER, SERVER_PORT)
    } else {
        (SERVER, SERVER_PORT, CLIENT, client_port)
    };
    let mut v = json!({
        "timestamp": at(ms), "pid": 10, "tid": 11, "comm": "x", "cmdline": null,
        "direction": direction, "source_ip": src, "source_port": sport, "dest_ip": dst,
        "dest_port": dport, "bytes": 100, "http_version": "1.1", "headers": {"Host": "a"},
        "body": "", "body_size": 0, "body_truncated": false, "raw_payload": "GET / HTTP/1.1\r\n",
        "conn_id": conn_id, "incomplete": false, "capture_gap": false,
    });
    v.as_object_mut()
        .unwrap()
        .extend(kind.as_object().unwrap().clone());
    v
}

fn request(url: &str) -> serde_json::Value {
    json!({"method": "GET", "url": url})
}

fn response(url: &str) -> serde_json::Value {
    json!({"status_code": 200, "reason": "OK", "latency_ms": 0.5,
           "request": {"method": "GET", "url": url}})
}

/// `n` exchanges over two kept-alive connections, each seen from both ends: the order in
/// which the profiler writes them (client request, server request, server response,
/// client response).
fn capture(n: u64) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for i in 0..n {
        let (client_conn, server_conn, port) = if i % 2 == 0 {
            (1, 2, 40000)
        } else {
            (3, 4, 40001)
        };
        let url = format!("/item/{i}");
        let t = i * 10;
        lines.push(line(t, "send", client_conn, port, request(&url)));
        lines.push(line(t + 1, "recv", server_conn, port, request(&url)));
        lines.push(line(t + 2, "send", server_conn, port, response(&url)));
        lines.push(line(t + 3, "recv", client_conn, port, response(&url)));
    }
    lines
}

fn text(lines: &[serde_json::Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn run(lines: &[serde_json::Value], requests: u64) -> Verdict {
    check(
        &text(lines),
        Expect {
            requests,
            port: None,
        },
        now(),
    )
}

fn assert_problem(v: &Verdict, needle: &str) {
    assert!(!v.passed());
    assert!(
        v.problems.iter().any(|p| p.contains(needle)),
        "no problem mentions {needle:?}: {:#?}",
        v.problems
    );
}

#[test]
fn a_complete_capture_passes() {
    let v = run(&capture(6), 6);
    assert!(v.passed(), "{:#?}", v.problems);
    assert_eq!((v.lines, v.connections), (24, 4));
}

#[test]
fn an_empty_file_fails() {
    let v = check(
        "",
        Expect {
            requests: 5,
            port: None,
        },
        now(),
    );
    assert_problem(&v, "no HTTP message in the capture");
    assert_problem(&v, "requests sent (client side): 0, expected 5");
    assert_problem(&v, "final responses received (client side): 0, expected 5");
}

#[test]
fn a_missing_response_fails_and_is_named() {
    let mut lines = capture(4);
    // The client's view of the third response.
    lines.remove(11);
    let v = run(&lines, 4);
    assert_problem(&v, "final responses received (client side): 3, expected 4");
    assert_problem(
        &v,
        "request GET /item/2 from 10.0.0.1:40000 to 10.0.0.2:8080 (conn_id 1): no response captured",
    );
    assert_problem(&v, "line 11: response 200 to GET /item/2");
    assert_problem(&v, "sent, but the receiver's side of it was not captured");
}

#[test]
fn a_request_seen_by_one_side_only_fails() {
    let mut lines = capture(2);
    lines.remove(1);
    let v = run(&lines, 2);
    assert_problem(&v, "requests received (server side): 1, expected 2");
    assert_problem(&v, "line 1: request GET /item/0");
    assert_problem(&v, "receiver's side of it was not captured");
}

#[test]
fn wrong_counts_fail_both_ways() {
    assert_problem(&run(&capture(3), 4), "expected 4");
    assert_problem(&run(&capture(3), 2), "expected 2");
    let mut lines = capture(2);
    lines.push(lines[0].clone());
    assert_problem(
        &run(&lines, 2),
        "requests sent (client side): 3, expected 2",
    );
}

#[test]
fn incomplete_and_gap_flags_fail() {
    let mut lines = capture(2);
    lines[2]["incomplete"] = json!(true);
    lines[2]["incomplete_reason"] = json!("closed");
    lines[5]["capture_gap"] = json!(true);
    let v = run(&lines, 2);
    assert_problem(&v, "line 3: flagged incomplete (closed)");
    assert_problem(&v, "line 6: flagged capture_gap");
}

#[test]
fn missing_and_mistyped_fields_fail() {
    let mut lines = capture(1);
    lines[0].as_object_mut().unwrap().remove("tid");
    lines[1]["pid"] = json!("10");
    lines[2]["status_code"] = json!(700);
    lines[3]["latency_ms"] = json!(-1.0);
    let v = run(&lines, 1);
    assert_problem(&v, "line 1: field `tid` missing");
    assert_problem(
        &v,
        "line 2: field `pid` is \"10\", expected a non-negative integer",
    );
    assert_problem(
        &v,
        "line 3: field `status_code` is 700, expected a status code",
    );
    assert_problem(
        &v,
        "line 4: field `latency_ms` is -1.0, expected a non-negative number",
    );
}

#[test]
fn not_json_fails() {
    let v = check(
        "{\"timestamp\": \n[1]\n",
        Expect {
            requests: 0,
            port: None,
        },
        now(),
    );
    assert_problem(&v, "line 1: not JSON");
    assert_problem(&v, "line 2: not a JSON object");
}

#[test]
fn a_response_without_its_pairing_fails() {
    let mut lines = capture(2);
    lines[3]["request"] = json!({"method": "GET", "url": "/other"});
    lines[6].as_object_mut().unwrap().remove("latency_ms");
    let v = run(&lines, 2);
    assert_problem(&v, "line 4: response 200 to GET /other");
    assert_problem(&v, "paired with the wrong request (line 1 is GET /item/0)");
    assert_problem(
        &v,
        "line 7: response 200 to GET /item/1 from 10.0.0.2:8080 to 10.0.0.1:40001 (conn_id 4): no latency_ms",
    );
}

#[test]
fn timestamps_must_be_wall_clock_and_go_forward() {
    let mut lines = capture(3);
    // Client connection 1 carries exchanges 0 and 2: its second request before its first.
    lines[8]["timestamp"] = json!(at(0).replace("18:00:00", "17:59:59"));
    lines[1]["timestamp"] = json!("1970-01-01T00:00:12.5Z");
    lines[2]["timestamp"] = json!("2027-01-01T00:00:00Z");
    lines[5]["timestamp"] = json!("yesterday");
    let v = run(&lines, 3);
    assert_problem(&v, "line 9: timestamp 2026-11-25T17:59:59");
    assert_problem(&v, "is earlier than line 1's");
    assert_problem(
        &v,
        "line 2: timestamp 1970-01-01T00:00:12.500000000Z is before 2000",
    );
    assert_problem(
        &v,
        "line 3: timestamp 2027-01-01T00:00:00.000000000Z is in the future",
    );
    assert_problem(
        &v,
        "line 6: field `timestamp` is \"yesterday\", expected an RFC 3339 time",
    );
}

#[test]
fn a_response_before_its_request_fails() {
    let mut lines = capture(1);
    lines[3]["timestamp"] = json!(at(0).replace("18:00:00", "17:00:00"));
    assert_problem(&run(&lines, 1), "line 4: response 200 to GET /item/0");
    assert_problem(&run(&lines, 1), "starts before its request (line 1)");
}

#[test]
fn interim_responses_are_not_counted_as_answers() {
    let mut lines = capture(1);
    let mut cont = lines[2].clone();
    cont["status_code"] = json!(100);
    cont["reason"] = json!("Continue");
    lines.insert(2, cont);
    let v = run(&lines, 1);
    // The 100 Continue is sent by the server and never received by the client here.
    assert_problem(&v, "response 100 to GET /item/0");
    assert!(
        !v.problems.iter().any(|p| p.contains("no response")),
        "{:#?}",
        v.problems
    );
}

#[test]
fn the_port_filter_leaves_other_traffic_out() {
    let mut lines = capture(2);
    let mut other = lines[0].clone();
    other["dest_port"] = json!(5432);
    other["conn_id"] = json!(99);
    // Other traffic is not judged: cut short or not, it is left out.
    other["incomplete"] = json!(true);
    lines.push(other);
    let filtered = |port| check(&text(&lines), Expect { requests: 2, port }, now());
    assert!(
        filtered(Some(SERVER_PORT)).passed(),
        "{:#?}",
        filtered(Some(SERVER_PORT)).problems
    );
    assert_eq!(filtered(Some(SERVER_PORT)).ignored, 1);
    assert_problem(&filtered(None), "line 9: flagged incomplete");
    assert_problem(
        &filtered(Some(1)),
        "no HTTP message with port 1 in the capture",
    );
}

#[test]
fn a_lost_response_mid_connection_blames_only_its_request() {
    let mut lines = capture(6);
    // Client connection 1 carries exchanges 0, 2 and 4; lose the client's view of 2's response.
    lines.remove(11);
    let v = run(&lines, 6);
    assert_problem(
        &v,
        "request GET /item/2 from 10.0.0.1:40000 to 10.0.0.2:8080 (conn_id 1): no response captured",
    );
    assert!(
        !v.problems
            .iter()
            .any(|p| p.contains("wrong request") || p.contains("item/4 from 10.0.0.1")),
        "{:#?}",
        v.problems
    );
}
