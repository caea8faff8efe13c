//! Loading the probes into the kernel, attaching them to the syscall tracepoints, and
//! the maps userspace reads and writes.

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::TracePoint,
};
use std::path::Path;

use http_profiler_common::{ProbeConfig, SavedArgs, counter, state};

use crate::{
    object_patch,
    offsets::WordCast,
    seed::{self, BlockedRead},
    tracker::Ignore,
};

/// Tracepoints (comma-separated, e.g. `sys_enter_readv`) to treat as missing from this
/// kernel: lets the tests check how a kernel without some of them is handled.
const ASSUME_MISSING_ENV: &str = "HTTP_PROFILER_ASSUME_MISSING_TRACEPOINTS";

/// Milliseconds to wait after each attachment: widens the time the hooks take to attach,
/// so the tests can check that nothing is captured before all of them are in place.
const ATTACH_DELAY_ENV: &str = "HTTP_PROFILER_ATTACH_DELAY_MS";

/// Makes the profiler hook data syscalls at entry as on a kernel before 5.15, which
/// cannot hand the probes a syscall's registers: lets the tests check that way on any
/// kernel.
const ASSUME_NO_USER_REGS_ENV: &str = "HTTP_PROFILER_ASSUME_NO_USER_REGS";

/// Makes the first load of the probes that read kernel memory by plain loads fail, as a
/// kernel that refuses them would: lets the tests check the fallback to helper calls.
const ASSUME_CAST_REFUSED_ENV: &str = "HTTP_PROFILER_ASSUME_CAST_REFUSED";

/// Where the exit of a data syscall finds the syscall's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgumentSource {
    /// In the user registers the kernel saved at its entry (Linux 5.15+): only exits
    /// are hooked.
    Registers,
    /// Saved per thread by enter hooks, which every read and write of every process
    /// then pays for too; threads already blocked in a read at start-up are seeded.
    EnterHooks,
}

impl ArgumentSource {
    /// The registers when the kernel offers them (`user_regs`, from its BTF).
    pub fn for_kernel(user_regs: bool) -> Self {
        let assume_none = std::env::var_os(ASSUME_NO_USER_REGS_ENV).is_some_and(|v| !v.is_empty());
        if user_regs && !assume_none {
            Self::Registers
        } else {
            Self::EnterHooks
        }
    }
}

/// Which tracepoints each program serves, whatever the argument source.
const ATTACHMENTS: &[(&str, &[&str])] = &[
    ("exit_accept", &["sys_exit_accept", "sys_exit_accept4"]),
    ("enter_close", &["sys_enter_close"]),
    ("exit_exec", &["sys_exit_execve", "sys_exit_execveat"]),
];

/// The data syscalls' and connect's programs that read their arguments from the
/// registers at exit.
const REGISTER_ATTACHMENTS: &[(&str, &[&str])] = &[
    ("exit_read", &["sys_exit_read"]),
    ("exit_write", &["sys_exit_write"]),
    ("exit_readv", &["sys_exit_readv"]),
    ("exit_writev", &["sys_exit_writev"]),
    ("exit_sendto", &["sys_exit_sendto"]),
    ("exit_recvfrom", &["sys_exit_recvfrom"]),
    ("exit_sendmsg", &["sys_exit_sendmsg"]),
    ("exit_recvmsg", &["sys_exit_recvmsg"]),
    ("exit_sendfile", &["sys_exit_sendfile64"]),
    ("exit_splice", &["sys_exit_splice"]),
    ("exit_connect", &["sys_exit_connect"]),
];

/// The same syscalls' programs when enter hooks save the arguments: `exit_data` copies
/// for every data syscall.
const ENTER_HOOK_ATTACHMENTS: &[(&str, &[&str])] = &[
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
            "sys_exit_sendfile64",
            "sys_exit_splice",
        ],
    ),
    ("enter_sendfile", &["sys_enter_sendfile64"]),
    ("enter_splice", &["sys_enter_splice"]),
    ("enter_read", &["sys_enter_read"]),
    ("enter_write", &["sys_enter_write"]),
    ("enter_readv", &["sys_enter_readv"]),
    ("enter_writev", &["sys_enter_writev"]),
    ("enter_sendto", &["sys_enter_sendto"]),
    ("enter_recvfrom", &["sys_enter_recvfrom"]),
    ("enter_sendmsg", &["sys_enter_sendmsg"]),
    ("enter_recvmsg", &["sys_enter_recvmsg"]),
    ("exit_connect_saved", &["sys_exit_connect"]),
    ("enter_connect", &["sys_enter_connect"]),
];

