//! What traffic-gen sends and how it judges and sums up the answers.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::server::{CHUNKS, large_body};

/// One request of the plan, with the answer that counts as success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub method: &'static str,
    /// Path and query.
    pub target: String,
    pub body: Option<(&'static str, Vec<u8>)>,
    pub expect_status: u16,
    /// The exact body expected, when it is known in advance.
    pub expect_body: Option<Vec<u8>>,
    /// Sent over a new connection rather than a kept-alive one.
    pub fresh_connection: bool,
}

impl Planned {
    /// The endpoint as the summary counts it: method and path, without the query.
    pub fn endpoint(&self) -> String {
        let path = self.target.split('?').next().unwrap_or("");
        format!("{} {path}", self.method)
    }
}

/// Settings that shape the plan.
#[derive(Clone, Copy, Debug)]
pub struct PlanSettings {
    pub slow_ms: u64,
    pub large_bytes: usize,
}

const STATUSES: [u16; 4] = [201, 404, 418, 503];

/// The i-th request: every endpoint in turn, GET and POST, one request in three on a
/// new connection.
pub fn plan(i: u64, s: PlanSettings) -> Planned {
    let fresh_connection = i % 3 == 2;
    let get = |target: String, expect_body: Option<Vec<u8>>| Planned {
        method: "GET",
        target,
        body: None,
        expect_status: 200,
        expect_body,
        fresh_connection,
    };
    match i % 7 {
        0 => get("/".into(), None),
        1 => get("/healthz".into(), Some(br#"{"status":"ok"}"#.to_vec())),
        2 => {
            let body = format!(r#"{{"n":{i},"message":"hello from traffic-gen"}}"#).into_bytes();
            Planned {
                method: "POST",
                target: "/echo".into(),
                body: Some(("application/json", body.clone())),
                expect_status: 200,
                expect_body: Some(body),
                fresh_connection,
            }
        }
        3 => get(
            format!("/slow?ms={}", s.slow_ms),
            Some(format!("slept {} ms\n", s.slow_ms).into_bytes()),
        ),
        4 => get("/chunked".into(), Some(CHUNKS.concat().into_bytes())),
        5 => get(
            format!("/large?bytes={}", s.large_bytes),
            Some(large_body(s.large_bytes)),
        ),
        _ => {
            let code = STATUSES[(i / 7 % STATUSES.len() as u64) as usize];
            Planned {
                method: "POST",
                target: format!("/status/{code}"),
                body: Some(("text/plain", b"status please".to_vec())),
                expect_status: code,
                expect_body: Some(format!("status {code}\n").into_bytes()),
                fresh_connection,
            }
        }
    }
}

/// Whether an answer is the one planned; the reason when not.
pub fn check(p: &Planned, status: u16, body: &[u8]) -> Result<(), String> {
    if status != p.expect_status {
        return Err(format!(
            "{} {}: status {status}, expected {}",
            p.method, p.target, p.expect_status
        ));
    }
    if let Some(expected) = &p.expect_body
        && body != expected.as_slice()
    {
        return Err(format!(
            "{} {}: body of {} bytes differs from the {} expected",
            p.method,
            p.target,
            body.len(),
            expected.len()
        ));
    }
    Ok(())
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct EndpointCounts {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Requests written to a connection (whatever became of them).
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub endpoints: BTreeMap<String, EndpointCounts>,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub duration_s: f64,
    pub requests_per_s: f64,
    /// The first few errors, as they happened.
    pub first_errors: Vec<String>,
}

#[derive(Default)]
pub struct Tally {
    summary: Summary,
    latencies_us: Vec<u64>,
}

impl Tally {
    pub fn record(&mut self, p: &Planned, result: Result<(), String>, latency_us: u64) {
        let s = &mut self.summary;
        let e = s.endpoints.entry(p.endpoint()).or_default();
        s.sent += 1;
        e.sent += 1;
        match result {
            Ok(()) => {
                s.ok += 1;
                e.ok += 1;
                self.latencies_us.push(latency_us);
            }
            Err(why) => {
                s.errors += 1;
                e.errors += 1;
                if s.first_errors.len() < 10 {
                    s.first_errors.push(why);
                }
            }
        }
    }

    pub fn finish(mut self, duration_s: f64) -> Summary {
        self.latencies_us.sort_unstable();
        let pct = |q: f64| {
            let v = &self.latencies_us;
            if v.is_empty() {
                0.0
            } else {
                v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
            }
        };
        self.summary.latency_ms_p50 = pct(0.50);
        self.summary.latency_ms_p99 = pct(0.99);
        self.summary.duration_s = duration_s;
        self.summary.requests_per_s = if duration_s > 0.0 {
            self.summary.sent as f64 / duration_s
        } else {
            0.0
        };
        self.summary
    }
}

impl Summary {
    pub fn human(&self) -> String {
        let mut out = format!(
            "traffic-gen: {} requests in {:.1} s ({:.0}/s): {} ok, {} errors; latency p50 {:.1} ms, p99 {:.1} ms\n",
            self.sent,
            self.duration_s,
            self.requests_per_s,
            self.ok,
            self.errors,
            self.latency_ms_p50,
            self.latency_ms_p99
        );
        for (endpoint, c) in &self.endpoints {
            out.push_str(&format!(
                "  {endpoint:<20} {:>6} sent {:>6} ok {:>4} errors\n",
                c.sent, c.ok, c.errors
            ));
        }
        for e in &self.first_errors {
            out.push_str(&format!("  error: {e}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: PlanSettings = PlanSettings {
        slow_ms: 50,
        large_bytes: 1000,
    };

    #[test]
    fn the_plan_covers_every_endpoint_get_and_post_and_both_connection_kinds() {
        let plans: Vec<_> = (0..84).map(|i| plan(i, S)).collect();
        let endpoints: std::collections::BTreeSet<_> = plans.iter().map(|p| p.endpoint()).collect();
        for e in [
            "GET /",
            "GET /healthz",
            "POST /echo",
            "GET /slow",
            "GET /chunked",
            "GET /large",
            "POST /status/404",
            "POST /status/503",
        ] {
            assert!(endpoints.contains(e), "{e} missing from {endpoints:?}");
        }
        assert!(
            plans.iter().any(|p| p.fresh_connection) && plans.iter().any(|p| !p.fresh_connection)
        );
    }

    #[test]
    fn checks_status_and_body() {
        let p = plan(1, S);
        assert!(check(&p, 200, br#"{"status":"ok"}"#).is_ok());
        assert!(check(&p, 500, br#"{"status":"ok"}"#).is_err());
        assert!(check(&p, 200, b"{}").is_err());
    }

    #[test]
    fn summary_counts_and_percentiles() {
        let mut t = Tally::default();
        for i in 0..100u64 {
            let p = plan(i, S);
            t.record(
                &p,
                if i == 5 { Err("boom".into()) } else { Ok(()) },
                (i + 1) * 1000,
            );
        }
        let s = t.finish(2.0);
        assert_eq!((s.sent, s.ok, s.errors), (100, 99, 1));
        assert_eq!(s.endpoints["GET /large"].errors, 1);
        assert_eq!(s.latency_ms_p50, 51.0);
        assert_eq!(s.latency_ms_p99, 99.0);
        assert_eq!(s.requests_per_s, 50.0);
        assert_eq!(s.first_errors, ["boom"]);
    }
}
