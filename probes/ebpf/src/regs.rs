//! Data syscalls on kernels from 5.15: only their exits are hooked, and each reads its
//! syscall's arguments from the user registers the kernel saved at entry
//! (`bpf_task_pt_regs`). The syscalls of the host pay one hook instead of two, a thread
//! needs no saved entry, and a read already blocked when the probes attached is read
//! like any other.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use http_profiler_common::{
    ArgKind, DIRECTION_RECV, DIRECTION_SEND, OMITTED_SENDFILE, OMITTED_SPLICE, SavedArgs, state,
};

use crate::{
    MSG_PEEK, capture, connected,
    kernel::{self, Task, config},
    maps::state_get,
    omitted_target, ret,
};

/// Where a syscall's first four arguments are in `struct pt_regs`, whose layout is each
/// architecture's ABI. x86_64 passes them in di, si, dx and r10, which a syscall leaves
/// as they were; arm64 in x0-x3, x0 taking the return value, so the first is read from
/// orig_x0. The verifier checks every load against the running kernel's `struct
/// pt_regs`: an offset that named no register would fail the load, never misread.
#[cfg(bpf_target_arch = "x86_64")]
const ARG_OFFSETS: [usize; 4] = [112, 104, 96, 56];
#[cfg(bpf_target_arch = "aarch64")]
const ARG_OFFSETS: [usize; 4] = [272, 8, 16, 24];
#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
compile_error!("the probes read syscall arguments from x86_64 and arm64 registers only");

/// The current task's BTF pointer.
#[inline(always)]
fn current_task() -> *const u8 {
    // SAFETY: a helper without preconditions.
    unsafe { bpf_get_current_task_btf() as *const u8 }
}

/// The current syscall's user registers, as saved at its entry by `task`.
#[inline(always)]
fn user_regs(task: *const u8) -> *const u8 {
    // SAFETY: the helper takes a task's BTF pointer.
    unsafe { bpf_task_pt_regs(task as *mut _) as *const u8 }
}

/// Argument `i` (0-3) of the current syscall, from its saved user registers.
#[inline(always)]
fn syscall_arg(regs: *const u8, i: usize) -> u64 {
    // SAFETY: `regs` is the kernel's pointer to the current task's saved registers; the
    // verifier knows it as one (a BTF pointer) and checks the load.
    unsafe { core::ptr::read_volatile(regs.add(ARG_OFFSETS[i]) as *const u64) }
}

/// The current task, when its process passes the filters, the syscall moved bytes
/// (returned in `moved`) and every hook is attached; with its pid_tgid, read from the
/// task it already holds rather than asked of one more helper.
#[inline(always)]
fn moved_bytes(ctx: &TracePointContext) -> Option<(*const u8, u64, i64)> {
    let task = current_task();
    let tgid: u32 = kernel::load(task, config!(offsets.task_tgid));
    if !kernel::pid_selected(tgid) {
        return None;
    }
    let moved = ret(ctx);
    if moved <= 0 || state_get(state::ARMED) == 0 || !kernel::comm_selected() {
        return None;
    }
    let tid: u32 = kernel::load(task, config!(offsets.task_pid));
    Some((task, (u64::from(tgid) << 32) | u64::from(tid), moved))
}

/// The exit of a data syscall whose fd, buffer and size are its first three arguments;
/// `peek_flags` is the index of its flags argument when it has one (recvfrom, recvmsg),
/// else 0.
#[inline(always)]
fn exit_data(ctx: &TracePointContext, kind: ArgKind, direction: u8, peek_flags: usize) -> u32 {
    let Some((task, pid_tgid, moved)) = moved_bytes(ctx) else {
        return 0;
    };
    let regs = user_regs(task);
    // MSG_PEEK reads leave the bytes in the socket: they are copied when really read.
    if peek_flags != 0 && syscall_arg(regs, peek_flags) & MSG_PEEK != 0 {
        return 0;
    }
    let args = SavedArgs {
        kind: kind as u32,
        direction: direction as u32,
        fd: syscall_arg(regs, 0) as i32,
        syscall_nr: 0,
        ptr: syscall_arg(regs, 1),
        count: syscall_arg(regs, 2),
        sock: 0,
        seeded: 0,
        _pad: 0,
    };
    capture(ctx, Task::Btf(task), &args, moved, pid_tgid);
    0
}

macro_rules! data_exit {
    ($enter:ident, $exit:ident, $kind:expr, $direction:expr, $peek_flags:expr) => {
        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            exit_data(&ctx, $kind, $direction, $peek_flags)
        }
    };
}

data_syscalls!(data_exit);

/// The exit of sendfile or splice: counts the bytes on the socket they moved to (`out`,
/// argument `out_arg`) or else from (`input`, argument `in_arg` when there is one).
#[inline(always)]
fn exit_omitted(ctx: &TracePointContext, out_arg: usize, in_arg: Option<usize>, reason: u64) {
    let Some((task, pid_tgid, moved)) = moved_bytes(ctx) else {
        return;
    };
    let regs = user_regs(task);
    let input = in_arg.map(|i| syscall_arg(regs, i));
    let Some((fd, sock, direction)) =
        omitted_target(Task::Btf(task), syscall_arg(regs, out_arg), input)
    else {
        return;
    };
    let args = SavedArgs {
        kind: ArgKind::Omitted as u32,
        direction: direction as u32,
        fd: fd as i32,
        syscall_nr: 0,
        ptr: reason,
        count: 0,
        sock,
        seeded: 0,
        _pad: 0,
    };
    capture(ctx, Task::Btf(task), &args, moved, pid_tgid);
}

/// sendfile(out_fd, in_fd, offset, count): bytes from a file to a socket, which never
/// pass through user memory. Counted and flagged, not copied.
#[tracepoint]
pub fn exit_sendfile(ctx: TracePointContext) -> u32 {
    exit_omitted(&ctx, 0, None, OMITTED_SENDFILE);
    0
}

/// splice(fd_in, off_in, fd_out, off_out, len, flags): bytes between a pipe and a socket.
#[tracepoint]
pub fn exit_splice(ctx: TracePointContext) -> u32 {
    exit_omitted(&ctx, 2, Some(0), OMITTED_SPLICE);
    0
}

#[tracepoint]
pub fn exit_connect(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if kernel::process_selected((pid_tgid >> 32) as u32) {
        let task = current_task();
        connected(Task::Btf(task), ret(&ctx), syscall_arg(user_regs(task), 0));
    }
    0
}
