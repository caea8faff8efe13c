//! The http-profiler binary: wires the pipeline stages together and handles signals.

use std::{
    io::Write as _,
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use clap::Parser as _;
use futures_util::StreamExt as _;
use http_profiler::{
    check,
    cli::{CheckArgs, Cli, Command},
    clock::monotonic_ns,
    courtesy::{self, Courtesy, DrainPace},
    http::Limits,
    live::LiveView,
    offsets,
    output::Format,
    preflight,
    probes::{ArgumentSource, Counters, Probes},
    record::{self, Record},
    redact::Redactor,
    seed,
    sink::Sink,
    stages::Stages,
    standing::{self, Policy, Standing},
    tracker::Tracker,
};
use http_profiler_common::{COMM_LEN, MAX_PID_FILTERS, MAX_PORT_FILTERS, ProbeConfig};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tokio::io::unix::AsyncFd;

/// A start-up problem the user must fix: exit status 2.
struct SetupError(anyhow::Error);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Check(args)) = &cli.command {
        return run_check(args);
    }
    let level = match (cli.quiet, cli.verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("http-profiler: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Setup(SetupError(e))) => {
            eprintln!("http-profiler: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("http-profiler: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `http-profiler check`: the verdict on stdout, exit 0 on PASS and 1 otherwise.
fn run_check(args: &CheckArgs) -> ExitCode {
    let text = if args.file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&args.file)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            println!("FAIL cannot read {}: {e}", args.file.display());
            return ExitCode::from(1);
        }
    };
    let expect = check::Expect {
        requests: args.expect_requests,
        port: args.port,
    };
    let verdict = check::check(&text, expect, std::time::SystemTime::now());
    let ignored = if verdict.ignored > 0 {
        format!(", {} lines of other ports ignored", verdict.ignored)
    } else {
        String::new()
    };
    if verdict.passed() {
        println!(
            "PASS {} requests, each captured sent and received with its response sent and \
             received ({} lines, {} connection ends{ignored})",
            args.expect_requests, verdict.lines, verdict.connections
        );
        return ExitCode::SUCCESS;
    }
    const SHOWN: usize = 200;
    for p in verdict.problems.iter().take(SHOWN) {
        println!("problem: {p}");
    }
    if verdict.problems.len() > SHOWN {
        println!("problem: ... and {} more", verdict.problems.len() - SHOWN);
    }
    println!(
        "FAIL {} problems in {} ({} lines checked{ignored}, {} requests expected)",
        verdict.problems.len(),
        args.file.display(),
        verdict.lines,
        args.expect_requests
    );
    ExitCode::from(1)
}

enum Failure {
    Setup(SetupError),
    Runtime(anyhow::Error),
}

fn setup<T>(r: anyhow::Result<T>) -> Result<T, Failure> {
    r.map_err(|e| Failure::Setup(SetupError(e)))
}

fn probe_config(
    cli: &Cli,
    offsets: http_profiler_common::KernelOffsets,
) -> anyhow::Result<ProbeConfig> {
    let mut config = ProbeConfig::empty();
    config.offsets = offsets;
    config.self_tgid = std::process::id();
    config.wakeup_bytes = wakeup_bytes(cli.ring_buffer_bytes);
    anyhow::ensure!(
        cli.pids.len() <= MAX_PID_FILTERS,
        "at most {MAX_PID_FILTERS} --pid filters"
    );
    anyhow::ensure!(
        cli.ports.len() <= MAX_PORT_FILTERS,
        "at most {MAX_PORT_FILTERS} --port filters"
    );
    config.pid_count = cli.pids.len() as u32;
    config.pids[..cli.pids.len()].copy_from_slice(&cli.pids);
    config.port_count = cli.ports.len() as u32;
    config.ports[..cli.ports.len()].copy_from_slice(&cli.ports);
    if let Some(comm) = &cli.comm {
        anyhow::ensure!(
            !comm.is_empty() && comm.len() < COMM_LEN,
            "--comm takes a process name of 1 to 15 bytes, as /proc/PID/comm shows it"
        );
        config.comm_filter = 1;
        config.comm[..comm.len()].copy_from_slice(comm.as_bytes());
    }
    Ok(config)
}

