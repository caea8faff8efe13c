//! The members of a line from `pid` to `dest_port`, kept as written for the next message
//! of the same thread, direction and connection: on a kept-alive connection they repeat
//! on every line, and writing them (two addresses, the command line escaped, four
//! numbers, nine names) was about an eighth of the reader's work per exchange.
//!
//! A slot is reused only when everything those members are written from is the same:
//! pid, tid, the reading of the process's name and command line (`ProcInfo::stamp`),
//! direction, addresses and ports.

use std::net::IpAddr;

use super::conn_slots::ConnSlots;

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
pub type Prefixes = ConnSlots<PrefixKey>;
