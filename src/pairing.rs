//! Pairs each response with the request it answers, on one connection end.
//!
//! HTTP/1.x answers requests in order, so a FIFO of requests whose heads were seen is
//! enough for keep-alive and pipelining. A 1xx response is paired with the request at the
//! front without consuming it: the final response still follows.
//!
//! Lost records break that order: whole requests or responses may have been in them, so
//! after a loss the queue no longer says which request the next response answers. The
//! queue is then cleared and a response is paired again only when exactly one request is
//! waiting and it ended before the response began, which is certain for a client that waits
//! for each response before its next request. Until then responses carry `request_lost`.

use std::collections::VecDeque;

use crate::http::{Message, MessageSink, StartLine, Text, text_held};

/// More requests than this waiting for responses means responses are not being seen;
/// the oldest are dropped so memory stays bounded.
pub const MAX_PENDING: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    pub method: Text,
    pub url: Text,
    /// When the request's last byte was seen, once it was.
    pub end_ns: Option<u64>,
}

impl PendingRequest {
    /// Bytes its text holds outside the struct (`text_held`).
    fn heap_bytes(&self) -> usize {
        text_held(&self.method) + text_held(&self.url)
    }
}

/// A parsed message with what pairing knows of it.
#[derive(Debug)]
pub struct Paired {
    pub message: Box<Message>,
    /// For a response: the request it answers.
    pub request: Option<PendingRequest>,
    /// For a response: from the request's last byte to the response's first byte.
    pub latency_ns: Option<u64>,
    /// For a response: records were lost since its request could have been seen, so which
    /// request it answers is unknown.
    pub request_lost: bool,
}

#[derive(Debug, Default)]
pub struct Pairing {
    pending: VecDeque<PendingRequest>,
    /// What the waiting requests' text holds outside the queue.
    pending_heap: usize,
    /// Requests dropped from a full queue.
    pub evicted: u64,
    /// Records were lost and no response has been paired with certainty since.
    unsure: bool,
}

/// Where a sink puts each message it has paired.
pub trait PairedOut {
    fn put(&mut self, paired: Paired);
    /// The box of a message already written, to build the next one in (see
    /// `MessageSink::spare_message`).
    fn spare(&mut self) -> Option<Box<Message>> {
        None
    }
}

impl PairedOut for Vec<Paired> {
    fn put(&mut self, paired: Paired) {
        self.push(paired);
    }
}

impl Pairing {
    /// A sink for one direction's parser that pairs into `out`.
    pub fn sink<'a, O: PairedOut>(&'a mut self, out: &'a mut O) -> PairingSink<'a, O> {
        PairingSink { pairing: self, out }
    }

    /// Bytes the queue of waiting requests holds (allocated sizes).
    pub fn held_bytes(&self) -> usize {
        self.pending.capacity() * std::mem::size_of::<PendingRequest>() + self.pending_heap
    }

    fn push(&mut self, request: PendingRequest) {
        self.pending_heap += request.heap_bytes();
        self.pending.push_back(request);
    }

    fn pop(&mut self) -> Option<PendingRequest> {
        let request = self.pending.pop_front()?;
        self.pending_heap -= request.heap_bytes();
        Some(request)
    }

    fn clear(&mut self) {
        self.pending.clear();
        self.pending_heap = 0;
    }
}

pub struct PairingSink<'a, O: PairedOut> {
    pairing: &'a mut Pairing,
    out: &'a mut O,
}

impl<O: PairedOut> MessageSink for PairingSink<'_, O> {
    fn pending_request_method(&self) -> Option<&str> {
        self.pairing.pending.front().map(|p| p.method.as_str())
    }

    fn request_started(&mut self, method: &str, url: &str) {
        if self.pairing.pending.len() >= MAX_PENDING {
            self.pairing.pop();
            self.pairing.evicted += 1;
        }
        self.pairing.push(PendingRequest {
            method: method.into(),
            url: url.into(),
            end_ns: None,
        });
    }

    fn records_lost(&mut self) {
        self.pairing.clear();
        self.pairing.unsure = true;
    }

    fn spare_message(&mut self) -> Option<Box<Message>> {
        self.out.spare()
    }

    fn message(&mut self, message: Box<Message>) {
        let (request, request_lost) = match &message.start {
            StartLine::Request { method, url } => {
                if let Some(p) = self
                    .pairing
                    .pending
                    .iter_mut()
                    .rev()
                    .find(|p| p.end_ns.is_none() && p.method == method && p.url == url)
                {
                    p.end_ns = Some(message.last_timestamp_ns);
                }
                (None, false)
            }
            StartLine::Response { .. } if self.pairing.unsure && !self.resynced(&message) => {
                // Keep the queue bounded while pipelined traffic stays ambiguous.
                if self.pairing.pending.len() > 1 {
                    self.pairing.pop();
                }
                (None, true)
            }
            // An interim response (1xx but 101) leaves its request waiting for the final one.
            StartLine::Response { status, .. } if (100..200).contains(status) && *status != 101 => {
                (self.pairing.pending.front().cloned(), false)
            }
            StartLine::Response { .. } => (self.pairing.pop(), false),
        };
        let latency_ns = request
            .as_ref()
            .and_then(|r| r.end_ns)
            .map(|end| message.first.timestamp_ns.saturating_sub(end));
        self.out.put(Paired {
            message,
            request,
            latency_ns,
            request_lost,
        });
    }
}

impl<O: PairedOut> PairingSink<'_, O> {
    /// After a loss: is the one waiting request certainly the one `response` answers?
    fn resynced(&mut self, response: &Message) -> bool {
        let pending = &self.pairing.pending;
        let certain = pending.len() == 1
            && pending[0]
                .end_ns
                .is_some_and(|end| end <= response.first.timestamp_ns);
        if certain {
            self.pairing.unsure = false;
        }
        certain
    }
}
