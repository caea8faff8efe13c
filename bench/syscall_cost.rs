//! What the profiler's hooks cost a service in its own syscalls, timed in one thread:
//! a write to /dev/null (a hooked syscall on a file), getppid (a syscall nothing hooks)
//! and an HTTP exchange over a kept-alive loopback connection (four hooked socket
//! syscalls: the client's write and read, the server's read and write, all in this
//! thread). `make bench` (bench/run.py) runs it with no profiler, with the hooks attached
//! but this process filtered out, with it captured and with tcpdump, in interleaved
//! runs: the differences are what each adds to every such syscall, which the closed-loop
//! figures show only through the noise of a whole machine.
//!
//! Protocol: it prints `{"port": P}` once its connection is up, waits for a line on
//! stdin (the observer is started in between), then prints its figures as JSON: the
//! best of PASSES passes of N of each, in ns. `cargo run --release --example
//! syscall_cost [N]`, then Enter, runs it alone.

use std::{
    fs::OpenOptions,
    io::{BufRead as _, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    time::Instant,
};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: syscall_cost\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: syscall_cost\r\nContent-Type: text/plain\r\n\
Content-Length: 17\r\nConnection: keep-alive\r\n\r\nhello from bench\n";
const PASSES: usize = 7;

/// The least time per operation over PASSES passes of `n` operations: the pass least
/// disturbed by the rest of the machine.
fn best_of(n: u64, mut op: impl FnMut()) -> f64 {
    (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                op();
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn read_exactly(stream: &mut TcpStream, buf: &mut [u8]) {
    stream
        .read_exact(buf)
        .expect("reading from the loopback connection");
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: a count of operations per pass"))
        .unwrap_or(5000);
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let port = listener.local_addr().unwrap().port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    let (mut server, _) = listener.accept().expect("accepting");
    for s in [&client, &server] {
        s.set_nodelay(true).unwrap();
    }
    let mut null = OpenOptions::new().write(true).open("/dev/null").unwrap();
    println!("{{\"port\": {port}}}");
    std::io::stdout().flush().unwrap();
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go).unwrap();

    let mut request = vec![0u8; REQUEST.len()];
    let mut response = vec![0u8; RESPONSE.len()];
    let mut exchange = || {
        client.write_all(REQUEST).unwrap();
        read_exactly(&mut server, &mut request);
        server.write_all(RESPONSE).unwrap();
        read_exactly(&mut client, &mut response);
    };
    let exchange_ns = best_of(n, &mut exchange);
    let write_ns = best_of(n, || {
        null.write_all(b"x").unwrap();
    });
    let getppid_ns = best_of(n, || {
        // SAFETY: getppid has no preconditions and cannot fail.
        unsafe { libc::getppid() };
    });
    assert_eq!(request, REQUEST);
    assert_eq!(response, RESPONSE);
    println!(
        "{{\"n\": {n}, \"passes\": {PASSES}, \"exchanges\": {}, \"exchange_ns\": {exchange_ns:.1}, \
         \"write_ns\": {write_ns:.1}, \"getppid_ns\": {getppid_ns:.1}}}",
        n * PASSES as u64
    );
}
