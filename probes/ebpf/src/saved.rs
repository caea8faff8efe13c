//! Data syscalls on kernels before 5.15, which cannot hand a tracepoint program the
//! user registers: enter hooks save a syscall's arguments per thread for its exit. Also
//! every thread already blocked in a read when the probes attach, seeded by userspace.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use http_profiler_common::{
    ArgKind, DIRECTION_RECV, DIRECTION_SEND, OMITTED_SENDFILE, OMITTED_SPLICE, SavedArgs, state,
};

use crate::{
    MSG_PEEK, arg, capture, conn, connected,
    kernel::{self, Task, config},
    maps::{ARGS, state_get},
    omitted_target, ret, syscall_nr,
};

/// The entering thread's pid_tgid when its process passes the filters, with its stale
/// seeded entry dropped on the way: seeded entries belong to selected processes only, so
/// the pid filter (which reads nothing but CONFIG) goes first, and the comm filter (a
/// helper call) last.
#[inline(always)]
fn selected_thread() -> Option<u64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !kernel::pid_selected((pid_tgid >> 32) as u32) {
        return None;
    }
    drop_stale_seed(pid_tgid);
    kernel::comm_selected().then_some(pid_tgid)
}

/// A thread that enters a syscall is out of whatever syscall userspace seeded for it
/// (checked only while userspace is seeding: see `state::SEEDING`).
#[inline(always)]
fn drop_stale_seed(pid_tgid: u64) {
    if state_get(state::SEEDING) == 0 {
        return;
    }
    // SAFETY: read by value.
    if unsafe { ARGS.get(pid_tgid) }.is_some_and(|a| a.seeded != 0) {
        let _ = ARGS.remove(pid_tgid);
    }
}

/// Saves a data syscall's arguments for its exit hook, for a thread of a selected
/// process. Whether its fd is a TCP socket carrying HTTP is left to the exit, asked
/// only when the syscall moved bytes: the walk from fd to socket is a hook's dearest
/// step, the read that finds nothing (EAGAIN) that a non-blocking server makes after
/// each request (nginx) or before it waits (Go, libuv) need not pay it, and right after
/// the syscall the walk finds the fd table and the socket in the CPU's caches. Under a
/// `--port` filter it is asked here: most TCP traffic on the host is then someone
/// else's, turned away by its ports before any map is touched.
#[inline(always)]
fn save_data_args(ctx: &TracePointContext, kind: ArgKind, direction: u8) -> u32 {
    let Some(pid_tgid) = selected_thread() else {
        return 0;
    };
    let fd = arg(ctx, 0);
    let sock = if config!(port_count) != 0 {
        let Some(sock) = conn::selected_sock_of_fd(Task::Current, fd as i32) else {
            return 0;
        };
        sock
    } else {
        0
    };
    save_args(
        ctx,
        pid_tgid,
        sock,
        fd,
        arg(ctx, 1),
        arg(ctx, 2),
        kind,
        direction,
    )
}

/// Saves the arguments of a data syscall for its exit hook, once every hook is attached.
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "one flat record of a syscall's arguments"
)]
fn save_args(
    ctx: &TracePointContext,
    pid_tgid: u64,
    sock: u64,
    fd: u64,
    ptr: u64,
    count: u64,
    kind: ArgKind,
    direction: u8,
) -> u32 {
    if state_get(state::ARMED) == 0 {
        return 0;
    }
    let args = SavedArgs {
        kind: kind as u32,
        direction: direction as u32,
        fd: fd as i32,
        syscall_nr: syscall_nr(ctx),
        ptr,
        count,
        sock,
        seeded: 0,
        _pad: 0,
    };
    match ARGS.get_ptr_mut(pid_tgid) {
        // SAFETY: the entry is this thread's: the probes write it only from this thread.
        Some(slot) => unsafe { *slot = args },
        None => {
            let _ = ARGS.insert(pid_tgid, args, 0);
        }
    }
    0
}

