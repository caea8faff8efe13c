//! A fixed table of bytes written for recent (connection, direction) pairs, each kept
//! with the key it was written from, so that the next line of the same connection can
//! copy them when its key is the same. The connection id only chooses the slot: the key
//! alone decides whether the bytes are still right.

/// Slots, chosen by connection and direction: a table of fixed size, so a host with many
/// connections writes some parts afresh rather than holding more memory.
pub const SLOTS: usize = 1024;

/// Bytes longer than this (a command line or cookies of kilobytes) are not kept: 1,024
/// slots of them would hold megabytes.
pub const MAX_KEPT: usize = 1024;

/// Bytes written for recent (connection, direction) pairs, each with its key `K`.
pub struct ConnSlots<K> {
    slots: Vec<Option<(K, Vec<u8>)>>,
}

impl<K> Default for ConnSlots<K> {
    fn default() -> Self {
        Self {
            slots: std::iter::repeat_with(|| None).take(SLOTS).collect(),
        }
    }
}

impl<K> ConnSlots<K> {
    fn slot(conn_id: u64, send: bool) -> usize {
        ((conn_id << 1) | u64::from(send)) as usize % SLOTS
    }

    /// The bytes kept on this connection and direction, if the slot holds them for a
    /// key that `is_key` accepts.
    pub fn get(&self, conn_id: u64, send: bool, is_key: impl FnOnce(&K) -> bool) -> Option<&[u8]> {
        match &self.slots[Self::slot(conn_id, send)] {
            Some((k, bytes)) if is_key(k) => Some(bytes),
            _ => None,
        }
    }

    /// Keeps `bytes`, written for `key`, in place of what the slot held, reusing the
    /// slot's allocation for the bytes. Bytes over `MAX_KEPT` are not kept.
    pub fn put(&mut self, conn_id: u64, send: bool, key: K, bytes: &[u8]) {
        if bytes.len() > MAX_KEPT {
            return;
        }
        let slot = &mut self.slots[Self::slot(conn_id, send)];
        match slot {
            Some((k, kept)) => {
                *k = key;
                kept.clear();
                kept.extend_from_slice(bytes);
            }
            None => *slot = Some((key, bytes.to_vec())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_answers_only_for_its_own_key_and_direction() {
        let mut s = ConnSlots::<u32>::default();
        s.put(5, true, 1, b"one");
        assert_eq!(s.get(5, true, |k| *k == 1), Some(&b"one"[..]));
        assert_eq!(s.get(5, true, |k| *k == 2), None);
        assert_eq!(
            s.get(5, false, |k| *k == 1),
            None,
            "the other direction has its own slot"
        );
        // Another connection on the same slot takes it over.
        let other = 5 + SLOTS as u64 / 2;
        s.put(other, true, 2, b"two");
        assert_eq!(s.get(5, true, |k| *k == 1), None);
        assert_eq!(s.get(other, true, |k| *k == 2), Some(&b"two"[..]));
        // A new key on the slot replaces both the key and the bytes.
        s.put(other, true, 3, b"3");
        assert_eq!(s.get(other, true, |k| *k == 2), None);
        assert_eq!(s.get(other, true, |k| *k == 3), Some(&b"3"[..]));
    }

    #[test]
    fn long_bytes_are_not_kept() {
        let mut s = ConnSlots::<u32>::default();
        s.put(1, true, 1, &[b'x'; MAX_KEPT + 1]);
        assert_eq!(s.get(1, true, |k| *k == 1), None);
        s.put(1, true, 1, &[b'x'; MAX_KEPT]);
        assert!(s.get(1, true, |k| *k == 1).is_some());
    }
}
