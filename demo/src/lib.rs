//! The demo service and traffic generator that `make demo`, the tests and the VM
//! appliance run under http-profiler. Both use real HTTP libraries (axum and hyper), never
//! hand-written HTTP, so what the profiler sees is what real services send.

pub mod server;
pub mod traffic;
