//! The maps the probes share with each other and with userspace.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use http_profiler_common::{DataRecord, SavedArgs, counter, state};

use crate::conn::ConnState;

/// Records for userspace. Its size is set by userspace at load (`--ring-buffer-bytes`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// A data syscall's arguments, saved at entry for its exit, per thread (pid_tgid). The
/// exit marks an entry used instead of deleting it, and the thread's next entry writes
/// over it in place: a delete and an insert per syscall were about a tenth of the probes'
/// time. LRU, so that the entries of threads that have exited make room for new ones.
/// Without a `--port` filter every thread of a selected process that reads or writes
/// anything has one (whether the fd is a socket is asked at exit): as many as CONNS
/// holds connections, so that a thread blocked in a long read is not evicted by the
/// others' entries.
#[map]
pub static ARGS: LruHashMap<u64, SavedArgs> = LruHashMap::with_max_entries(65536, 0);

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
    /// Payload bytes gathered in SCRATCH for the record being built.
    pub fill: u64,
    /// Offset in the syscall's bytes of that record's first byte.
    pub record_start: u64,
}

/// A record keeps taking the next iovec while it holds fewer bytes than this (a power of
/// two, at most half of CHUNK_BYTES).
pub const PACK_BYTES: u64 = 4096;

/// Pieces (iovecs or CHUNK_BYTES slices of one) one `copy_chunks` run copies before it
/// tail-calls itself.
pub const CHUNKS_PER_CALL: u32 = 8;

/// Slot of `copy_chunks` in TAIL_CALLS; userspace fills it after loading.
pub const TAIL_COPY: u32 = 0;

#[map]
pub static TAIL_CALLS: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Shared scalars, indexed by `http_profiler_common::state`; userspace writes them.
#[map]
pub static STATE: Array<i64> = Array::with_max_entries(state::COUNT, 0);

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

#[inline(always)]
pub fn state_set(index: u32, value: i64) {
    if let Some(v) = STATE.get_ptr_mut(index) {
        // SAFETY: a valid, aligned map value pointer.
        unsafe { *v = value };
    }
}

#[inline(always)]
pub fn state_get(index: u32) -> i64 {
    // SAFETY: a valid map value pointer, read by value.
    STATE
        .get_ptr(index)
        .map_or(0, |v| unsafe { core::ptr::read_volatile(v) })
}
