//! The `headers` object of a line, kept as written for the next message of the same
//! connection and direction: a client on a kept-alive connection sends the same fields
//! with each request, a server answers with the same ones (its `Date` changes once a
//! second), and writing the object (sorting and joining the fields, escaping names and
//! values) was about a seventh of the reader's work per exchange.
//!
//! An object is reused only when the message's field lines are byte for byte those it
//! was written from (`Message::field_lines`): equal lines parse to equal fields, and the
//! redaction is the same for every line of a run. The connection id only chooses the
//! slot. A message whose lines differ costs one comparison and a copy into the slot.

use super::conn_slots::{ConnSlots, MAX_KEPT};

/// Header objects written for recent (connection, direction) pairs, each kept with the
/// field lines it was written from.
#[derive(Default)]
pub struct KeptHeaders {
    slots: ConnSlots<Vec<u8>>,
}

impl KeptHeaders {
    /// Appends to `out` the object for a message with `field_lines` on `conn_id`: the
    /// one kept when the slot holds it for the same lines, else the one `write` writes,
    /// which the slot then keeps in place of what it held.
    pub fn write(
        &mut self,
        conn_id: u64,
        send: bool,
        field_lines: &[u8],
        out: &mut Vec<u8>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        if let Some(object) = self.slots.get(conn_id, send, field_lines) {
            out.extend_from_slice(object);
            return;
        }
        let start = out.len();
        write(out);
        // Lines over the bound are not kept either: the slot would hold them too.
        if field_lines.len() <= MAX_KEPT {
            self.slots.put(conn_id, send, field_lines, &out[start..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conn_slots::SLOTS;
    use super::*;

    /// Writes through `kept`, returning what was appended and whether `write` ran.
    fn written(kept: &mut KeptHeaders, conn: u64, lines: &[u8], object: &[u8]) -> (Vec<u8>, bool) {
        let mut out = b"prefix".to_vec();
        let mut ran = false;
        kept.write(conn, true, lines, &mut out, |o| {
            ran = true;
            o.extend_from_slice(object);
        });
        assert!(out.starts_with(b"prefix"));
        (out[6..].to_vec(), ran)
    }

    #[test]
    fn an_object_is_reused_only_for_the_same_lines() {
        let mut kept = KeptHeaders::default();
        assert_eq!(
            written(&mut kept, 5, b"A: 1\r\n\r\n", b"{1}"),
            (b"{1}".to_vec(), true)
        );
        assert_eq!(
            written(&mut kept, 5, b"A: 1\r\n\r\n", b"{x}"),
            (b"{1}".to_vec(), false)
        );
        // Other lines are written afresh and replace the kept ones.
        assert_eq!(
            written(&mut kept, 5, b"A: 2\r\n\r\n", b"{2}"),
            (b"{2}".to_vec(), true)
        );
        assert_eq!(
            written(&mut kept, 5, b"A: 2\r\n\r\n", b"{x}"),
            (b"{2}".to_vec(), false)
        );
        assert_eq!(
            written(&mut kept, 5, b"A: 1\r\n\r\n", b"{1}"),
            (b"{1}".to_vec(), true)
        );
        // A prefix of the kept lines is not the same lines.
        assert_eq!(
            written(&mut kept, 5, b"A: 1\r\n", b"{p}"),
            (b"{p}".to_vec(), true)
        );
    }

    #[test]
    fn directions_and_connections_keep_their_own() {
        let mut kept = KeptHeaders::default();
        written(&mut kept, 5, b"A: 1\r\n\r\n", b"{1}");
        let mut out = Vec::new();
        let mut ran = false;
        kept.write(5, false, b"A: 1\r\n\r\n", &mut out, |o| {
            ran = true;
            o.extend_from_slice(b"{r}");
        });
        assert!(ran, "the other direction has its own slot");
        // Another connection on the same slot takes it over; equal lines still give the
        // kept object, which is what they render to on any connection.
        let other = 5 + SLOTS as u64 / 2;
        assert_eq!(
            written(&mut kept, other, b"B: 1\r\n\r\n", b"{b}"),
            (b"{b}".to_vec(), true)
        );
        assert_eq!(
            written(&mut kept, 5, b"A: 1\r\n\r\n", b"{1}"),
            (b"{1}".to_vec(), true)
        );
    }

    #[test]
    fn long_lines_and_objects_are_not_kept() {
        let mut kept = KeptHeaders::default();
        let long = vec![b'a'; MAX_KEPT + 1];
        written(&mut kept, 1, &long, b"{l}");
        assert!(written(&mut kept, 1, &long, b"{l}").1);
        written(&mut kept, 2, b"A: 1\r\n\r\n", &long);
        assert!(written(&mut kept, 2, b"A: 1\r\n\r\n", &long).1);
    }
}
