//! Copies what a syscall moved into ring-buffer records.

use aya_ebpf::programs::TracePointContext;

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_ktime_get_ns, bpf_probe_read_user,
    generated::{
        bpf_get_current_comm as get_current_comm_raw, bpf_probe_read_user as probe_read_user_raw,
    },
};
use http_profiler_common::{
    ArgKind, CHUNK_BYTES, COMM_LEN, CloseRecord, DataHeader, DataRecord, ExecRecord,
    FLAG_LAST_CHUNK, FLAG_OMITTED_SENDFILE, FLAG_OMITTED_SPLICE, MAX_BYTES_PER_SYSCALL, MAX_IOVECS,
    OMITTED_SENDFILE, RecordKind, SavedArgs, counter, looks_like_http,
};

use crate::{
    conn::{ConnClass, ConnState},
    kernel::config,
    maps::{
        CHUNKS_PER_CALL, CONNS, COPY, CopyState, EVENTS, PACK_BYTES, SCRATCH, TAIL_CALLS,
        TAIL_COPY, count,
    },
};

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// The wakeup flag for a record of `len` bytes: only the record that takes the unread
/// bytes past `wakeup_bytes` wakes the reader, and the first record of a connection's
/// direction (`urgent`), so that a short-lived client's command line is read from /proc
/// before it exits; the others leave the reader to its timer. (The kernel's default
/// wakes the reader for every record once it has caught up, which at a steady rate is
/// one wakeup per record.)
#[inline(always)]
fn wakeup(len: u64, urgent: bool) -> u64 {
    if urgent {
        return BPF_RB_FORCE_WAKEUP;
    }
    let threshold = config!(wakeup_bytes) as u64;
    let unread = EVENTS.query(BPF_RB_AVAIL_DATA);
    if unread < threshold && unread + len >= threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// `struct msghdr` as user space passes it (LP64): msg_iov at 16, msg_iovlen at 24.
const MSGHDR_IOV: u64 = 16;
const MSGHDR_IOVLEN: u64 = 24;
/// `struct iovec`: base pointer, then length.
const IOVEC_SIZE: u64 = 16;

#[inline(always)]
fn read_user<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_user checks the address and fails cleanly on a bad one.
    unsafe { bpf_probe_read_user(addr as *const T) }.ok()
}

/// The bytes a syscall moved, as a first buffer and/or an iovec array.
struct Segments {
    first_base: u64,
    first_len: u64,
    iov: u64,
    iov_count: u64,
}

#[inline(always)]
fn segments(args: &SavedArgs) -> Option<Segments> {
    if args.kind == ArgKind::Omitted as u32 {
        return Some(Segments {
            first_base: 0,
            first_len: 0,
            iov: 0,
            iov_count: 0,
        });
    }
    if args.kind == ArgKind::Buffer as u32 {
        return Some(Segments {
            first_base: args.ptr,
            first_len: args.count,
            iov: 0,
            iov_count: 0,
        });
    }
    let (iov, iov_count) = if args.kind == ArgKind::Iovec as u32 {
        (args.ptr, args.count)
    } else {
        (
            read_user::<u64>(args.ptr + MSGHDR_IOV)?,
            read_user::<u64>(args.ptr + MSGHDR_IOVLEN)?,
        )
    };
    Some(Segments {
        first_base: 0,
        first_len: 0,
        iov,
        iov_count,
    })
}

/// Classifies a connection on the first bytes of a syscall that starts a message.
/// Returns whether this syscall's bytes are to be copied.
#[inline(always)]
fn classify(conn: &mut ConnState, seg: &Segments, moved: u64) -> bool {
    if conn.class == ConnClass::Http as u32 {
        return true;
    }
    let (base, len) = if seg.iov == 0 {
        (seg.first_base, seg.first_len)
    } else {
        // An empty first segment says nothing of what the syscall moved: the second does.
        let second = seg.iov_count > 1;
        match read_user::<[u64; 4]>(seg.iov)
            .or_else(|| read_user::<[u64; 2]>(seg.iov).map(|[b, l]| [b, l, 0, 0]))
        {
            Some([_, 0, b2, l2]) if second => (b2, l2),
            Some([b, l, _, _]) => (b, l),
            None => return false,
        }
    };
    let mut n = if len < moved { len } else { moved };
    // No byte to judge by: nothing is decided, and nothing copied.
    if n == 0 {
        return false;
    }
    if n > 4 {
        n = 4;
    }
    let head: [u8; 4] = if n == 4 {
        read_user(base).unwrap_or([0; 4])
    } else {
        head_bytes(base, n)
    };
    if looks_like_http(&head, n as usize) {
        conn.class = ConnClass::Http as u32;
        return true;
    }
    if conn.class == ConnClass::Fresh as u32 {
        conn.class = ConnClass::NotHttp as u32;
    }
    count(counter::NOT_HTTP, 1);
    false
}

