//! The live view (`--pretty`): one readable line per exchange, e.g.
//! `18:00:01.234  traffic-gen:41822 -> demo-server:8080  POST /echo -> 200  1.8 ms  63 B`.
//!
//! When both ends of a connection run on this host, the profiler sees the exchange twice
//! (client and server); the live view prints it once, from the client's side, and names
//! the server after the process that holds the other end.

use std::{collections::HashMap, net::IpAddr};

use http_profiler_common::DIRECTION_RECV;

use crate::{
    clock::{WallClock, rfc3339},
    http::StartLine,
    procinfo::ProcessCache,
    tracker::Emitted,
};

/// Connection ends remembered to name peers; cleared when full.
const MAX_ENDS: usize = 64 * 1024;

#[derive(Default)]
pub struct LiveView {
    /// Local address and port of each connection end seen -> its process name.
    ends: HashMap<(IpAddr, u16), String>,
}

impl LiveView {
    /// Notes the message's connection end; returns the line to print, if this message
    /// completes an exchange that is to be shown.
    pub fn line(&mut self, e: &Emitted, procs: &ProcessCache, clock: &WallClock) -> Option<String> {
        let m = &e.paired.message;
        let comm = procs
            .get(m.first.tgid)
            .map_or("?", |p| p.comm.as_str())
            .to_string();
        let ep = e.endpoints;
        if self.ends.len() >= MAX_ENDS {
            self.ends.clear();
        }
        self.ends.insert((ep.local, ep.local_port), comm.clone());
        let StartLine::Response { status, .. } = &m.start else {
            return None;
        };
        let peer = self.ends.get(&(ep.remote, ep.remote_port)).cloned();
        let (client, server) = if e.direction == DIRECTION_RECV {
            (
                format!("{comm}:{}", ep.local_port),
                format!(
                    "{}:{}",
                    peer.unwrap_or_else(|| ep.remote.to_string()),
                    ep.remote_port
                ),
            )
        } else {
            if peer.is_some() {
                // The client is on this host too: its side prints the exchange.
                return None;
            }
            (
                format!("{}:{}", ep.remote, ep.remote_port),
                format!("{comm}:{}", ep.local_port),
            )
        };
        let (method, url) = e
            .paired
            .request
            .as_ref()
            .map_or(("?", "?"), |r| (r.method.as_str(), r.url.as_str()));
        let stamp = rfc3339(clock.to_wall(m.first.timestamp_ns));
        let time = stamp.get(11..23).unwrap_or(&stamp);
        let latency = e
            .paired
            .latency_ns
            .map_or("-".to_string(), |ns| format!("{:.1} ms", ns as f64 / 1e6));
        let mut line = format!(
            "{time}  {client} -> {server}  {method} {url} -> {status}  {latency}  {} B",
            m.body_len
        );
        if let Some(why) = m.incomplete {
            line.push_str(&format!("  (incomplete: {})", why.as_str()));
        }
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{
        http::{ChunkMeta, Message},
        pairing::{Paired, PendingRequest},
        tracker::Endpoints,
    };

    fn emitted(
        start: StartLine,
        direction: u8,
        local_port: u16,
        remote_port: u16,
        tgid: u32,
    ) -> Emitted {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let is_response = matches!(start, StartLine::Response { .. });
        Emitted {
            paired: Paired {
                message: Box::new(Message {
                    start,
                    version_minor: 1,
                    headers: Default::default(),
                    trailers: vec![],
                    body: b"hello".to_vec(),
                    body_len: 5,
                    body_truncated: false,
                    raw: vec![],
                    head_len: 0,
                    wire_bytes: 50,
                    first: ChunkMeta {
                        timestamp_ns: 0,
                        tgid,
                        tid: tgid,
                    },
                    last_timestamp_ns: 0,
                    incomplete: None,
                    capture_gap: false,
                    body_omitted: None,
                }),
                request: is_response.then(|| PendingRequest {
                    method: "POST".into(),
                    url: "/echo".into(),
                    end_ns: Some(0),
                }),
                latency_ns: is_response.then_some(1_800_000),
                request_lost: false,
            },
            direction,
            conn_id: 1,
            endpoints: Endpoints {
                local: lo,
                local_port,
                remote: lo,
                remote_port,
            },
        }
    }

    #[test]
    fn one_line_per_exchange_from_the_client_side() {
        let dir = std::env::temp_dir().join(format!("hp-live-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("1")).unwrap();
        std::fs::create_dir_all(dir.join("2")).unwrap();
        std::fs::write(dir.join("1/comm"), "traffic-gen\n").unwrap();
        std::fs::write(dir.join("2/comm"), "demo-server\n").unwrap();
        let mut procs = ProcessCache::with_root(&dir);
        procs.observe(1, b"traffic-gen\0\0\0\0\0");
        procs.observe(2, b"demo-server\0\0\0\0\0");
        let clock = WallClock::from_offset(0);
        let mut live = LiveView::default();
        let req = || StartLine::Request {
            method: "POST".into(),
            url: "/echo".into(),
        };
        let resp = || StartLine::Response {
            status: 200,
            reason: "OK".into(),
        };
        assert_eq!(
            live.line(&emitted(req(), 0, 41822, 8080, 1), &procs, &clock),
            None
        );
        assert_eq!(
            live.line(&emitted(req(), 1, 8080, 41822, 2), &procs, &clock),
            None
        );
        assert_eq!(
            live.line(&emitted(resp(), 0, 8080, 41822, 2), &procs, &clock),
            None
        );
        assert_eq!(
            live.line(&emitted(resp(), 1, 41822, 8080, 1), &procs, &clock)
                .unwrap(),
            "00:00:00.000  traffic-gen:41822 -> demo-server:8080  POST /echo -> 200  1.8 ms  5 B"
        );
        // A client elsewhere: the server's side prints it.
        assert_eq!(
            live.line(&emitted(resp(), 0, 8080, 50000, 2), &procs, &clock)
                .unwrap(),
            "00:00:00.000  127.0.0.1:50000 -> demo-server:8080  POST /echo -> 200  1.8 ms  5 B"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
