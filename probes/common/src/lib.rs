//! Records and settings shared by the probes (kernel side) and the profiler (userspace).
//!
//! Every struct that crosses the kernel/user boundary is defined once, here, `#[repr(C)]`
//! and made only of fixed-size integers and arrays, so both sides agree on its layout.
#![no_std]

/// Payload bytes carried by one data record. A syscall that moved more is split into
/// several records. A power of two, and small enough for a per-CPU map value (32 KiB max).
pub const CHUNK_BYTES: usize = 16 * 1024;

/// The most bytes copied from one syscall; the rest is counted but not copied. The probe
/// copies in tail-called rounds of 8 chunks, 32 rounds at most (the kernel's tail-call
/// limit, 33, less the first program): 4 MiB.
pub const MAX_BYTES_PER_SYSCALL: u64 = 4 * 1024 * 1024;

/// The most iovec segments walked for readv/writev/sendmsg/recvmsg.
pub const MAX_IOVECS: u32 = 32;

pub const MAX_PID_FILTERS: usize = 16;
pub const MAX_PORT_FILTERS: usize = 16;
pub const COMM_LEN: usize = 16;

/// The first bytes of every HTTP/1.x request (methods, cut to four bytes) and response.
/// A connection whose first bytes match none of these is not copied.
pub const HTTP_PREFIXES: [&[u8; 4]; 10] = [
    b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"PATC", b"OPTI", b"CONN", b"TRAC", b"HTTP",
];

/// Whether `len` bytes at the start of `head` (a message start) can begin an HTTP/1.x
/// message. Fewer than four bytes match on the prefix they have.
#[inline(always)]
pub fn looks_like_http(head: &[u8; 4], len: usize) -> bool {
    if len == 0 {
        return false;
    }
    let mut i = 0;
    while i < HTTP_PREFIXES.len() {
        let p = HTTP_PREFIXES[i];
        let mut ok = true;
        let mut j = 0;
        while j < 4 {
            if j < len && head[j] != p[j] {
                ok = false;
            }
            j += 1;
        }
        if ok {
            return true;
        }
        i += 1;
    }
    false
}

/// Offsets (in bytes) of the kernel struct fields the probes read, resolved by userspace
/// from the running kernel's BTF at start-up: Rust probes cannot use CO-RE relocations.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `struct task_struct`'s thread id (`pid`) and process id (`tgid`), as
    /// bpf_get_current_pid_tgid gives them.
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_inode: u32,
    pub file_private_data: u32,
    pub file_f_op: u32,
    pub inode_mode: u32,
    pub socket_type: u32,
    pub socket_sk: u32,
    pub socket_ops: u32,
    pub sk_family: u32,
    pub sk_protocol: u32,
    pub sk_num: u32,
    pub sk_dport: u32,
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    /// `struct file`'s reference count: `f_count` (a count) or, from 6.13, `f_ref` (a
    /// count less one); `file_count_kind` says which.
    pub file_count: u32,
    pub file_count_kind: u32,
}

/// The leading bytes of `struct fdtable` (max_fds, fd) and of `struct socket` (type, sk,
/// ops) that the probes read with one helper call each; userspace checks at start-up
/// that those fields lie in them, each inside one 8-byte word.
pub const FDTABLE_HEAD_BYTES: u32 = 16;
pub const SOCKET_HEAD_BYTES: u32 = 40;

pub const FILE_COUNT_IS_COUNT: u32 = 1;
pub const FILE_COUNT_IS_REF: u32 = 2;

/// Everything userspace tells the probes before they load, injected as the read-only
/// global `CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    pub offsets: KernelOffsets,
    /// The profiler's own process, never captured.
    pub self_tgid: u32,
    /// Unread bytes in the ring buffer past which a record wakes the reader. Below it,
    /// records are written without a wakeup and the reader drains them on its timer:
    /// one wakeup per batch instead of one per record.
    pub wakeup_bytes: u32,
    pub pid_count: u32,
    pub pids: [u32; MAX_PID_FILTERS],
    pub port_count: u32,
    pub ports: [u16; MAX_PORT_FILTERS],
    /// Non-zero when `comm` holds a process name filter.
    pub comm_filter: u32,
    pub comm: [u8; COMM_LEN],
    /// The kernel's BTF id of a struct holding one 8-byte integer at offset 0, when the
    /// probes read kernel memory by plain loads through `bpf_rdonly_cast` (see
    /// `WORD_CAST_CALL`); 0 when they read it by helper calls.
    pub word_type_id: u32,
}

