//! The `headers` object of a line, kept as written for the next message of the same
//! connection and direction: a client on a kept-alive connection sends the same fields
//! with each request, a server answers with the same ones (its `Date` changes once a
//! second), and writing the object (sorting and joining the fields, escaping names and
//! values) was about a seventh of the reader's work per exchange.
//!
//! The parser already tells when field lines repeat: the messages of a connection end
//! whose field lines are byte for byte the same share one `Fields` allocation
//! (`http::head::KnownFields`). An object is reused only for the very fields it was
//! written from, found by that `Arc`'s identity: equal lines parse to equal fields, and
//! the redaction is the same for every line of a run. The slot holds a clone of the
//! `Arc`, so its allocation cannot be freed and reused by other fields while the object
//! is kept. The connection id only chooses the slot.

use std::sync::Arc;

use super::conn_slots::ConnSlots;
use crate::http::Fields;

/// Header objects written for recent (connection, direction) pairs, each kept with the
/// fields it was written from.
#[derive(Default)]
pub struct KeptHeaders {
    slots: ConnSlots<Fields>,
}

impl KeptHeaders {
    /// Appends to `out` the object for a message with `fields` on `conn_id`: the one
    /// kept when the slot holds it for these same fields, else the one `write` writes,
    /// which the slot then keeps in place of what it held.
    pub fn write(
        &mut self,
        conn_id: u64,
        send: bool,
        fields: &Fields,
        out: &mut Vec<u8>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        if let Some(object) = self
            .slots
            .get(conn_id, send, |kept| Arc::ptr_eq(kept, fields))
        {
            out.extend_from_slice(object);
            return;
        }
        let start = out.len();
        write(out);
        self.slots
            .put(conn_id, send, Arc::clone(fields), &out[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::conn_slots::{MAX_KEPT, SLOTS};
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|&(n, v)| (n.into(), v.into())).collect()
    }

    /// Writes through `kept`, returning what was appended and whether `write` ran.
    fn written(kept: &mut KeptHeaders, conn: u64, f: &Fields, object: &[u8]) -> (Vec<u8>, bool) {
        let mut out = b"prefix".to_vec();
        let mut ran = false;
        kept.write(conn, true, f, &mut out, |o| {
            ran = true;
            o.extend_from_slice(object);
        });
        assert!(out.starts_with(b"prefix"));
        (out[6..].to_vec(), ran)
    }

    #[test]
    fn an_object_is_reused_only_for_the_same_fields() {
        let mut kept = KeptHeaders::default();
        let one = fields(&[("A", "1")]);
        assert_eq!(written(&mut kept, 5, &one, b"{1}"), (b"{1}".to_vec(), true));
        assert_eq!(
            written(&mut kept, 5, &Arc::clone(&one), b"{x}"),
            (b"{1}".to_vec(), false)
        );
        // Equal fields parsed apart are other fields: written afresh, replacing the
        // kept ones.
        let one_again = fields(&[("A", "1")]);
        assert_eq!(
            written(&mut kept, 5, &one_again, b"{1'}"),
            (b"{1'}".to_vec(), true)
        );
        assert_eq!(
            written(&mut kept, 5, &one_again, b"{x}"),
            (b"{1'}".to_vec(), false)
        );
        assert_eq!(written(&mut kept, 5, &one, b"{1}"), (b"{1}".to_vec(), true));
    }

    #[test]
    fn freed_fields_never_match_while_their_object_is_kept() {
        let mut kept = KeptHeaders::default();
        let first = fields(&[("A", "1")]);
        let address = Arc::as_ptr(&first);
        written(&mut kept, 5, &first, b"{1}");
        drop(first);
        // The slot's clone keeps the allocation alive: new fields of the same size
        // cannot take its address and be mistaken for it.
        for _ in 0..64 {
            let other = fields(&[("B", "2")]);
            assert_ne!(Arc::as_ptr(&other), address);
        }
    }

    #[test]
    fn directions_and_connections_keep_their_own() {
        let mut kept = KeptHeaders::default();
        let one = fields(&[("A", "1")]);
        written(&mut kept, 5, &one, b"{1}");
        let mut out = Vec::new();
        let mut ran = false;
        kept.write(5, false, &one, &mut out, |o| {
            ran = true;
            o.extend_from_slice(b"{r}");
        });
        assert!(ran, "the other direction has its own slot");
        // Another connection on the same slot takes it over.
        let other = 5 + SLOTS as u64 / 2;
        let b = fields(&[("B", "1")]);
        assert_eq!(
            written(&mut kept, other, &b, b"{b}"),
            (b"{b}".to_vec(), true)
        );
        assert_eq!(written(&mut kept, 5, &one, b"{1}"), (b"{1}".to_vec(), true));
    }

    #[test]
    fn long_objects_are_not_kept() {
        let mut kept = KeptHeaders::default();
        let long = vec![b'a'; MAX_KEPT + 1];
        let one = fields(&[("A", "1")]);
        written(&mut kept, 2, &one, &long);
        assert!(written(&mut kept, 2, &one, &long).1);
    }
}
