//! Data records as the probes write them, for the benchmarks that feed the tracker
//! without a kernel.

use http_profiler_common::{DataHeader, FLAG_LAST_CHUNK, RecordKind};

/// One syscall's bytes on IPv4 socket `sock`: `len` bytes at `pos` of the `direction`
/// stream, at monotonic time `ts`.
pub fn data_header(sock: u64, direction: u8, pos: u64, len: usize, ts: u64) -> DataHeader {
    DataHeader {
        kind: RecordKind::Data as u32,
        flags: FLAG_LAST_CHUNK,
        generation: 1,
        sock,
        timestamp_ns: ts,
        stream_pos: pos,
        syscall_bytes: len as u64,
        data_len: len as u32,
        direction,
        family: 2,
        ..DataHeader::default()
    }
}