#[inline(always)]
fn head_bytes(base: u64, n: u64) -> [u8; 4] {
    let mut head = [0u8; 4];
    let mut i = 0;
    while i < 4 {
        if (i as u64) < n {
            head[i] = read_user::<u8>(base + i as u64).unwrap_or(0);
        }
        i += 1;
    }
    head
}

// The header's 16-byte fields are written as two 8-byte words: LLVM turns a copy of a
// [u8; 16] (or its zeroing, or zero stores side by side) into a call to a byte-at-a-time
// memmove (memset) subprogram, a dozen instructions per byte, and every record copies two
// addresses and a name.
const _: () = assert!(
    core::mem::align_of::<DataHeader>() >= 8
        && core::mem::offset_of!(DataHeader, local_addr) % 8 == 0
        && core::mem::offset_of!(DataHeader, remote_addr) % 8 == 0
        && core::mem::offset_of!(DataHeader, comm) % 8 == 0
        && COMM_LEN == 16
);

/// The connection's addresses into the header, two words each.
#[inline(always)]
fn put_addresses(h: &mut DataHeader, conn: &ConnState) {
    // SAFETY: both fields are 16 bytes at 8-aligned offsets of an 8-aligned struct
    // (asserted above).
    unsafe {
        write_words(
            core::ptr::addr_of_mut!(h.local_addr).cast(),
            conn.local_addr,
        );
        write_words(
            core::ptr::addr_of_mut!(h.remote_addr).cast(),
            conn.remote_addr,
        );
    }
}

/// An all-zero name: the record goes without one.
#[inline(always)]
fn clear_comm(h: &mut DataHeader) {
    // SAFETY: as in `put_addresses`.
    unsafe { write_words(core::ptr::addr_of_mut!(h.comm).cast(), [0; 2]) };
}

/// # Safety
/// `dst` must be valid for 16 bytes of writes and 8-aligned.
#[inline(always)]
unsafe fn write_words(dst: *mut u64, words: [u64; 2]) {
    // Volatile: two zero words would otherwise be merged back into a memset call.
    // SAFETY: per the contract.
    unsafe {
        dst.write_volatile(words[0]);
        dst.add(1).write_volatile(words[1]);
    }
}

/// One store of `value`, never merged with its neighbours into a memset call.
#[inline(always)]
fn store(field: &mut u64, value: u64) {
    // SAFETY: a reference is valid and aligned for a write.
    unsafe { core::ptr::write_volatile(field, value) };
}

