//! The members of a line from `pid` to `dest_port`, kept as written for the next message
//! of the same thread, direction and connection: on a kept-alive connection they repeat
//! on every line, and writing them (two addresses, the command line escaped, four
//! numbers, nine names) was about an eighth of the reader's work per exchange.
//!
//! A slot is reused only when everything those members are written from is the same:
//! pid, tid, the reading of the process's name and command line (`ProcInfo::stamp`),
//! direction, addresses and ports. The connection id only chooses the slot.

use std::net::IpAddr;

/// Slots, chosen by connection and direction: a table of fixed size, so a host with many
/// connections writes some members afresh rather than holding more memory.
const SLOTS: usize = 1024;

/// Members longer than this (a command line of kilobytes) are not kept: 1,024 slots of
/// them would hold megabytes.
const MAX_KEPT: usize = 1024;

/// What the members are written from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixKey {
    pub pid: u32,
    pub tid: u32,
    pub proc_stamp: u64,
    pub send: bool,
    pub source: (IpAddr, u16),
    pub dest: (IpAddr, u16),
}

/// Members written for recent (connection, direction) pairs.
pub struct Prefixes {
    slots: Vec<Option<(PrefixKey, Vec<u8>)>>,
}

impl Default for Prefixes {
    fn default() -> Self {
        Self {
            slots: vec![None; SLOTS],
        }
    }
}

impl Prefixes {
    fn slot(conn_id: u64, send: bool) -> usize {
        ((conn_id << 1) | u64::from(send)) as usize % SLOTS
    }

    /// The members written for `key` on `conn_id`, if the slot still holds them.
    pub fn get(&self, conn_id: u64, key: &PrefixKey) -> Option<&[u8]> {
        match &self.slots[Self::slot(conn_id, key.send)] {
            Some((k, members)) if k == key => Some(members),
            _ => None,
        }
    }

    /// Keeps `members`, written for `key` on `conn_id`, in place of what the slot held.
    pub fn put(&mut self, conn_id: u64, key: PrefixKey, members: &[u8]) {
        if members.len() > MAX_KEPT {
            return;
        }
        let slot = &mut self.slots[Self::slot(conn_id, key.send)];
        match slot {
            Some((k, kept)) => {
                *k = key;
                kept.clear();
                kept.extend_from_slice(members);
            }
            None => *slot = Some((key, members.to_vec())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pid: u32) -> PrefixKey {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        PrefixKey {
            pid,
            tid: pid,
            proc_stamp: 1,
            send: true,
            source: (lo, 80),
            dest: (lo, 40000),
        }
    }

    #[test]
    fn a_slot_answers_only_for_its_own_key() {
        let mut p = Prefixes::default();
        p.put(5, key(1), b"one");
        assert_eq!(p.get(5, &key(1)), Some(&b"one"[..]));
        assert_eq!(p.get(5, &key(2)), None);
        // Another connection on the same slot takes it over.
        p.put(5 + SLOTS as u64 / 2, key(2), b"two");
        assert_eq!(p.get(5, &key(1)), None);
        assert_eq!(p.get(5 + SLOTS as u64 / 2, &key(2)), Some(&b"two"[..]));
    }

    #[test]
    fn long_members_are_not_kept() {
        let mut p = Prefixes::default();
        p.put(1, key(1), &[b'x'; MAX_KEPT + 1]);
        assert_eq!(p.get(1, &key(1)), None);
    }
}
