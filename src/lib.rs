//! http-profiler: HTTP/1.x traffic of every process, from socket syscall tracepoints.
//!
//! The pipeline, one module per stage:
//! `probes` (load and attach) -> `record` (decode ring-buffer records) -> `tracker`
//! (the connection table) -> `stream` (reassemble each direction's bytes) -> `http` and
//! `chunked` (parse messages) -> `pairing` (responses with their requests) -> `output`
//! (JSON lines, with credentials hidden by `redact`) -> `sink` (the file). `clock` and
//! `procinfo` add wall-clock time and command lines; `stages` runs them on each record,
//! from the process cache to the rendered line; `courtesy` decides when reading the
//! ring buffer gives the CPU back, and `standing` under which scheduling policy it runs.
//! `check` verifies a capture of known traffic (`http-profiler check`).

pub mod check;
pub mod chunked;
pub mod cli;
pub mod clock;
pub mod courtesy;
pub mod http;
pub mod live;
pub mod object_patch;
pub mod offsets;
pub mod output;
pub mod pairing;
pub mod preflight;
pub mod probes;
pub mod procinfo;
pub mod record;
pub mod redact;
pub mod seed;
pub mod sink;
pub mod stages;
pub mod standing;
pub mod stream;
pub mod tracker;