macro_rules! data_enter {
    ($enter:ident, $exit:ident, $kind:expr, $direction:expr, $peek_flags:expr) => {
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            // MSG_PEEK reads leave the bytes in the socket: they are copied when really read.
            if $peek_flags != 0 && arg(&ctx, $peek_flags) & MSG_PEEK != 0 {
                // A peek ends a seeded read as surely as a read does: left in place, a
                // stale seeded entry would have this peek's bytes copied as read.
                let _ = selected_thread();
                return 0;
            }
            save_data_args(&ctx, $kind, $direction)
        }
    };
}

data_syscalls!(data_enter);

/// sendfile(out_fd, in_fd, offset, count): bytes from a file to a socket, which never
/// pass through user memory. Counted and flagged, not copied.
#[tracepoint]
pub fn enter_sendfile(ctx: TracePointContext) -> u32 {
    save_omitted(&ctx, arg(&ctx, 0), None, OMITTED_SENDFILE)
}

/// splice(fd_in, off_in, fd_out, off_out, len, flags): bytes between a pipe and a socket.
#[tracepoint]
pub fn enter_splice(ctx: TracePointContext) -> u32 {
    save_omitted(&ctx, arg(&ctx, 2), Some(arg(&ctx, 0)), OMITTED_SPLICE)
}

/// Saves an omitted-bytes syscall whose `out` fd (send) or else `input` fd (receive) is
/// a TCP socket the port filter passes; `ptr` carries the reason.
#[inline(always)]
fn save_omitted(ctx: &TracePointContext, out: u64, input: Option<u64>, reason: u64) -> u32 {
    let Some(pid_tgid) = selected_thread() else {
        return 0;
    };
    let Some((fd, sock, direction)) = omitted_target(Task::Current, out, input) else {
        return 0;
    };
    save_args(
        ctx,
        pid_tgid,
        sock,
        fd,
        reason,
        0,
        ArgKind::Omitted,
        direction,
    )
}

/// The exit of every data syscall: copies what it moved.
#[tracepoint]
pub fn exit_data(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Only threads of processes that pass the pid filter have entries (the enter hooks
    // and the seeding give entries to no others): the syscalls of all others leave
    // here, without the hash lookup that would find nothing.
    if !kernel::pid_selected((pid_tgid >> 32) as u32) {
        return 0;
    }
    let Some(slot) = ARGS.get_ptr_mut(pid_tgid) else {
        return 0;
    };
    // SAFETY: the entry is this thread's; it is copied out, then marked used (a syscall
    // number no exit has, and not seeded), which reads as no entry everywhere ARGS is read.
    let args = unsafe { *slot };
    unsafe {
        (*slot).syscall_nr = u32::MAX;
        (*slot).seeded = 0;
    }
    if args.syscall_nr != syscall_nr(&ctx) {
        return 0;
    }
    let moved = ret(&ctx);
    if moved <= 0 {
        return 0;
    }
    capture(&ctx, Task::Current, &args, moved, pid_tgid);
    0
}

#[tracepoint]
pub fn enter_connect(ctx: TracePointContext) -> u32 {
    let fd = arg(&ctx, 0);
    let pid_tgid = bpf_get_current_pid_tgid();
    if !kernel::process_selected((pid_tgid >> 32) as u32) {
        return 0;
    }
    let args = SavedArgs {
        kind: ArgKind::Connect as u32,
        direction: 0,
        fd: fd as i32,
        syscall_nr: syscall_nr(&ctx),
        ptr: 0,
        count: 0,
        sock: 0,
        seeded: 0,
        _pad: 0,
    };
    let _ = ARGS.insert(pid_tgid, args, 0);
    0
}

#[tracepoint]
pub fn exit_connect_saved(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(args) = (unsafe { ARGS.get(pid_tgid) }).copied() else {
        return 0;
    };
    let _ = ARGS.remove(pid_tgid);
    if args.kind == ArgKind::Connect as u32 {
        connected(Task::Current, ret(&ctx), args.fd as u64);
    }
    0
}
