//! Reads of kernel memory: the process filters and the walk from an fd to its TCP socket.
//! Every struct offset comes from userspace (the running kernel's BTF) through `CONFIG`.

use aya_ebpf::helpers::{
    bpf_probe_read_kernel,
    generated::{bpf_get_current_comm, bpf_get_current_task},
};
use http_profiler_common::{
    FDTABLE_HEAD_BYTES, FILE_COUNT_IS_REF, MAX_PID_FILTERS, MAX_PORT_FILTERS, ProbeConfig,
    SOCKET_HEAD_BYTES, WORD_CAST_CALL, state,
};

use crate::maps::{state_get, state_set};

/// Filled in by userspace before load (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
pub(crate) static CONFIG: ProbeConfig = ProbeConfig::empty();

/// Reads a field of `CONFIG`. The volatile read stops the compiler from folding in the
/// all-zero value it sees at build time.
macro_rules! config {
    ($($field:tt)+) => {
        // SAFETY: CONFIG is a plain static; the pointer is valid and aligned.
        unsafe { core::ptr::read_volatile(&raw const $crate::kernel::CONFIG.$($field)+) }
    };
}
pub(crate) use config;

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const SOCK_STREAM: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;

#[inline(always)]
pub fn read<T>(base: u64, offset: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly on a bad one.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.ok()
}

/// The first `N` words of a kernel object, read with one helper call: fields that share
/// an object's head cost one call, not one each.
#[inline(always)]
fn read_head<const N: usize>(base: u64) -> Option<[u64; N]> {
    if !by_loads() {
        return read(base, 0);
    }
    let mut head = [0u64; N];
    let mut i = 0;
    while i < N {
        head[i] = word_at(base + 8 * i as u64);
        i += 1;
    }
    Some(head)
}

/// Whether kernel memory is read by plain loads (`word_at`) rather than by helper calls:
/// where the kernel has `bpf_rdonly_cast` (Linux 6.2), userspace sets `word_type_id`.
#[inline(always)]
fn by_loads() -> bool {
    config!(word_type_id) != 0
}

/// The 8 bytes of kernel memory at `addr`, by one load: `bpf_rdonly_cast` makes the
/// address a read-only pointer to a struct of one 8-byte integer, which the verifier
/// lets the program load from and the JIT turns into a load that cannot fault (a bad
/// address reads as 0). A helper call costs tens of nanoseconds; the cast itself is
/// rewritten by the verifier into a register move. Only where `by_loads()`.
#[inline(always)]
fn word_at(addr: u64) -> u64 {
    let ptr: u64;
    let type_id = config!(word_type_id) as u64;
    // SAFETY: the bytes are `WORD_CAST_CALL`, a call of the kfunc bpf_rdonly_cast(r1,
    // r2) whose id userspace writes in before loading; like any call it returns in r0
    // and leaves r1-r5 undefined. Its type id argument is a constant of CONFIG, as the
    // verifier requires.
    unsafe {
        core::arch::asm!(
            ".quad {call}",
            call = const u64::from_le_bytes(WORD_CAST_CALL),
            inout("r1") addr => _,
            inout("r2") type_id => _,
            lateout("r0") ptr,
            lateout("r3") _,
            lateout("r4") _,
            lateout("r5") _,
            options(nostack),
        );
        core::ptr::read_volatile(ptr as *const u64)
    }
}

/// The `bytes`-wide field at `offset` of a head read by `read_head`; userspace checked
/// at start-up that it lies inside one of the head's words.
#[inline(always)]
fn head_field<const N: usize>(head: &[u64; N], offset: u32, bytes: u32) -> u64 {
    let index = (offset / 8) as usize;
    let mut word = 0;
    // Constant indexes only: the verifier of older kernels refuses a variable one.
    let mut i = 0;
    while i < N {
        if i == index {
            word = head[i];
        }
        i += 1;
    }
    let word = word >> ((offset % 8) * 8);
    if bytes >= 8 {
        word
    } else {
        word & ((1u64 << (bytes * 8)) - 1)
    }
}

const FDTABLE_HEAD: usize = FDTABLE_HEAD_BYTES as usize / 8;
const SOCKET_HEAD: usize = SOCKET_HEAD_BYTES as usize / 8;

/// Whether a process passes the `--pid`/`--comm` filters; the profiler itself never does.
#[inline(always)]
pub fn process_selected(tgid: u32) -> bool {
    pid_selected(tgid) && comm_selected()
}

/// Whether the current thread passes the `--comm` filter.
#[inline(always)]
pub fn comm_selected() -> bool {
    if config!(comm_filter) == 0 {
        return true;
    }
    // Read into an uninitialised buffer: zeroing one first (as the helper's wrapper does)
    // costs a call to a byte-at-a-time memset, on every syscall of every process.
    let mut comm = core::mem::MaybeUninit::<[u8; 16]>::uninit();
    // SAFETY: the buffer has room for 16 bytes; the helper writes all of them (the name,
    // zero-padded, or zeroes on failure).
    let comm = unsafe {
        if bpf_get_current_comm(comm.as_mut_ptr().cast(), 16) != 0 {
            return false;
        }
        comm.assume_init()
    };
    let mut i = 0;
    while i < comm.len() {
        if comm[i] != config!(comm[i]) {
            return false;
        }
        if comm[i] == 0 {
            break;
        }
        i += 1;
    }
    true
}