/// Counter totals over all CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub dropped: u64,
    pub not_http: u64,
    pub uncopied_bytes: u64,
    pub execs: u64,
}

pub struct Probes {
    /// Holds the programs; dropping it detaches them all.
    ebpf: Option<Ebpf>,
    counters: PerCpuArray<MapData, u64>,
    ignored: HashMap<MapData, u64, u32>,
    args: HashMap<MapData, u64, SavedArgs>,
    state: Array<MapData, i64>,
    /// Whether the hooks have been told to look up IGNORED.
    ignoring: bool,
    /// Tracepoints this kernel lacks: what goes through them is not captured.
    pub missing: Vec<String>,
    pub source: ArgumentSource,
}

/// The probes' object file, built by build.rs (empty when built with AYA_BUILD_SKIP=1).
pub(crate) fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/http-profiler-probes"))
}

impl Probes {
    /// Loads and attaches everything; returns the probes and the ring buffer to read.
    /// `cast`: how the probes may read kernel memory by plain loads, if this kernel lets
    /// them (it sets `config.word_type_id`). Should the kernel refuse the programs so
    /// built, they are loaded again reading it by helper calls, as on a kernel without
    /// the kfunc.
    pub fn load(
        config: &ProbeConfig,
        ring_bytes: u32,
        source: ArgumentSource,
        cast: Option<WordCast>,
    ) -> anyhow::Result<(Self, RingBuf<MapData>)> {
        let object = object();
        anyhow::ensure!(
            !object.is_empty(),
            "this binary was built with AYA_BUILD_SKIP=1 and holds no probes: rebuild it without AYA_BUILD_SKIP"
        );
        // A kfunc id that names nothing: the kernel refuses the programs that call it.
        let refused = std::env::var_os(ASSUME_CAST_REFUSED_ENV).is_some_and(|v| !v.is_empty());
        let first = cast.map(|c| WordCast {
            kfunc_id: if refused { i32::MAX as u32 } else { c.kfunc_id },
            ..c
        });
        let config_for = |cast: Option<WordCast>| ProbeConfig {
            word_type_id: cast.map_or(0, |c| c.type_id),
            ..*config
        };
        let patched = object_patch::for_kernel(object, first)?;
        match Self::load_object(patched.bytes(), &config_for(cast), ring_bytes, source) {
            Err(e) if cast.is_some() => {
                log::warn!(
                    "the kernel refused the probes that read its memory by plain loads \
                     (bpf_rdonly_cast): loading them with helper calls instead ({e:#})"
                );
                let patched = object_patch::for_kernel(object, None)?;
                Self::load_object(patched.bytes(), &config_for(None), ring_bytes, source)
            }
            loaded => {
                if cast.is_some() {
                    log::info!("the probes read kernel memory by plain loads (bpf_rdonly_cast)");
                }
                loaded
            }
        }
    }