/// Time between two flushes of the output and reads of the counters.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(200);

/// Time between two checks for stalled messages and idle connections: each looks at every
/// connection idle for longer than --message-timeout (tens of thousands on a server with
/// many idle keep-alive clients, a few milliseconds), and the timeout counts in seconds.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// Unread bytes past which a record wakes the reader at once: an eighth of the ring, so
/// that a burst gets read long before the ring fills, while a steady rate is read in
/// batches on the drain timer.
fn wakeup_bytes(ring_bytes: u32) -> u32 {
    ring_bytes / 8
}

/// The stages after the kernel: records in, JSON lines out.
struct Pipeline {
    stages: Stages,
    sink: Sink,
    live: Option<(LiveView, Box<dyn std::io::Write>)>,
    decode_errors: u64,
    /// Records of traffic (data and close) read from the ring buffer.
    traffic_records: u64,
    courtesy: Courtesy,
    /// The reader's scheduling policy, when it may run under SCHED_IDLE.
    standing: Option<Standing>,
}

impl Pipeline {
    /// Reads every record waiting; returns how many bytes they took.
    fn drain(&mut self, ring: &mut RingBuf<MapData>, probes: &mut Probes) -> u64 {
        let mut bytes = 0u64;
        let started = Instant::now();
        // Under SCHED_IDLE any thread that wakes takes the CPU at once: no need to yield.
        let lowered = self.lowered();
        while let Some(item) = ring.next() {
            bytes += item.len() as u64;
            match record::decode(&item) {
                Ok(rec) => {
                    if !matches!(rec, Record::Exec(_)) {
                        self.traffic_records += 1;
                    }
                    if let Some(ignore) = self.stages.take(&rec) {
                        probes.ignore(ignore);
                    }
                }
                Err(e) => {
                    self.decode_errors += 1;
                    log::warn!("skipping a malformed record: {e}");
                }
            }
            drop(item);
            self.write_finished();
            if !lowered && self.courtesy.should_yield(bytes, || started.elapsed()) {
                let away = courtesy::yield_cpu();
                self.courtesy.yielded(away);
            }
        }
        self.courtesy.drained(bytes, started.elapsed());
        bytes
    }

    /// The next timed drain is due at `deadline` (the watchdog of `standing` watches it).
    fn due(&self, deadline: Instant) {
        if let Some(standing) = &self.standing {
            standing.due(deadline);
        }
    }

    /// Whether the reader runs under SCHED_IDLE now.
    fn lowered(&self) -> bool {
        self.standing.as_ref().is_some_and(Standing::idle)
    }

