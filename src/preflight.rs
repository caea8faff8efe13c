//! Checks made before anything is loaded, each failing with the fix in its message.

use std::path::Path;

use anyhow::bail;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set, from /proc/self/status.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

pub fn check_privileges() -> anyhow::Result<()> {
    let caps = effective_caps().unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!(
        "not enough privileges to load eBPF probes: run as root (sudo http-profiler ...) or grant \
         CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE (setcap cap_bpf,cap_perfmon,cap_sys_resource+ep BINARY)"
    )
}

/// aya attaches tracepoints through tracefs; mount it where it is missing.
pub fn ensure_tracefs() -> anyhow::Result<()> {
    let events = Path::new("/sys/kernel/tracing/events/syscalls");
    match events.try_exists() {
        Ok(true) => return Ok(()),
        // Mounted, but tracefs is root's (mode 0700): mounting again would not help.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "cannot read tracefs at /sys/kernel/tracing ({e}): it is readable by root only; run \
             as root, or grant CAP_DAC_READ_SEARCH along with CAP_BPF and CAP_PERFMON"
        ),
        _ => {}
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: constant NUL-terminated strings; mount() has no other preconditions.
    let r = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r == 0 && events.exists() {
        log::info!("mounted tracefs on /sys/kernel/tracing");
        return Ok(());
    }
    if r == 0 {
        bail!(
            "this kernel has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS): http-profiler cannot work here"
        )
    }
    bail!(
        "tracefs is not mounted and mounting it failed ({}): run `mount -t tracefs nodev /sys/kernel/tracing`",
        std::io::Error::last_os_error()
    )
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK, which is small by default.
pub fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Hands memory freed so far back to the system. The kernel's BTF is parsed at start-up
/// (for the offsets, and by the loader) into some 25 MiB of heap that is dropped once
/// the probes are loaded; without this the allocator keeps it, and it adds to the ring
/// buffer's pages in the peak RSS. Called after each of the two: after the loader, it took
/// the resident memory at rest from 52.6 to 39.8 MiB.
pub fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