impl ProbeConfig {
    pub const fn empty() -> Self {
        Self {
            offsets: KernelOffsets {
                task_pid: 0,
                task_tgid: 0,
                task_files: 0,
                files_fdt: 0,
                fdtable_max_fds: 0,
                fdtable_fd: 0,
                file_inode: 0,
                file_private_data: 0,
                file_f_op: 0,
                inode_mode: 0,
                socket_type: 0,
                socket_sk: 0,
                socket_ops: 0,
                sk_family: 0,
                sk_protocol: 0,
                sk_num: 0,
                sk_dport: 0,
                sk_daddr: 0,
                sk_rcv_saddr: 0,
                sk_v6_daddr: 0,
                sk_v6_rcv_saddr: 0,
                file_count: 0,
                file_count_kind: 0,
            },
            self_tgid: 0,
            wakeup_bytes: 0,
            pid_count: 0,
            pids: [0; MAX_PID_FILTERS],
            port_count: 0,
            ports: [0; MAX_PORT_FILTERS],
            comm_filter: 0,
            comm: [0; COMM_LEN],
            word_type_id: 0,
        }
    }
}

/// The instruction the probes are built with where they call the kfunc
/// `bpf_rdonly_cast`, as its 8 little-endian bytes: a call (0x85) to a kernel function
/// (source register 2) whose BTF id (the last four bytes) is a placeholder. The kernel
/// numbers its functions differently in every build, so userspace writes the running
/// kernel's id in before loading (`WORD_CAST_FALLBACK` on a kernel without the kfunc).
pub const WORD_CAST_CALL: [u8; 8] = [0x85, 0x20, 0, 0, 0x57, 0xca, 0xad, 0x7e];

/// What takes the call's place on a kernel without `bpf_rdonly_cast`: `r0 = r1`, which is
/// what the verifier makes of the call where it has one. The probes then take the
/// helper-call path (`word_type_id` is 0), and the verifier never walks the other.
pub const WORD_CAST_FALLBACK: [u8; 8] = [0xbf, 0x10, 0, 0, 0, 0, 0, 0];

/// What a ring-buffer record holds; the first field of every record.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Data = 1,
    Close = 2,
    Exec = 3,
}

pub const DIRECTION_SEND: u8 = 0;
pub const DIRECTION_RECV: u8 = 1;

/// Set on the last record of a syscall.
pub const FLAG_LAST_CHUNK: u32 = 1;
/// The syscall's bytes went by sendfile (no payload follows; `syscall_bytes` counts them).
pub const FLAG_OMITTED_SENDFILE: u32 = 2;
/// The syscall's bytes went by splice.
pub const FLAG_OMITTED_SPLICE: u32 = 4;

/// The fixed part of a data record; `data_len` payload bytes follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DataHeader {
    pub kind: u32,
    pub flags: u32,
    pub tgid: u32,
    pub tid: u32,
    pub fd: i32,
    /// Changes each time the socket is (re)opened by accept or connect.
    pub generation: u32,
    /// The kernel's `struct sock` address: one connection end, shared by every fd and
    /// process that holds it.
    pub sock: u64,
    /// CLOCK_MONOTONIC (bpf_ktime_get_ns) at the syscall's exit.
    pub timestamp_ns: u64,
    /// Position of this record's first byte in its direction's byte stream.
    pub stream_pos: u64,
    /// Bytes the whole syscall moved (its return value), copied or not.
    pub syscall_bytes: u64,
    /// Position the other direction of this connection had reached when this syscall
    /// ended: bytes there that userspace never saw were lost, so the request a response
    /// answers may be among them.
    pub other_pos: u64,
    /// Offset of this record's first byte within the syscall's bytes.
    pub syscall_offset: u32,
    pub data_len: u32,
    pub direction: u8,
    pub _pad: u8,
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    /// IPv4 addresses in the first four bytes, network order.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// The thread's name, in the first record of each thread on each connection only:
    /// all zero in the others (reading it for every record was a good share of the
    /// probes' time). Userspace names processes from /proc; a thread's name tells it
    /// that a pid it knows now belongs to another process. Execs come as `ExecRecord`s.
    pub comm: [u8; COMM_LEN],
}

/// A data record as the probe builds it in per-CPU scratch memory; only the header and
/// `header.data_len` bytes of `data` go into the ring buffer.
#[repr(C)]
pub struct DataRecord {
    pub header: DataHeader,
    pub data: [u8; CHUNK_BYTES],
}

/// Sent when a process closes an fd that refers to a TCP socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CloseRecord {
    pub kind: u32,
    pub _pad: u32,
    pub tgid: u32,
    pub tid: u32,
    pub fd: i32,
    pub generation: u32,
    pub sock: u64,
    pub timestamp_ns: u64,
    /// Stream positions reached at the close: lets userspace see lost trailing records.
    pub send_end: u64,
    pub recv_end: u64,
}

/// Sent when a selected process has exec'd: it has a new name and command line, which
/// the records of connections it kept open across the exec do not carry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    pub kind: u32,
    pub _pad: u32,
    pub tgid: u32,
    pub tid: u32,
    /// The name the exec gave the thread.
    pub comm: [u8; COMM_LEN],
}

/// How a data syscall passes its bytes.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// read, write, sendto, recvfrom: one buffer.
    Buffer = 1,
    /// readv, writev: an iovec array and its length.
    Iovec = 2,
    /// sendmsg, recvmsg: a msghdr holding an iovec array.
    Msghdr = 3,
    /// connect: only the fd matters.
    Connect = 4,
    /// sendfile, splice: bytes that never pass through user memory; `ptr` holds the
    /// OMITTED_* reason.
    Omitted = 5,
}

