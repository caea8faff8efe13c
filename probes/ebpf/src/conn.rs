//! Per-connection state in the kernel: where each direction's byte stream stands, and
//! whether the connection carries HTTP.

use aya_ebpf::helpers::bpf_ktime_get_ns;

use crate::{
    kernel::{self, AF_INET, Task, config, read},
    maps::{CONNS, IGNORED, count, state_get},
};
use http_profiler_common::{counter, state};

#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ConnClass {
    /// Opened by accept or connect while the probes ran: its first bytes decide.
    Fresh = 0,
    /// Already open when first seen: copy from the first syscall that starts like HTTP.
    Midstream = 1,
    Http = 2,
    NotHttp = 3,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnState {
    pub send_pos: u64,
    pub recv_pos: u64,
    pub generation: u32,
    pub class: u32,
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u16,
    /// Addresses as the 16 bytes of `DataHeader::local_addr`, held in two words so that
    /// they are copied into each record by two stores (see `emit::put_addresses`).
    pub local_addr: [u64; 2],
    pub remote_addr: [u64; 2],
    /// The thread whose name went out last with this connection's records: the next
    /// record of the same thread goes without it (see `DataHeader::comm`).
    pub comm_tid: u32,
    pub _pad2: u32,
}

/// Starts a new state for `sock`, replacing whatever an earlier connection on the same
/// kernel object left; none for a connection the `--port` filter rejects, so that the
/// connections accepted or opened by other services never take a table entry that a
/// captured connection could be evicted for.
#[inline(always)]
pub fn open_conn(sock: u64, class: ConnClass) -> Option<u32> {
    let (local_port, remote_port) = kernel::socket_ports(sock)?;
    if !kernel::ports_selected(local_port, remote_port) {
        return None;
    }
    let o = config!(offsets);
    let family: u16 = read(sock, o.sk_family)?;
    let (local_addr, remote_addr) = if family == AF_INET {
        // An IPv4 address goes in the first four bytes: the low half of the first word,
        // on these little-endian targets.
        let l: u32 = read(sock, o.sk_rcv_saddr)?;
        let r: u32 = read(sock, o.sk_daddr)?;
        ([l.into(), 0], [r.into(), 0])
    } else {
        (read(sock, o.sk_v6_rcv_saddr)?, read(sock, o.sk_v6_daddr)?)
    };
    // Zero through a volatile read: two zero words side by side become a call to the
    // byte-at-a-time memset otherwise (see `emit::write_words`).
    // SAFETY: a read of a local.
    let zero = unsafe { core::ptr::read_volatile(&0u64) };
    let state = ConnState {
        send_pos: zero,
        recv_pos: zero,
        // SAFETY: the helper has no preconditions. Microseconds tell apart two connections
        // that reuse one kernel object.
        generation: (unsafe { bpf_ktime_get_ns() } >> 10) as u32,
        class: class as u32,
        family,
        local_port,
        remote_port,
        _pad: 0,
        local_addr,
        remote_addr,
        comm_tid: 0,
        _pad2: 0,
    };
    CONNS.insert(sock, state, 0).ok()?;
    Some(state.generation)
}

/// Whether `sock`'s connection passes the `--port` filter. With one, most TCP traffic on
/// a host is someone else's: its ports are one read away, cheaper than the table lookup,
/// and its connections stay out of the table.
#[inline(always)]
pub fn ports_pass(sock: u64) -> bool {
    if config!(port_count) == 0 {
        return true;
    }
    kernel::socket_ports(sock).is_some_and(|(local, remote)| kernel::ports_selected(local, remote))
}

/// The TCP socket behind `fd` in the current process, when its connection passes the
/// `--port` filter.
#[inline(always)]
pub fn selected_sock_of_fd(task: Task, fd: i32) -> Option<u64> {
    kernel::tcp_sock_of_fd(task, fd).filter(|&sock| ports_pass(sock))
}

/// For a data syscall that moved bytes on `sock` (which `ports_pass`): the connection's
/// state when its bytes may be copied, after the HTTP classification so far and
/// userspace's ignore list.
#[inline(always)]
pub fn conn_for_data(sock: u64) -> Option<*mut ConnState> {
    let state = match CONNS.get_ptr_mut(sock) {
        Some(s) => s,
        None => {
            open_conn(sock, ConnClass::Midstream)?;
            CONNS.get_ptr_mut(sock)?
        }
    };
    // SAFETY: a valid map value pointer; fields are read by value.
    let (class, generation) = unsafe { ((*state).class, (*state).generation) };
    if class == ConnClass::NotHttp as u32 {
        count(counter::NOT_HTTP, 1);
        return None;
    }
    // SAFETY: the value is read by value.
    if state_get(state::IGNORING) != 0
        && let Some(g) = unsafe { IGNORED.get(sock) }
        && *g == generation
    {
        count(counter::NOT_HTTP, 1);
        return None;
    }
    Some(state)
}
