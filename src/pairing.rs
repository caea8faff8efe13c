//! Pairs each response with the request it answers, on one connection end.
//!
//! HTTP/1.x answers requests in order, so a FIFO of requests whose heads were seen is
//! enough for keep-alive and pipelining. A 1xx response is paired with the request at the
//! front without consuming it: the final response still follows.

use std::collections::VecDeque;

use crate::http::{Message, MessageSink, StartLine};

/// More requests than this waiting for responses means responses are not being seen;
/// the oldest are dropped so memory stays bounded.
pub const MAX_PENDING: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    pub method: String,
    pub url: String,
    /// When the request's last byte was seen, once it was.
    pub end_ns: Option<u64>,
}

/// A parsed message with what pairing knows of it.
#[derive(Debug)]
pub struct Paired {
    pub message: Message,
    /// For a response: the request it answers.
    pub request: Option<PendingRequest>,
    /// For a response: from the request's last byte to the response's first byte.
    pub latency_ns: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Pairing {
    pending: VecDeque<PendingRequest>,
    /// Requests dropped from a full queue.
    pub evicted: u64,
}

impl Pairing {
    /// A sink for one direction's parser that pairs into `out`.
    pub fn sink<'a>(&'a mut self, out: &'a mut Vec<Paired>) -> PairingSink<'a> {
        PairingSink { pairing: self, out }
    }
}

pub struct PairingSink<'a> {
    pairing: &'a mut Pairing,
    out: &'a mut Vec<Paired>,
}

impl MessageSink for PairingSink<'_> {
    fn pending_request_method(&self) -> Option<&str> {
        self.pairing.pending.front().map(|p| p.method.as_str())
    }

    fn request_started(&mut self, method: &str, url: &str) {
        let pending = &mut self.pairing.pending;
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
            self.pairing.evicted += 1;
        }
        pending.push_back(PendingRequest {
            method: method.to_string(),
            url: url.to_string(),
            end_ns: None,
        });
    }

    fn message(&mut self, message: Message) {
        let paired = match &message.start {
            StartLine::Request { method, url } => {
                if let Some(p) = self
                    .pairing
                    .pending
                    .iter_mut()
                    .rev()
                    .find(|p| p.end_ns.is_none() && &p.method == method && &p.url == url)
                {
                    p.end_ns = Some(message.last_timestamp_ns);
                }
                Paired {
                    message,
                    request: None,
                    latency_ns: None,
                }
            }
            StartLine::Response { status, .. } => {
                let request = if (100..200).contains(status) && *status != 101 {
                    self.pairing.pending.front().cloned()
                } else {
                    self.pairing.pending.pop_front()
                };
                let latency_ns = request
                    .as_ref()
                    .and_then(|r| r.end_ns)
                    .map(|end| message.first.timestamp_ns.saturating_sub(end));
                Paired {
                    message,
                    request,
                    latency_ns,
                }
            }
        };
        self.out.push(paired);
    }
}
