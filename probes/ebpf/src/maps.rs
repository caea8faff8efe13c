//! The maps the probes share with each other and with userspace.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use http_profiler_common::{DataRecord, counter};

use crate::conn::ConnState;

/// Records for userspace. Its size is set by userspace at load (`--ring-buffer-bytes`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// A data syscall's arguments, saved at entry for its exit, per thread (pid_tgid).
#[map]
pub static ARGS: HashMap<u64, SavedArgs> = HashMap::with_max_entries(16384, 0);

/// Per connection end (`struct sock` address): stream positions, class and addresses.
/// LRU, because a process that exits without close() leaves its entries behind.
#[map]
pub static CONNS: LruHashMap<u64, ConnState> = LruHashMap::with_max_entries(65536, 0);

/// Connections userspace found not to be HTTP: sock -> generation.
#[map]
pub static IGNORED: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);

/// Where a data record is built before it is copied into the ring buffer: too large for
/// the 512-byte BPF stack.
#[map]
pub static SCRATCH: PerCpuArray<DataRecord> = PerCpuArray::with_max_entries(1, 0);

/// What the copy of one syscall has left to do, passed along its tail calls.
#[map]
pub static COPY: PerCpuArray<CopyState> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct CopyState {
    pub seg_base: u64,
    pub seg_left: u64,
    pub iov: u64,
    pub iov_count: u64,
    pub next_iov: u64,
    pub done: u64,
    pub limit: u64,
    pub moved: u64,
    pub pos: u64,
}

/// Records one `copy_chunks` run emits before it tail-calls itself.
pub const CHUNKS_PER_CALL: u32 = 4;

/// Slot of `copy_chunks` in TAIL_CALLS; userspace fills it after loading.
pub const TAIL_COPY: u32 = 0;

#[map]
pub static TAIL_CALLS: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Per-CPU counters, indexed by `http_profiler_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

#[inline(always)]
pub fn count(index: u32, by: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU value; a syscall tracepoint is never interrupted by another
        // tracepoint program on the same CPU.
        unsafe { *c += by };
    }
}

#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// read, write, sendto, recvfrom: one buffer.
    Buffer = 1,
    /// readv, writev: an iovec array and its length.
    Iovec = 2,
    /// sendmsg, recvmsg: a msghdr holding an iovec array.
    Msghdr = 3,
    /// connect: only the fd matters.
    Connect = 4,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SavedArgs {
    pub kind: u32,
    pub direction: u32,
    pub fd: i32,
    pub _pad: u32,
    /// The buffer, iovec array or msghdr.
    pub ptr: u64,
    /// The buffer's size or the iovec count.
    pub count: u64,
    pub sock: u64,
    pub generation: u32,
}