/// Whether a process passes the `--pid` filter and is not the profiler: no memory but
/// `CONFIG` is read, so it is the cheapest test a hook can start with.
#[inline(always)]
pub fn pid_selected(tgid: u32) -> bool {
    if tgid == config!(self_tgid) {
        return false;
    }
    let n = config!(pid_count) as usize;
    if n == 0 {
        return true;
    }
    let mut found = false;
    let mut i = 0;
    while i < MAX_PID_FILTERS {
        if i < n && config!(pids[i]) == tgid {
            found = true;
        }
        i += 1;
    }
    found
}

/// The local and the remote port of `sock`, in host order. skc_dport (network order) and
/// skc_num (host order) sit side by side in every supported kernel's sock_common, so one
/// 4-byte read takes both; two reads where they do not.
#[inline(always)]
pub fn socket_ports(sock: u64) -> Option<(u16, u16)> {
    let o = config!(offsets);
    if o.sk_num == o.sk_dport + 2 {
        let pair: u32 = read(sock, o.sk_dport)?;
        Some(((pair >> 16) as u16, u16::from_be(pair as u16)))
    } else {
        Some((read(sock, o.sk_num)?, u16::from_be(read(sock, o.sk_dport)?)))
    }
}

/// Whether a connection passes the `--port` filter (either end's port).
#[inline(always)]
pub fn ports_selected(local: u16, remote: u16) -> bool {
    let n = config!(port_count) as usize;
    if n == 0 {
        return true;
    }
    let mut i = 0;
    while i < MAX_PORT_FILTERS {
        if i < n {
            let p = config!(ports[i]);
            if p == local || p == remote {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// The current task, where a walk from an fd to its file starts.
#[derive(Clone, Copy)]
pub enum Task {
    /// Reached through `bpf_get_current_task` and read with helper calls: what kernels
    /// before 5.15 (hooked at entry and exit, `saved`) and the programs both ways load
    /// can do.
    Current,
    /// The task's BTF pointer (`bpf_get_current_task_btf`), which the exits of `regs`
    /// have anyway. The verifier checks each load from it, and from the pointers read
    /// through it, against the kernel's own types, with the offsets of `CONFIG` (a
    /// frozen read-only map, so constants to it): task->files->fdt and the fd table's
    /// size and array are plain loads instead of four helper calls (the task, then a
    /// read each for files, fdt and the table's head).
    Btf(*const u8),
}

/// The `struct sock` behind `fd` in the current process, if it is a TCP socket over IPv4
/// or IPv6: task->files->fdt->fd[fd], a file with the socket file operations (socket_of_file),
/// ->private_data, a stream socket with TCP's operations (is_tcp), ->sk.
#[inline(always)]
pub fn tcp_sock_of_fd(task: Task, fd: i32) -> Option<u64> {
    tcp_file_of_fd(task, fd).map(|(_, sk)| sk)
}

/// Whether closing `file` now drops its last reference: a socket shared with a forked
/// child, or dup()ed, lives on after one holder closes it.
#[inline(always)]
pub fn last_reference(file: u64) -> bool {
    let count: i64 = match read(file, config!(offsets.file_count)) {
        Some(c) => c,
        None => return true,
    };
    if config!(offsets.file_count_kind) == FILE_COUNT_IS_REF {
        // file_ref_t (6.13+) counts references less one.
        count == 0
    } else {
        count == 1
    }
}

/// Whether `file` is a socket, and if so its `struct socket`. The kernel tells a socket
/// by its file operations (every socket file has `socket_file_ops`, and nothing else has
/// them: `sock_from_file`); their address is in no symbol table the probes can read, so
/// they learn it from the first file whose inode says it is a socket. From then on a walk
/// reads the pointer, in the cache line of the file it has just read, instead of the
/// inode's mode, in another object.
#[inline(always)]
fn socket_of_file(file: u64) -> Option<u64> {
    let (f_op, private_data) = file_ops_and_private_data(file)?;
    let known = state_get(state::SOCKET_FILE_OPS) as u64;
    if known != 0 {
        return (f_op == known).then_some(private_data);
    }
    let inode: u64 = read(file, config!(offsets.file_inode))?;
    let mode: u16 = read(inode, config!(offsets.inode_mode))?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    state_set(state::SOCKET_FILE_OPS, f_op as i64);
    Some(private_data)
}

/// A file's operations and private data. Where the second follows the first within a
/// few words (from Linux 6.12, 16 bytes apart) one helper call reads both.
#[inline(always)]
fn file_ops_and_private_data(file: u64) -> Option<(u64, u64)> {
    let f_op = config!(offsets.file_f_op);
    let private_data = config!(offsets.file_private_data);
    if by_loads() {
        return Some((
            word_at(file + f_op as u64),
            word_at(file + private_data as u64),
        ));
    }
    let gap = private_data.wrapping_sub(f_op);
    if gap % 8 == 0 && gap > 0 && gap < 32 {
        let words: [u64; 4] = read(file, f_op)?;
        return Some((words[0], head_field(&words, gap, 8)));
    }
    Some((read(file, f_op)?, read(file, private_data)?))
}

/// A load from a BTF pointer at `offset`, checked by the verifier (see `Task::Btf`); a
/// bad address reads as zero.
#[inline(always)]
pub fn load<T>(base: *const u8, offset: u32) -> T {
    // SAFETY: the verifier allows the load only at a member of the pointer's type, of
    // the member's size, and the JIT makes it one that cannot fault.
    unsafe { core::ptr::read_volatile(base.add(offset as usize) as *const T) }
}

/// The `struct file` at `fd` in the current task's fd table, if any.
#[inline(always)]
fn file_of_fd(task: Task, fd: i32) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    let (max_fds, fd_array) = match task {
        Task::Current => {
            // SAFETY: the helper returns the current task's address; it is only read
            // through bpf_probe_read_kernel.
            let task = unsafe { bpf_get_current_task() };
            let files: u64 = read(task, config!(offsets.task_files))?;
            let fdt: u64 = read(files, config!(offsets.files_fdt))?;
            let head: [u64; FDTABLE_HEAD] = read_head(fdt)?;
            (
                head_field(&head, config!(offsets.fdtable_max_fds), 4),
                head_field(&head, config!(offsets.fdtable_fd), 8),
            )
        }
        Task::Btf(task) => {
            let files: *const u8 = load(task, config!(offsets.task_files));
            if files.is_null() {
                return None;
            }
            // An RCU pointer: the verifier wants it checked before it is read through.
            let fdt: *const u8 = load(files, config!(offsets.files_fdt));
            if fdt.is_null() {
                return None;
            }
            (
                load::<u32>(fdt, config!(offsets.fdtable_max_fds)) as u64,
                load::<u64>(fdt, config!(offsets.fdtable_fd)),
            )
        }
    };
    if fd as u64 >= max_fds {
        return None;
    }
    let file: u64 = if by_loads() {
        word_at(fd_array + fd as u64 * 8)
    } else {
        read(fd_array, fd as u32 * 8)?
    };
    (file != 0).then_some(file)
}

/// The `struct file` and `struct sock` behind `fd`, for a TCP socket (see tcp_sock_of_fd).
#[inline(always)]
pub fn tcp_file_of_fd(task: Task, fd: i32) -> Option<(u64, u64)> {
    let file = file_of_fd(task, fd)?;
    let socket = socket_of_file(file)?;
    let head: [u64; SOCKET_HEAD] = read_head(socket)?;
    if head_field(&head, config!(offsets.socket_type), 2) as u16 != SOCK_STREAM {
        return None;
    }
    let sk = head_field(&head, config!(offsets.socket_sk), 8);
    if sk == 0 || !is_tcp(sk, head_field(&head, config!(offsets.socket_ops), 8))? {
        return None;
    }
    Some((file, sk))
}

/// Whether the stream socket `sk`, whose `struct socket` has the operations `ops`, is TCP
/// over IPv4 or IPv6. A socket with the operations of a socket found to be TCP of a
/// family is TCP of that family: the kernel gives plain TCP sockets `inet_stream_ops` or
/// `inet6_stream_ops`, and kernel-TLS ones TLS tables, none of which another protocol
/// uses. Their addresses are in no symbol table the probes can read, so the probes learn
/// one per family from the first socket whose sock says TCP, and from then on know such
/// sockets by the operations in the socket's head, read anyway, without reading the
/// sock's family and protocol (two cache lines the syscall may not have touched yet).
/// Sockets with other operations (Unix, MPTCP) are still judged by those two fields.
#[inline(always)]
fn is_tcp(sk: u64, ops: u64) -> Option<bool> {
    if ops != 0
        && (ops == state_get(state::TCP_OPS_INET) as u64
            || ops == state_get(state::TCP_OPS_INET6) as u64)
    {
        return Some(true);
    }
    let family: u16 = read(sk, config!(offsets.sk_family))?;
    let learned = match family {
        AF_INET => state::TCP_OPS_INET,
        AF_INET6 => state::TCP_OPS_INET6,
        _ => return Some(false),
    };
    let protocol: u16 = read(sk, config!(offsets.sk_protocol))?;
    if protocol != IPPROTO_TCP {
        return Some(false);
    }
    if state_get(learned) == 0 {
        state_set(learned, ops as i64);
    }
    Some(true)
}