/// Emits the records for a data syscall that moved `moved` bytes on `sock`, whose state
/// is `conn`; `args` names the fd and direction it moved them on.
#[inline(always)]
pub fn data(
    ctx: &TracePointContext,
    args: &SavedArgs,
    sock: u64,
    conn: &mut ConnState,
    moved: u64,
    pid_tgid: u64,
) {
    let Some(seg) = segments(args) else {
        return;
    };
    let send = args.direction == http_profiler_common::DIRECTION_SEND as u32;
    let pos = if send { conn.send_pos } else { conn.recv_pos };
    if send {
        conn.send_pos = pos + moved;
    } else {
        conn.recv_pos = pos + moved;
    }
    let omitted = args.kind == ArgKind::Omitted as u32;
    // Bytes that never pass through user memory cannot be sniffed: they count for
    // connections already known to be HTTP.
    if (omitted && conn.class != ConnClass::Http as u32)
        || (!omitted && !classify(conn, &seg, moved))
    {
        return;
    }
    let Some(rec) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU scratch value is ours for this program run.
    let rec = unsafe { &mut *rec };
    let h = &mut rec.header;
    h.kind = RecordKind::Data as u32;
    h.tgid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h.fd = args.fd;
    h.generation = conn.generation;
    h.sock = sock;
    // SAFETY: the helper has no preconditions.
    h.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    h.syscall_bytes = moved;
    h.other_pos = if send { conn.recv_pos } else { conn.send_pos };
    h.direction = args.direction as u8;
    h._pad = 0;
    h.family = conn.family;
    h.local_port = conn.local_port;
    h.remote_port = conn.remote_port;
    put_addresses(h, conn);
    // The name goes with a thread's first record on this connection only. A record that
    // carried it and was dropped sends it again with the next (only on this path: a
    // syscall copied in rounds that loses its first record loses the name, and userspace
    // reads it from /proc).
    let named = conn.comm_tid != h.tid;
    if named {
        conn.comm_tid = h.tid;
        // SAFETY: `comm` is COMM_LEN writable bytes; the helper writes the name there,
        // zero-padded, or zeroes them on failure.
        unsafe { get_current_comm_raw(h.comm.as_mut_ptr().cast(), COMM_LEN as u32) };
    } else {
        clear_comm(h);
    }

    // The header of a syscall sent as one record; copy_chunks sets its own.
    rec.header.stream_pos = pos;
    rec.header.syscall_offset = 0;
    if omitted {
        let reason = if args.ptr == OMITTED_SENDFILE {
            FLAG_OMITTED_SENDFILE
        } else {
            FLAG_OMITTED_SPLICE
        };
        send_whole(rec, conn, named, Some(0), FLAG_LAST_CHUNK | reason);
        return;
    }
    // One buffer that fits in one record (most reads and writes of a request or a
    // response) is copied here: the tail call and the copy state it passes on cost about
    // as much as the copy. What copy_chunks would do, it does: one record, or if the
    // bytes cannot be read, none and a drop counted.
    if seg.iov == 0 && moved <= CHUNK_BYTES as u64 {
        let read = read_piece(rec, 0, seg.first_base, moved).then_some(moved);
        send_whole(rec, conn, named, read, FLAG_LAST_CHUNK);
        return;
    }
    // Two iovecs that fit one record (a response's head and body, as nginx and most
    // servers write them) are copied here too: one read of both iovec entries and one
    // per piece, the record copy_chunks would send, without the tail call and the copy
    // state (on a kernel whose indirect jumps go through retpolines, the tail call and
    // a read per iovec entry were a third of a writev's program time).
    if seg.iov != 0
        && seg.iov_count == 2
        && let Some(n) = two_pieces(rec, seg.iov, moved)
    {
        send_whole(rec, conn, named, Some(n), FLAG_LAST_CHUNK);
        return;
    }
    // Larger, or a piece that cannot be read: copy_chunks copies it all (again).
    let Some(cur) = COPY.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU value is ours for this program run and the tail calls it makes.
    let cur = unsafe { &mut *cur };
    store(&mut cur.seg_base, seg.first_base);
    store(&mut cur.seg_left, seg.first_len);
    store(&mut cur.iov, seg.iov);
    cur.iov_count = if seg.iov_count < MAX_IOVECS as u64 {
        seg.iov_count
    } else {
        MAX_IOVECS as u64
    };
    // Zeros stored one by one (`store`): side by side, LLVM merges them into a call to
    // the byte-at-a-time memset (see `write_words`).
    store(&mut cur.next_iov, 0);
    store(&mut cur.done, 0);
    cur.limit = if moved < MAX_BYTES_PER_SYSCALL {
        moved
    } else {
        MAX_BYTES_PER_SYSCALL
    };
    cur.moved = moved;
    cur.pos = pos;
    store(&mut cur.fill, 0);
    store(&mut cur.record_start, 0);
    // SAFETY: ctx is this program's context; the slot holds copy_chunks (set by userspace).
    unsafe { TAIL_CALLS.tail_call(ctx, TAIL_COPY) };
    // Only reached when the tail call failed: nothing of this syscall was copied.
    count(counter::UNCOPIED_BYTES, moved);
}

/// Sends a syscall's bytes as its one record, `n` payload bytes already in `rec` (None:
/// they could not be read, and a drop is counted; the next record's position shows the
/// gap). A thread whose name went with a record that was not sent sends it again with
/// its next.
#[inline(always)]
fn send_whole(rec: &mut DataRecord, conn: &mut ConnState, named: bool, n: Option<u64>, flags: u32) {
    let sent = match n {
        Some(n) => {
            rec.header.data_len = n as u32;
            rec.header.flags = flags;
            output_record(rec, n)
        }
        None => {
            count(counter::DROPPED, 1);
            false
        }
    };
    if !sent && named {
        conn.comm_tid = 0;
    }
}

/// Reads the `moved` bytes of a syscall on the two iovecs at `iov` into the record's
/// payload, as copy_chunks would gather them into one record: when the first piece
/// leaves the record under PACK_BYTES and the second fits after it. Returns the bytes
/// read, or None (nothing decided) when they do not fit so or cannot all be read.
#[inline(always)]
fn two_pieces(rec: &mut DataRecord, iov: u64, moved: u64) -> Option<u64> {
    let [base0, len0, base1, len1] = read_user::<[u64; 4]>(iov)?;
    let first = if len0 < moved { len0 } else { moved };
    let second = moved - first;
    if first >= PACK_BYTES || second > len1 || second > CHUNK_BYTES as u64 - PACK_BYTES {
        return None;
    }
    if first > 0 && !read_small_piece(rec, 0, base0, first) {
        return None;
    }
    if second > 0 && !read_small_piece(rec, first, base1, second) {
        return None;
    }
    Some(first + second)
}