    fn load_object(
        object: &[u8],
        config: &ProbeConfig,
        ring_bytes: u32,
        source: ArgumentSource,
    ) -> anyhow::Result<(Self, RingBuf<MapData>)> {
        let data_attachments = match source {
            ArgumentSource::Registers => REGISTER_ATTACHMENTS,
            ArgumentSource::EnterHooks => ENTER_HOOK_ATTACHMENTS,
        };
        let attachments = || ATTACHMENTS.iter().chain(data_attachments);
        let mut loader = EbpfLoader::new();
        loader
            .override_global("CONFIG", config, true)
            .map_max_entries("EVENTS", ring_bytes);
        if source == ArgumentSource::Registers {
            // No thread saves arguments: the table the kernel would set aside for a
            // thread each stays (almost) empty.
            loader.map_max_entries("ARGS", 1);
        }
        let mut ebpf = loader
            .load(object)
            .map_err(|e| explain(anyhow!(e)))
            .context("loading the probes into the kernel")?;
        let copy = verify(&mut ebpf, "copy_chunks")?;
        let copy_fd = copy.fd()?.try_clone()?;
        let mut tails = ProgramArray::try_from(
            ebpf.map_mut("TAIL_CALLS")
                .ok_or_else(|| anyhow!("no TAIL_CALLS map"))?,
        )?;
        tails
            .set(0, &copy_fd, 0)
            .context("registering the copy program for tail calls")?;
        // Every program passes the verifier before the first one attaches, so the hooks
        // go in within a few milliseconds of each other; the probes capture nothing
        // until all of them are in (see `arm`).
        for (name, _) in attachments() {
            verify(&mut ebpf, name)?;
        }
        let mut missing = Vec::new();
        let assumed_missing = std::env::var(ASSUME_MISSING_ENV).unwrap_or_default();
        let assumed_missing: Vec<&str> = assumed_missing.split(',').map(str::trim).collect();
        let attach_delay = std::env::var(ATTACH_DELAY_ENV)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(std::time::Duration::from_millis);
        for (name, tracepoints) in attachments() {
            let program = tracepoint(&mut ebpf, name)?;
            for tp in *tracepoints {
                if assumed_missing.contains(tp)
                    || !std::path::Path::new("/sys/kernel/tracing/events/syscalls")
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
                if let Some(delay) = attach_delay {
                    std::thread::sleep(delay);
                }
            }
        }
        // The loader's copy of the kernel BTF is gone: return it before the ring buffer's
        // pages are mapped, so the two never add up in the peak RSS.
        crate::preflight::release_freed_memory();
        let ring = RingBuf::try_from(take(&mut ebpf, "EVENTS")?)?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, "COUNTERS")?)?;
        let ignored = HashMap::try_from(take(&mut ebpf, "IGNORED")?)?;
        let args = HashMap::try_from(take(&mut ebpf, "ARGS")?)?;
        let state = Array::try_from(take(&mut ebpf, "STATE")?)?;
        let mut probes = Self {
            ebpf: Some(ebpf),
            counters,
            ignored,
            args,
            state,
            ignoring: false,
            missing,
            source,
        };
        probes.arm()?;
        Ok((probes, ring))
    }

    /// Starts the capture, once every hook is attached: a stream seen through only some
    /// of them would have holes that no stream position shows.
    fn arm(&mut self) -> anyhow::Result<()> {
        self.state
            .set(state::ARMED, 1, 0)
            .context("starting the capture (STATE map)")
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
            dropped: sum(counter::DROPPED),
            not_http: sum(counter::NOT_HTTP),
            uncopied_bytes: sum(counter::UNCOPIED_BYTES),
            execs: sum(counter::EXECS),
        }
    }

    /// Hands the exit hook the reads threads were blocked in when the probes attached.
    /// Returns how many were seeded.
    pub fn seed_blocked_reads(&mut self, proc_root: &Path, blocked: &[BlockedRead]) -> usize {
        const BPF_NOEXIST: u64 = 1;
        if blocked.is_empty() {
            return 0;
        }
        // Set first: from the first insert, a thread that has left its read must find
        // its seed dropped at its next entry.
        if let Err(e) = self.state.set(state::SEEDING, 1, 0) {
            log::warn!("cannot seed blocked reads: {e}");
            return 0;
        }
        let mut seeded = 0;
        for b in blocked {
            // NOEXIST: an entry hook that ran since the scan knows better.
            if self.args.insert(b.pid_tgid(), b.args, BPF_NOEXIST).is_ok() {
                seeded += 1;
            }
        }
        // A thread that left its syscall between the scan and the insert must not keep
        // an entry that its next read would take for its own.
        for b in blocked {
            let still =
                seed::blocked_read(proc_root, b.tgid, b.tid).is_some_and(|now| now.line == b.line);
            if !still && self.args.get(&b.pid_tgid(), 0).is_ok_and(|a| a.seeded != 0) {
                let _ = self.args.remove(&b.pid_tgid());
                seeded -= 1;
            }
        }
        // Every seed left belongs to a thread still blocked in its read, whose exit takes
        // it: the entries stop looking for stale ones.
        if let Err(e) = self.state.set(state::SEEDING, 0, 0) {
            log::debug!("data syscall entries keep looking for stale seeds: {e}");
        }
        seeded
    }

    /// Tells the probes to stop copying a connection.
    pub fn ignore(&mut self, ignore: Ignore) {
        // The hooks look at IGNORED only once this is set; records that pass before they
        // see it are for a connection the tracker already drops.
        if !self.ignoring {
            match self.state.set(state::IGNORING, 1, 0) {
                Ok(()) => self.ignoring = true,
                Err(e) => {
                    log::debug!("could not mark a connection as not HTTP: {e}");
                    return;
                }
            }
        }
        if let Err(e) = self.ignored.insert(ignore.sock, ignore.generation, 0) {
            log::debug!("could not mark a connection as not HTTP: {e}");
        }
    }
}

