//! http-profiler: HTTP/1.x traffic of every process, from socket syscall tracepoints.
//!
//! The pipeline, one module per stage:
//! `probes` (load and attach) -> `record` (decode ring-buffer records) -> `stream`
//! (reassemble each direction's bytes) -> `http` + `chunked` (parse messages) ->
//! `pairing` (responses with their requests) -> `output` (JSON lines).

pub mod chunked;
pub mod http;
pub mod pairing;
pub mod stream;
