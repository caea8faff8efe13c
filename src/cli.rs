//! Command-line options.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// See the plaintext HTTP/1.x traffic of every process on this host, from its socket
/// syscalls, as one JSON line per HTTP message.
///
/// Runs as root (or with CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE). No proxy, no code
/// changes, no restarts: connections that were open before it started are seen too.
/// Stop it with Ctrl-C or SIGTERM: messages in progress are written, flagged incomplete,
/// and a summary goes to stderr. SIGHUP reopens the output file. Credentials in headers
/// are hidden unless --no-redact. Fields: docs/fields.md.
#[derive(Debug, Parser)]
#[command(
    name = "http-profiler",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Where to write the JSON lines ("-" for standard output). The file is appended to
    /// and readable by its owner only (a new one is created 0600, an existing one with
    /// wider permissions is narrowed to its owner): it holds whatever the traffic holds.
    /// SIGHUP reopens it (for logrotate).
    #[arg(short, long, env = "OUTPUT_PATH", default_value = "-")]
    pub output: PathBuf,

    /// Capture only these processes (repeatable). The cheapest filter: the syscalls of
    /// every other process leave the probes after a few compares.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Capture only connections with this port at either end (repeatable). The probes
    /// find each TCP syscall's socket to read its ports, for every process on the host
    /// unless --pid narrows them.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,

    /// Capture only syscalls made by threads with this name (the thread's comm, as in
    /// /proc/PID/task/TID/comm, at most 15 bytes). Worker threads may be named apart from
    /// their process (tokio's are `tokio-runtime-w`): use --pid for those.
    #[arg(long)]
    pub comm: Option<String>,

    /// Decoded body bytes kept per message; the rest is counted and `body_truncated` set.
    #[arg(long, default_value_t = 16384, value_name = "BYTES")]
    pub max_body_bytes: usize,

    /// Wire bytes kept per message in `raw_payload`.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub max_raw_bytes: usize,

    /// Leave `raw_payload` (the message as on the wire) out of every line. It is the
    /// longest field of most lines: without it they are about a quarter shorter for small
    /// messages, while the profiler's CPU falls far less (README, "Keeping its cost down").
    #[arg(long)]
    pub no_raw_payload: bool,

    /// Also hide the value of this header field (repeatable). Authorization,
    /// Proxy-Authorization, Cookie and Set-Cookie are always hidden unless --no-redact:
    /// their values become "[REDACTED]" in `headers`, `trailers` and `raw_payload`.
    #[arg(
        long = "redact-header",
        value_name = "NAME",
        value_parser = header_name,
        conflicts_with = "no_redact"
    )]
    pub redact_headers: Vec<String>,

    /// Write credentials as captured: no header value is hidden (a warning says so at
    /// start-up).
    #[arg(long)]
    pub no_redact: bool,

    /// Size of the kernel ring buffer the probes write to: a power of two, at least
    /// 65536. A larger one absorbs longer bursts before records are dropped.
    #[arg(long, default_value_t = 16 * 1024 * 1024, value_name = "BYTES", value_parser = ring_size)]
    pub ring_buffer_bytes: u32,

    /// Seconds a message may stall before it is written, flagged incomplete (checked once
    /// a second).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub message_timeout: u64,

    /// Connections tracked at once; the least recently active is dropped (and counted)
    /// to make room.
    #[arg(long, default_value_t = 65536, value_name = "N")]
    pub max_connections: usize,

    /// Bytes all connections may hold for messages in progress (heads not yet complete,
    /// bodies and raw payloads being kept, requests awaiting responses) and for what each
    /// connection end keeps to go faster (its last head's field lines, up to 1 KiB, and
    /// its head buffer); past it the least recently active connections first free what
    /// they keep to go faster, then are ended (counted), their messages written flagged
    /// `timeout`.
    #[arg(long, default_value_t = 256 * 1024 * 1024, value_name = "BYTES")]
    pub max_buffered_bytes: usize,

    /// Also show a readable line per exchange as it completes (on stdout, or on stderr
    /// when --output is -): time, client -> server, method, URL, status, latency, size.
    #[arg(long)]
    pub pretty: bool,

    /// The kernel's BTF, where struct offsets are read.
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux", value_name = "PATH")]
    pub btf: PathBuf,

    /// More log output (-v info about each stage, -vv debug).
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Less log output: only errors, no summary.
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Check(CheckArgs),
}

/// Verify a capture of known traffic: exit 0 with one line "PASS ...", or exit 1 with one
/// line per problem.
///
/// For a capture of N requests made and answered on the profiled host (traffic-gen
/// --count N against demo-server, as the VM tests do): every request must appear twice
/// (sent by the client, received by the server) and its response twice, each response
/// paired with its request on its connection with a latency, every line with the fields
/// of docs/fields.md and their types, a valid status code, wall-clock timestamps that
/// never go back within a connection's stream, and no line flagged incomplete or
/// capture_gap.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The JSON lines to check ("-" for standard input).
    pub file: PathBuf,

    /// Requests the client sent (traffic-gen's count).
    #[arg(long, value_name = "N")]
    pub expect_requests: u64,

    /// Check only lines with this port at either end; other traffic is ignored.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
}

fn ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n < 65536 || !n.is_power_of_two() {
        return Err(format!(
            "{n} is not a power of two of at least 65536 (e.g. 1048576, 16777216)"
        ));
    }
    Ok(n)
}

fn header_name(s: &str) -> Result<String, String> {
    let name = s.trim();
    if crate::redact::is_field_name(name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "{s:?} is not a header field name: a name is letters, digits and !#$%&'*+-.^_`|~, \
             without the colon or a value (e.g. --redact-header X-Api-Key)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_names_must_be_field_names() {
        let cli = Cli::try_parse_from(["http-profiler", "--redact-header", " X-Api-Key "]).unwrap();
        assert_eq!(cli.redact_headers, ["X-Api-Key"]);
        for bad in ["X-Api-Key: abc", "X:Y", "", "X Y", "Käse"] {
            let err = Cli::try_parse_from(["http-profiler", "--redact-header", bad])
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not a header field name"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn ring_size_must_be_a_large_enough_power_of_two() {
        assert_eq!(ring_size("1048576"), Ok(1048576));
        assert!(ring_size("100000").is_err());
        assert!(ring_size("4096").is_err());
    }

    #[test]
    fn repeatable_filters_parse() {
        let cli = Cli::try_parse_from([
            "http-profiler",
            "--port",
            "80",
            "--port",
            "8080",
            "--pid",
            "1",
            "-o",
            "x.jsonl",
        ])
        .unwrap();
        assert_eq!(cli.ports, [80, 8080]);
        assert_eq!(cli.pids, [1]);
        assert_eq!(cli.output, PathBuf::from("x.jsonl"));
        assert!(cli.command.is_none());
    }

    #[test]
    fn check_is_a_subcommand_with_a_required_count() {
        let cli = Cli::try_parse_from([
            "http-profiler",
            "check",
            "out.jsonl",
            "--expect-requests",
            "70",
        ])
        .unwrap();
        let Some(Command::Check(args)) = cli.command else {
            panic!("no check subcommand");
        };
        assert_eq!(args.file, PathBuf::from("out.jsonl"));
        assert_eq!((args.expect_requests, args.port), (70, None));
        assert!(Cli::try_parse_from(["http-profiler", "check", "out.jsonl"]).is_err());
        assert!(
            Cli::try_parse_from([
                "http-profiler",
                "--pretty",
                "check",
                "x",
                "--expect-requests",
                "1"
            ])
            .is_err()
        );
    }
}