/// The tracepoint program `name` of the probe object.
fn tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut TracePoint> {
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the probe object has no program {name}"))?
        .try_into()?)
}

/// Loads program `name` into the kernel, through its verifier.
fn verify<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut TracePoint> {
    let program = tracepoint(ebpf, name)?;
    program
        .load()
        .map_err(|e| explain(anyhow!(e)))
        .with_context(|| format!("the kernel rejected probe {name}"))?;
    Ok(program)
}

fn take(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<aya::maps::Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("the probe object has no map {name}"))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};

    /// LLVM turns copies and zeroing of small arrays into calls to memset/memmove/memcpy
    /// subprograms that move one byte per iteration: up to 11 of them in one data program
    /// cost ~10% of the probes' time per exchange. Programs that run on every syscall
    /// must not call them; these two run once per exec of a selected process and once
    /// per connect on kernels before 5.15.
    const MAY_CALL_MEMORY_SUBPROGRAMS: [&str; 2] = ["exit_exec", "enter_connect"];
    const MEMORY_SUBPROGRAMS: [&str; 5] = ["memset", "memmove", "memcpy", "memcmp", "bcmp"];

    /// Each program of the object -> the memory subprograms its code calls.
    fn memory_calls(elf: &[u8]) -> BTreeMap<String, Vec<String>> {
        let file = object::File::parse(elf).expect("the probes' object is an ELF file");
        let mut calls = BTreeMap::<String, Vec<String>>::new();
        for section in file.sections() {
            let programs: Vec<_> = file
                .symbols()
                .filter(|s| s.kind() == object::SymbolKind::Text)
                .filter(|s| s.section_index() == Some(section.index()) && s.size() > 0)
                .collect();
            for (offset, reloc) in section.relocations() {
                let RelocationTarget::Symbol(target) = reloc.target() else {
                    continue;
                };
                let target = file.symbol_by_index(target).unwrap().name().unwrap();
                if !MEMORY_SUBPROGRAMS.contains(&target) {
                    continue;
                }
                let caller = programs
                    .iter()
                    .find(|p| (p.address()..p.address() + p.size()).contains(&offset))
                    .map_or("?", |p| p.name().unwrap());
                calls
                    .entry(caller.to_string())
                    .or_default()
                    .push(target.to_string());
            }
        }
        calls
    }

    #[test]
    fn programs_on_every_syscall_call_no_byte_at_a_time_memory_subprogram() {
        let object = super::object();
        assert!(
            !object.is_empty(),
            "built with AYA_BUILD_SKIP=1: the probes are not here to check"
        );
        let calls = memory_calls(object);
        // The check sees calls where there are some.
        for allowed in MAY_CALL_MEMORY_SUBPROGRAMS {
            assert!(
                calls.contains_key(allowed),
                "{allowed} no longer calls memset: take it off the list ({calls:?})"
            );
        }
        let offending: Vec<_> = calls
            .iter()
            .filter(|(program, _)| !MAY_CALL_MEMORY_SUBPROGRAMS.contains(&program.as_str()))
            .collect();
        assert!(
            offending.is_empty(),
            "programs calling memory subprograms: {offending:?} (store words instead, see emit.rs)"
        );
    }
}