/// Reads `n` user bytes from `src` into the record's payload at `off`, for `off` under
/// PACK_BYTES and `n` at most CHUNK_BYTES - PACK_BYTES (else false, nothing read).
#[inline(always)]
fn read_small_piece(rec: &mut DataRecord, off: u64, src: u64, n: u64) -> bool {
    // The mask and the bound are what the verifier checks the read by (two_pieces has
    // proven both values small already: see `unproven`).
    let (off, n) = (
        unproven(off) & (PACK_BYTES - 1),
        unproven(n) & (2 * CHUNK_BYTES as u64 - 1),
    );
    if n > CHUNK_BYTES as u64 - PACK_BYTES {
        return false;
    }
    // SAFETY: off + n < PACK_BYTES + CHUNK_BYTES - PACK_BYTES, the size of `rec.data`.
    unsafe { read_user_into(rec, off, src, n) }
}

/// Copies up to CHUNKS_PER_CALL pieces of the syscall described in COPY, then calls
/// itself for the rest. Each call is verified on its own, so the copy needs no loop long
/// enough to exhaust the verifier, and a syscall can move up to
/// CHUNKS_PER_CALL x 32 tail calls x CHUNK_BYTES.
///
/// Consecutive iovecs share a record while it holds less than PACK_BYTES: a writev of a
/// response head and its body (nginx, most servers) costs one ring-buffer record, not two.
#[inline(always)]
pub fn copy_chunks(ctx: &TracePointContext) {
    let (Some(cur), Some(rec)) = (COPY.get_ptr_mut(0), SCRATCH.get_ptr_mut(0)) else {
        return;
    };
    // SAFETY: per-CPU values, ours for this program run and the tail calls it makes.
    let (cur, rec) = unsafe { (&mut *cur, &mut *rec) };
    let mut i = 0;
    while i < CHUNKS_PER_CALL {
        i += 1;
        if cur.done >= cur.limit {
            break;
        }
        if cur.seg_left == 0 {
            if cur.next_iov >= cur.iov_count {
                break;
            }
            let Some([base, len]) = read_user::<[u64; 2]>(cur.iov + cur.next_iov * IOVEC_SIZE)
            else {
                break;
            };
            cur.next_iov += 1;
            cur.seg_base = base;
            cur.seg_left = len;
        }
        if cur.fill >= PACK_BYTES {
            flush(rec, cur, false);
        }
        let room = room(cur.fill);
        let mut n = cur.seg_left;
        if n > cur.limit - cur.done {
            n = cur.limit - cur.done;
        }
        if n > room {
            n = room;
        }
        let base = cur.seg_base;
        cur.seg_base += n;
        cur.seg_left -= n;
        if read_piece(rec, cur.fill, base, n) {
            cur.fill += n;
            cur.done += n;
        } else {
            // The bytes gathered so far go out; the unreadable piece becomes a gap.
            flush(rec, cur, false);
            count(counter::DROPPED, 1);
            cur.done += n;
            cur.record_start = cur.done;
        }
    }
    let more = cur.done < cur.limit && (cur.seg_left > 0 || cur.next_iov < cur.iov_count);
    if more {
        // SAFETY: as in `data`.
        unsafe { TAIL_CALLS.tail_call(ctx, TAIL_COPY) };
        // The tail-call budget is spent: the rest is counted, not copied.
    }
    flush(rec, cur, true);
    if cur.moved > cur.done {
        count(counter::UNCOPIED_BYTES, cur.moved - cur.done);
    }
}

/// The most bytes the next piece may add to a record holding `fill`: a piece either
/// starts an empty record (up to CHUNK_BYTES) or joins one holding less than PACK_BYTES
/// (up to CHUNK_BYTES - PACK_BYTES), so that the verifier, which cannot relate `fill`
/// and the piece's length, sees each bounded on its own.
#[inline(always)]
fn room(fill: u64) -> u64 {
    if fill == 0 {
        CHUNK_BYTES as u64
    } else {
        CHUNK_BYTES as u64 - PACK_BYTES
    }
}

