//! Loading the probes into the kernel, attaching them to the syscall tracepoints, and
//! the maps userspace reads and writes.

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::TracePoint,
};
use http_profiler_common::{ProbeConfig, counter};

use crate::tracker::Ignore;

/// Which tracepoints each program serves. `exit_data` copies for every data syscall.
const ATTACHMENTS: &[(&str, &[&str])] = &[
    (
        "exit_data",
        &[
            "sys_exit_read",
            "sys_exit_write",
            "sys_exit_readv",
            "sys_exit_writev",
            "sys_exit_sendto",
            "sys_exit_recvfrom",
            "sys_exit_sendmsg",
            "sys_exit_recvmsg",
        ],
    ),
    ("enter_read", &["sys_enter_read"]),
    ("enter_write", &["sys_enter_write"]),
    ("enter_readv", &["sys_enter_readv"]),
    ("enter_writev", &["sys_enter_writev"]),
    ("enter_sendto", &["sys_enter_sendto"]),
    ("enter_recvfrom", &["sys_enter_recvfrom"]),
    ("enter_sendmsg", &["sys_enter_sendmsg"]),
    ("enter_recvmsg", &["sys_enter_recvmsg"]),
    ("exit_connect", &["sys_exit_connect"]),
    ("enter_connect", &["sys_enter_connect"]),
    ("exit_accept", &["sys_exit_accept", "sys_exit_accept4"]),
    ("enter_close", &["sys_enter_close"]),
];

/// Counter totals over all CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub records: u64,
    pub dropped: u64,
    pub not_http: u64,
    pub uncopied_bytes: u64,
}

pub struct Probes {
    /// Holds the programs; dropping it detaches them all.
    ebpf: Option<Ebpf>,
    counters: PerCpuArray<MapData, u64>,
    ignored: HashMap<MapData, u64, u32>,
    /// Tracepoints this kernel lacks: what goes through them is not captured.
    pub missing: Vec<String>,
}

impl Probes {
    /// Loads and attaches everything; returns the probes and the ring buffer to read.
    pub fn load(config: &ProbeConfig, ring_bytes: u32) -> anyhow::Result<(Self, RingBuf<MapData>)> {
        let object = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/http-profiler-probes"));
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", config, true)
            .map_max_entries("EVENTS", ring_bytes)
            .load(object)
            .map_err(|e| explain(anyhow!(e)))
            .context("loading the probes into the kernel")?;
        let copy: &mut TracePoint = ebpf
            .program_mut("copy_chunks")
            .ok_or_else(|| anyhow!("the probe object has no program copy_chunks"))?
            .try_into()?;
        copy.load()
            .map_err(|e| explain(anyhow!(e)))
            .context("the kernel rejected probe copy_chunks")?;
        let copy_fd = copy.fd()?.try_clone()?;
        let mut tails = ProgramArray::try_from(
            ebpf.map_mut("TAIL_CALLS")
                .ok_or_else(|| anyhow!("no TAIL_CALLS map"))?,
        )?;
        tails
            .set(0, &copy_fd, 0)
            .context("registering the copy program for tail calls")?;
        let mut missing = Vec::new();
        for (name, tracepoints) in ATTACHMENTS {
            let program: &mut TracePoint = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("the probe object has no program {name}"))?
                .try_into()?;
            program
                .load()
                .map_err(|e| explain(anyhow!(e)))
                .with_context(|| format!("the kernel rejected probe {name}"))?;
            for tp in *tracepoints {
                if !std::path::Path::new("/sys/kernel/tracing/events/syscalls")
                    .join(tp)
                    .exists()
                {
                    missing.push(tp.to_string());
                    continue;
                }
                program
                    .attach("syscalls", tp)
                    .map_err(|e| explain(anyhow!(e)))
                    .with_context(|| format!("attaching {name} to syscalls:{tp}"))?;
            }
        }
        let ring = RingBuf::try_from(
            ebpf.take_map("EVENTS")
                .ok_or_else(|| anyhow!("no EVENTS map"))?,
        )?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map("COUNTERS")
                .ok_or_else(|| anyhow!("no COUNTERS map"))?,
        )?;
        let ignored = HashMap::try_from(
            ebpf.take_map("IGNORED")
                .ok_or_else(|| anyhow!("no IGNORED map"))?,
        )?;
        Ok((
            Self {
                ebpf: Some(ebpf),
                counters,
                ignored,
                missing,
            },
            ring,
        ))
    }

    /// Detaches every program (the maps stay readable).
    pub fn detach(&mut self) {
        self.ebpf = None;
    }

    pub fn counters(&self) -> Counters {
        let sum = |i: u32| {
            self.counters
                .get(&i, 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0)
        };
        Counters {
            records: sum(counter::RECORDS),
            dropped: sum(counter::DROPPED),
            not_http: sum(counter::NOT_HTTP),
            uncopied_bytes: sum(counter::UNCOPIED_BYTES),
        }
    }

    /// Tells the probes to stop copying a connection.
    pub fn ignore(&mut self, ignore: Ignore) {
        if let Err(e) = self.ignored.insert(ignore.sock, ignore.generation, 0) {
            log::debug!("could not mark a connection as not HTTP: {e}");
        }
    }
}

/// Adds the fix to the kernel's usual refusals.
fn explain(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:?}");
    if text.contains("EPERM")
        || text.contains("Operation not permitted")
        || text.contains("PermissionDenied")
    {
        e.context("the kernel refused: run http-profiler as root (or with CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE)")
    } else if text.contains("tracefs") || text.contains("debugfs") {
        e.context("tracefs is not mounted: run `mount -t tracefs nodev /sys/kernel/tracing`")
    } else {
        e
    }
}
