//! The kernel side of http-profiler: syscall tracepoints that copy the payload of TCP
//! sockets carrying HTTP into a ring buffer.
//!
//! A data syscall is copied at its exit, once it has moved bytes: the exit asks whether
//! the fd is a TCP socket (and checks its ports under `--port`) and whether its
//! connection is HTTP, then copies what the syscall really moved, bounded by its return
//! value. Where the exit finds the syscall's arguments depends on the kernel: from 5.15
//! it reads them from the user registers the kernel saved at entry (`regs`), and only
//! exits are hooked; before, enter hooks save them per thread (`saved`), which every
//! read and write of every process pays for.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

/// Every data syscall the probes copy, one line each: the name of its program in each way
/// of hooking (entry in `saved`, exit in `regs`), the shape of its buffer argument, its
/// direction, and the index of its flags argument when MSG_PEEK can be among them (else
/// 0). `$hook` makes one way's program from a line.
#[rustfmt::skip]
macro_rules! data_syscalls {
    ($hook:ident) => {
        $hook!(enter_read,     exit_read,     ArgKind::Buffer, DIRECTION_RECV, 0);
        $hook!(enter_write,    exit_write,    ArgKind::Buffer, DIRECTION_SEND, 0);
        $hook!(enter_readv,    exit_readv,    ArgKind::Iovec,  DIRECTION_RECV, 0);
        $hook!(enter_writev,   exit_writev,   ArgKind::Iovec,  DIRECTION_SEND, 0);
        $hook!(enter_sendto,   exit_sendto,   ArgKind::Buffer, DIRECTION_SEND, 0);
        $hook!(enter_recvfrom, exit_recvfrom, ArgKind::Buffer, DIRECTION_RECV, 3);
        $hook!(enter_sendmsg,  exit_sendmsg,  ArgKind::Msghdr, DIRECTION_SEND, 0);
        $hook!(enter_recvmsg,  exit_recvmsg,  ArgKind::Msghdr, DIRECTION_RECV, 2);
    };
}

mod conn;
mod emit;
mod kernel;
mod maps;
mod regs;
mod saved;

use aya_ebpf::{
    EbpfContext, helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use http_profiler_common::{DIRECTION_RECV, DIRECTION_SEND, SavedArgs};

use crate::{
    conn::{ConnClass, open_conn},
    kernel::Task,
};

/// Syscall tracepoint records: after the 8-byte common header and the syscall number, each
/// argument (enter) or the return value (exit) takes 8 bytes. This layout is the same on
/// every kernel and architecture since syscall tracepoints exist.
const SYSCALL_NR: usize = 8;
const ARG0: usize = 16;
const RET: usize = 16;

const MSG_PEEK: u64 = 2;
const EINPROGRESS: i64 = 115;

/// Loads the 8-byte word at `offset` of the tracepoint record straight from the context.
/// The verifier allows aligned loads from a tracepoint's context; the helper that
/// `read_at` calls cost a good share of every hook, and most hooks of every process
/// do little else.
#[inline(always)]
fn word(ctx: &TracePointContext, offset: usize) -> u64 {
    // SAFETY: `offset` is a multiple of 8 inside the record, which holds the syscall
    // number and six arguments (enter) or the return value (exit).
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(offset) as *const u64) }
}

#[inline(always)]
fn arg(ctx: &TracePointContext, i: usize) -> u64 {
    word(ctx, ARG0 + 8 * i)
}

/// The syscall number: an int in enter records, a long in exit records (little-endian,
/// so its low half reads the same).
#[inline(always)]
fn syscall_nr(ctx: &TracePointContext) -> u32 {
    word(ctx, SYSCALL_NR) as u32
}

#[inline(always)]
fn ret(ctx: &TracePointContext) -> i64 {
    word(ctx, RET) as i64
}

/// Copies the `moved` bytes of a data syscall of a selected thread, described by `args`,
/// when its fd is a TCP socket the port filter passes and its connection is HTTP.
#[inline(always)]
fn capture(ctx: &TracePointContext, task: Task, args: &SavedArgs, moved: i64, pid_tgid: u64) {
    let sock = if args.sock != 0 {
        args.sock
    } else {
        let Some(sock) = conn::selected_sock_of_fd(task, args.fd) else {
            return;
        };
        sock
    };
    let Some(conn) = conn::conn_for_data(sock) else {
        return;
    };
    // SAFETY: a valid map value pointer, used for this one program run.
    emit::data(
        ctx,
        args,
        sock,
        unsafe { &mut *conn },
        moved as u64,
        pid_tgid,
    );
}

/// For sendfile and splice: the fd, socket and direction of their bytes, when the `out`
/// fd (send) or else the `input` fd (receive) is a TCP socket the port filter passes.
#[inline(always)]
fn omitted_target(task: Task, out: u64, input: Option<u64>) -> Option<(u64, u64, u8)> {
    let (fd, sock, direction) = match (kernel_sock(task, out), input) {
        (Some(sock), _) => (out, sock, DIRECTION_SEND),
        (None, Some(fd)) => (fd, kernel_sock(task, fd)?, DIRECTION_RECV),
        (None, None) => return None,
    };
    conn::ports_pass(sock).then_some((fd, sock, direction))
}

#[inline(always)]
fn kernel_sock(task: Task, fd: u64) -> Option<u64> {
    kernel::tcp_sock_of_fd(task, fd as i32)
}

/// A connect that returned `r` on `fd`: a new connection when it succeeded or is under
/// way (a non-blocking connect returns EINPROGRESS with the addresses already chosen).
#[inline(always)]
fn connected(task: Task, r: i64, fd: u64) {
    if (r == 0 || r == -EINPROGRESS)
        && let Some(sock) = kernel_sock(task, fd)
    {
        open_conn(sock, ConnClass::Fresh);
    }
}

/// Tail-called by the data exits (never attached): copies the syscall's bytes in rounds.
#[tracepoint]
pub fn copy_chunks(ctx: TracePointContext) -> u32 {
    emit::copy_chunks(&ctx);
    0
}

/// accept and accept4 return the new connection's fd.
#[tracepoint]
pub fn exit_accept(ctx: TracePointContext) -> u32 {
    let fd = ret(&ctx);
    if fd < 0 {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !kernel::process_selected((pid_tgid >> 32) as u32) {
        return 0;
    }
    if let Some(sock) = kernel::tcp_sock_of_fd(Task::Current, fd as i32) {
        open_conn(sock, ConnClass::Fresh);
    }
    0
}

/// execve and execveat: a process that exec'd has a new name and command line.
#[tracepoint]
pub fn exit_exec(ctx: TracePointContext) -> u32 {
    if ret(&ctx) != 0 {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if kernel::process_selected((pid_tgid >> 32) as u32) {
        emit::exec(pid_tgid);
    }
    0
}

#[tracepoint]
pub fn enter_close(ctx: TracePointContext) -> u32 {
    let fd = arg(&ctx, 0);
    let pid_tgid = bpf_get_current_pid_tgid();
    if !kernel::process_selected((pid_tgid >> 32) as u32) {
        return 0;
    }
    if let Some((file, sock)) = kernel::tcp_file_of_fd(Task::Current, fd as i32)
        && kernel::last_reference(file)
    {
        emit::close(sock, fd as i32, pid_tgid);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