/// `x`, read back through memory LLVM cannot see into. A size or offset is masked and
/// bounded right before the helper call that takes it, for the verifier; where a caller
/// has already bounded it, LLVM would drop those checks, or make them on a copy spilled
/// to the stack and pass the helper another, and some kernels' verifiers (6.1) do not
/// carry a bound from one copy to the other and reject the program.
#[inline(always)]
fn unproven(x: u64) -> u64 {
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&x) }
}

/// Reads `n` user bytes from `src` into the record's payload at `fill` (see `room`).
#[inline(always)]
fn read_piece(rec: &mut DataRecord, fill: u64, src: u64, n: u64) -> bool {
    let n = unproven(n) & (2 * CHUNK_BYTES as u64 - 1);
    let off = if fill == 0 {
        0
    } else {
        fill & (PACK_BYTES - 1)
    };
    if n > room(fill) {
        return false;
    }
    // SAFETY: off + n <= CHUNK_BYTES, the size of `rec.data`.
    unsafe { read_user_into(rec, off, src, n) }
}

/// Reads `n` user bytes from `src` into the record's payload at `off`; whether they
/// could be read.
///
/// # Safety
/// `off + n` must be at most CHUNK_BYTES, bounded where the verifier can see it (the
/// callers mask and check both just before).
#[inline(always)]
unsafe fn read_user_into(rec: &mut DataRecord, off: u64, src: u64, n: u64) -> bool {
    // SAFETY: per the contract, the destination lies inside `rec.data`.
    unsafe {
        probe_read_user_raw(
            rec.data.as_mut_ptr().add(off as usize).cast(),
            n as u32,
            src as *const core::ffi::c_void,
        ) == 0
    }
}

/// Sends the bytes gathered since `record_start` as one record; `end` marks the
/// syscall's last record.
#[inline(always)]
fn flush(rec: &mut DataRecord, cur: &mut CopyState, end: bool) {
    if cur.fill == 0 && !end {
        return;
    }
    rec.header.stream_pos = cur.pos + cur.record_start;
    rec.header.syscall_offset = cur.record_start as u32;
    rec.header.data_len = cur.fill as u32;
    rec.header.flags = if end { FLAG_LAST_CHUNK } else { 0 };
    if cur.fill > 0 || cur.done < cur.moved {
        output_record(rec, cur.fill);
    }
    cur.record_start = cur.done;
    cur.fill = 0;
}

/// Sends the header and `n` bytes of `rec`; whether the ring buffer took them (a record
/// it had no room for is counted as dropped).
#[inline(always)]
fn output_record(rec: &mut DataRecord, n: u64) -> bool {
    let n = unproven(n) & (2 * CHUNK_BYTES as u64 - 1);
    if n > CHUNK_BYTES as u64 {
        return false;
    }
    let len = core::mem::size_of::<DataHeader>() + n as usize;
    // SAFETY: the header and `n` payload bytes lie inside `rec`.
    let bytes =
        unsafe { core::slice::from_raw_parts((rec as *const DataRecord).cast::<u8>(), len) };
    let urgent = rec.header.stream_pos == 0;
    match EVENTS.output::<[u8]>(bytes, wakeup(len as u64, urgent)) {
        Ok(()) => true,
        Err(_) => {
            count(counter::DROPPED, 1);
            false
        }
    }
}

/// Tells userspace that a selected process has exec'd.
#[inline(always)]
pub fn exec(pid_tgid: u64) {
    let rec = ExecRecord {
        kind: RecordKind::Exec as u32,
        _pad: 0,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    if output_fixed(&rec) {
        count(counter::EXECS, 1);
    }
}

/// Sends a record of fixed size; whether the ring buffer took it (one it had no room
/// for is counted as dropped).
#[inline(always)]
fn output_fixed<T>(rec: &T) -> bool {
    match EVENTS.output::<T>(rec, wakeup(core::mem::size_of::<T>() as u64, false)) {
        Ok(()) => true,
        Err(_) => {
            count(counter::DROPPED, 1);
            false
        }
    }
}

/// Tells userspace that a process closed its fd for an HTTP connection.
#[inline(always)]
pub fn close(sock: u64, fd: i32, pid_tgid: u64) {
    let Some(state) = CONNS.get_ptr(sock) else {
        return;
    };
    // SAFETY: read by value from a valid map value pointer.
    let state = unsafe { *state };
    if state.class != ConnClass::Http as u32 {
        return;
    }
    let rec = CloseRecord {
        kind: RecordKind::Close as u32,
        _pad: 0,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        fd,
        generation: state.generation,
        sock,
        // SAFETY: the helper has no preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        send_end: state.send_pos,
        recv_end: state.recv_pos,
    };
    output_fixed(&rec);
}