    /// Writes the messages finished so far, each rendered straight into the sink's
    /// buffer (and shown in the live view when there is one).
    fn write_finished(&mut self) {
        let (sink, live) = (&mut self.sink, &mut self.live);
        self.stages.write_finished(|mut line| {
            sink.write_line_with(|out| line.render_into(out));
            if let Some((view, out)) = live.as_mut()
                && let Some(text) = view.line(line.message, line.procs, line.clock)
            {
                let _ = writeln!(out, "{text}");
            }
        });
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    setup(preflight::check_privileges())?;
    let sink = setup(Sink::open(&cli.output).with_context(|| {
        format!(
            "cannot write to {}: choose a writable path with --output",
            cli.output.display()
        )
    }))?;
    if cli.no_redact {
        log::warn!(
            "--no-redact: Authorization, Cookie and other credential headers are written as \
             captured; keep {} private",
            sink.describe()
        );
    }
    let layout = setup(offsets::resolve(&cli.btf).map_err(anyhow::Error::from))?;
    log::info!(
        "kernel offsets from {}: {:?}",
        cli.btf.display(),
        layout.offsets
    );
    let source = ArgumentSource::for_kernel(layout.user_regs);
    match source {
        ArgumentSource::Registers => log::info!(
            "data syscalls are hooked at exit only: their arguments are read from the saved user registers"
        ),
        ArgumentSource::EnterHooks => log::info!(
            "this kernel cannot hand the probes a syscall's registers (bpf_task_pt_regs, Linux 5.15): \
             data syscalls are hooked at entry too, which costs every read and write of every process more"
        ),
    }
    preflight::release_freed_memory();
    setup(preflight::ensure_tracefs())?;
    preflight::raise_memlock();
    // The kfunc came with Linux 6.2, after bpf_task_pt_regs (5.15): a kernel whose data
    // syscalls are hooked at entry has neither. The tests that assume such a kernel
    // therefore run the helper calls too.
    let word_cast = match source {
        ArgumentSource::Registers => layout.word_cast,
        ArgumentSource::EnterHooks => None,
    };
    let config = setup(probe_config(&cli, layout.offsets))?;
    let (mut probes, ring) = setup(Probes::load(
        &config,
        cli.ring_buffer_bytes,
        source,
        word_cast,
    ))?;
    // The loader's own parse of the object and of the kernel's BTF is freed by now too.
    preflight::release_freed_memory();
    for tp in &probes.missing {
        let lost = if tp.contains("exec") {
            "a process that execs keeps its old name and command line on the connections it kept open"
        } else {
            "traffic through it is not captured"
        };
        log::warn!("this kernel has no tracepoint syscalls:{tp}: {lost}");
    }
    // A read blocked since before the hooks attached has no saved arguments for its
    // exit, unless it is seeded; the registers are there for any exit.
    if source == ArgumentSource::EnterHooks {
        let blocked = seed::blocked_reads(Path::new("/proc"), std::process::id(), |tgid, comm| {
            (cli.pids.is_empty() || cli.pids.contains(&tgid))
                && cli.comm.as_deref().is_none_or(|c| c == comm)
        });
        let seeded = probes.seed_blocked_reads(Path::new("/proc"), &blocked);
        log::info!(
            "{seeded} threads were blocked in a read when the probes attached: their reads are captured too"
        );
    }
    let limits = Limits {
        max_body: cli.max_body_bytes,
        max_raw: cli.max_raw_bytes,
        ..Limits::default()
    };
    let format = Format {
        with_raw: !cli.no_raw_payload,
        redact: if cli.no_redact {
            Redactor::none()
        } else {
            Redactor::new(&cli.redact_headers)
        },
    };
    let mut pipeline = Pipeline {
        stages: Stages::new(
            Tracker::new(limits, cli.max_connections, cli.max_buffered_bytes),
            format,
        ),
        sink,
        live: cli.pretty.then(|| {
            let out: Box<dyn std::io::Write> = if cli.output == Path::new("-") {
                Box::new(std::io::stderr())
            } else {
                Box::new(std::io::stdout())
            };
            (LiveView::default(), out)
        }),
        decode_errors: 0,
        traffic_records: 0,
        courtesy: Courtesy::for_ring(cli.ring_buffer_bytes),
        standing: None,
    };
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, for as long as the
    // AsyncFd owns the RingBuf.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot poll the ring buffer: {e}")))?;
    let mut signals = signal_hook_tokio::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot handle signals: {e}")))?;
    pipeline.standing = match Standing::start(standing::GRACE) {
        Ok(s) => Some(s),
        Err(e) => {
            log::info!(
                "the reader cannot run as SCHED_IDLE ({e}; leaving it again needs CAP_SYS_NICE or an \
                 RLIMIT_NICE of 20, such as systemd's LimitNICE=+0): it runs as SCHED_BATCH and \
                 yields the CPU every few records"
            );
            // SCHED_BATCH: the same CPU share, but its wakeups do not preempt the thread
            // running on that CPU. The reader wakes on a timer or a connection's first
            // record and is never in a hurry, while a service preempted by it waits with
            // its request in hand. Lowering a thread's own policy needs no privilege.
            if let Err(e) = standing::set_policy(0, Policy::Batch) {
                log::info!(
                    "cannot run as SCHED_BATCH ({e}): the reader may preempt the services it watches when it wakes"
                );
            }
            None
        }
    };
    if cli.quiet == 0 {
        eprintln!(
            "http-profiler: capturing HTTP/1.x; writing to {}; Ctrl-C to stop",
            pipeline.sink.describe()
        );
    }
    let mut pace = DrainPace::for_ring(cli.ring_buffer_bytes);
    let next_drain = tokio::time::sleep(pace.busy);
    tokio::pin!(next_drain);
    pipeline.due(next_drain.deadline().into_std());
    let mut last_housekeeping = Instant::now();
    let mut last_expire = last_housekeeping;
    let mut last = Counters::default();
    let timeout_ns = cli.message_timeout.saturating_mul(1_000_000_000);
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(|e| Failure::Runtime(e.into()))?;
                let bytes = pipeline.drain(guard.get_inner_mut(), &mut probes);
                guard.clear_ready();
                let deadline = next_drain.deadline().into_std();
                if let Some(sooner) = pace.woken(bytes, Instant::now(), deadline) {
                    next_drain.as_mut().reset(sooner.into());
                    pipeline.due(sooner);
                }
            }
            () = &mut next_drain => {
                let bytes = pipeline.drain(ring.get_mut(), &mut probes);
                let now = Instant::now();
                let due = pace.timed(bytes, now, pipeline.lowered());
                next_drain.as_mut().reset(due.into());
                pipeline.due(due);
                if let Some(standing) = &pipeline.standing {
                    standing.drained(pipeline.courtesy.caught_up());
                }
                if now < last_housekeeping + HOUSEKEEPING_EVERY {
                    continue;
                }
                last_housekeeping = now;
                if now >= last_expire + EXPIRE_EVERY {
                    last_expire = now;
                    pipeline.stages.expire(monotonic_ns(), timeout_ns, 10 * timeout_ns.max(1));
                }
                pipeline.write_finished();
                pipeline.sink.flush();
                let now = probes.counters();
                if now.dropped > last.dropped {
                    log::warn!(
                        "ring buffer full: {} records dropped (messages with gaps are flagged capture_gap); \
                         a larger --ring-buffer-bytes absorbs longer bursts",
                        now.dropped - last.dropped
                    );
                }
                last = now;
            }
            signal = signals.next() => {
                if signal != Some(SIGHUP) {
                    break;
                }
                // logrotate renamed the file (or wants it recreated): lines so far go to
                // the old one, the next ones to a new one at the same path.
                pipeline.write_finished();
                if let Err(e) = pipeline.sink.reopen() {
                    log::error!(
                        "cannot reopen {} on SIGHUP: {e}; still writing to the file open before",
                        pipeline.sink.describe()
                    );
                }
            }
        }
    }
    signals.handle().close();
    // The last drains run raised, so that a busy machine does not hold up the exit.
    if let Some(standing) = &pipeline.standing {
        log::info!(
            "the reader ran under SCHED_IDLE, raised to SCHED_BATCH {} times by busy CPUs",
            standing.times_raised()
        );
        standing.raise();
    }
    // Stop the probes first, then take what they wrote before they stopped.
    pipeline.drain(ring.get_mut(), &mut probes);
    probes.detach();
    pipeline.drain(ring.get_mut(), &mut probes);
    pipeline.stages.finish_all();
    pipeline.write_finished();
    let flushed = pipeline.sink.finish();
    let c = probes.counters();
    if cli.quiet == 0 {
        let s = pipeline.stages.tracker.stats;
        eprintln!(
            "http-profiler: {} messages written to {}; ring buffer: {} records, {} dropped; \
             {} bytes not captured; {} syscalls on connections that are not HTTP; \
             {} connections left as not HTTP; {} connections evicted from a full table; \
             {} connections ended over --max-buffered-bytes; \
             {} requests dropped from full pairing queues; {} decode errors; {} write failures, {} lines dropped by them; \
             {} execs of selected processes",
            pipeline.sink.lines(),
            pipeline.sink.describe(),
            pipeline.traffic_records,
            c.dropped,
            s.gap_bytes,
            c.not_http,
            s.ignored,
            s.evicted,
            s.evicted_for_memory,
            s.unpaired_dropped,
            pipeline.decode_errors,
            pipeline.sink.failures,
            pipeline.sink.lost,
            c.execs,
        );
    }
    flushed.map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot write to {}: {e}",
            pipeline.sink.describe()
        ))
    })
}