pub const OMITTED_SENDFILE: u64 = 1;
pub const OMITTED_SPLICE: u64 = 2;

/// A syscall's arguments, saved at its entry for its exit, per thread (pid_tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SavedArgs {
    pub kind: u32,
    pub direction: u32,
    pub fd: i32,
    /// The syscall's number, checked at exit against the exit's own.
    pub syscall_nr: u32,
    /// The buffer, iovec array or msghdr.
    pub ptr: u64,
    /// The buffer's size or the iovec count.
    pub count: u64,
    /// The TCP socket (`struct sock`) when the entry found it, which it does under a
    /// `--port` filter (a socket the filter passes) and for sendfile and splice; 0 when
    /// the exit is to find it, if the syscall moved bytes (and in seeded entries).
    pub sock: u64,
    /// Non-zero when userspace wrote this entry at start-up for a thread that was already
    /// blocked in the syscall (an idle keep-alive server thread waiting in read) rather
    /// than an entry hook (see `state::SEEDING`).
    pub seeded: u32,
    pub _pad: u32,
}

/// Indexes of the `STATE` array map.
pub mod state {
    /// Non-zero while userspace seeds `ARGS` (see `SavedArgs::seeded`): until it has
    /// checked that each seeded thread is still blocked in its read, a data syscall's
    /// entry drops a seeded entry its thread left, which can only be stale. Afterwards
    /// every seed left belongs to a thread still in its read, whose exit takes it, and
    /// entries skip the lookup: a thread blocked for good (a getty, an idle daemon) would
    /// otherwise cost every data syscall of every selected process a hash lookup.
    pub const SEEDING: u32 = 0;
    /// Non-zero once userspace has attached every hook. Until then no data syscall is
    /// saved: with only some hooks attached, a connection's stream would have holes no
    /// position reveals (a response read while the read hooks were still missing, then
    /// the next one paired with the wrong request).
    pub const ARMED: u32 = 1;
    /// Non-zero once userspace has put a connection into `IGNORED`: until then the data
    /// hooks do not look it up (a hash lookup per copied syscall that finds nothing).
    pub const IGNORING: u32 = 2;
    /// The address of the kernel's `socket_file_ops`, learned by the probes from the first
    /// file they find to be a socket (see `tcp_file_of_fd`); zero until then. Userspace
    /// never writes it.
    pub const SOCKET_FILE_OPS: u32 = 3;
    /// The socket operations of TCP over IPv4 and over IPv6 (`inet_stream_ops`,
    /// `inet6_stream_ops`), learned by the probes from the first socket of each family
    /// whose sock says TCP (see `tcp_file_of_fd`); zero until then. Userspace never
    /// writes them.
    pub const TCP_OPS_INET: u32 = 4;
    pub const TCP_OPS_INET6: u32 = 5;
    pub const COUNT: u32 = 6;
}

/// Indexes of the per-CPU counters in the `COUNTERS` map.
pub mod counter {
    // Records of traffic put into the ring buffer are counted by userspace as it reads
    // them: a counter here cost a map lookup for every record.
    /// Records the ring buffer could not take.
    pub const DROPPED: u32 = 0;
    /// Syscalls that moved bytes on TCP sockets, skipped because the connection is not HTTP.
    pub const NOT_HTTP: u32 = 1;
    /// Syscall bytes beyond MAX_BYTES_PER_SYSCALL or MAX_IOVECS, counted, not copied.
    pub const UNCOPIED_BYTES: u32 = 2;
    /// Exec records put into the ring buffer.
    pub const EXECS: u32 = 3;
    pub const COUNT: u32 = 4;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: these are repr(C) structs of integers and integer arrays with no padding that
    // is left uninitialised by the side that writes them (explicit _pad fields), so any bit
    // pattern is valid and they can be copied as bytes.
    unsafe impl aya::Pod for super::ProbeConfig {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::SavedArgs {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_prefixes_match_requests_and_responses() {
        assert!(looks_like_http(b"GET ", 4));
        assert!(looks_like_http(b"HTTP", 4));
        assert!(looks_like_http(b"POST", 4));
        assert!(looks_like_http(b"G\0\0\0", 1));
        assert!(!looks_like_http(b"\x16\x03\x01\x00", 4));
        assert!(!looks_like_http(b"GETX", 4));
        assert!(!looks_like_http(b"GET ", 0));
    }

    #[test]
    fn records_have_the_layout_both_sides_expect() {
        assert_eq!(core::mem::size_of::<DataHeader>() % 8, 0);
        assert_eq!(core::mem::size_of::<CloseRecord>() % 8, 0);
        assert_eq!(core::mem::size_of::<ExecRecord>() % 8, 0);
        assert_eq!(
            core::mem::offset_of!(DataRecord, data),
            core::mem::size_of::<DataHeader>()
        );
    }
}
