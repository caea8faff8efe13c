//! Threads already blocked in a read when the probes attach: an idle keep-alive server
//! thread waits in read() for the next request, and that read's entry hook never ran.
//! /proc/PID/task/TID/syscall shows such a syscall's number and arguments; userspace
//! hands them to the exit hook as a "seeded" entry, so the next request on a connection
//! older than the profiler is captured on the server side too.

use std::path::Path;

use http_profiler_common::{ArgKind, DIRECTION_RECV, SavedArgs};

/// The read-type syscalls by number on this architecture.
#[cfg(target_arch = "x86_64")]
mod nr {
    pub const READ: u64 = 0;
    pub const READV: u64 = 19;
    pub const RECVFROM: u64 = 45;
    pub const RECVMSG: u64 = 47;
}
#[cfg(target_arch = "aarch64")]
mod nr {
    pub const READ: u64 = 63;
    pub const READV: u64 = 65;
    pub const RECVFROM: u64 = 207;
    pub const RECVMSG: u64 = 212;
}

const MSG_PEEK: u64 = 2;

/// A thread blocked in a read-type syscall, with the entry its exit hook needs.
#[derive(Clone, Debug)]
pub struct BlockedRead {
    pub tgid: u32,
    pub tid: u32,
    pub line: String,
    pub args: SavedArgs,
}

impl BlockedRead {
    pub fn pid_tgid(&self) -> u64 {
        ((self.tgid as u64) << 32) | self.tid as u64
    }
}

/// Parses a /proc/PID/task/TID/syscall line: "NR ARG0 .. ARG5 SP PC" (arguments in hex)
/// for a blocked thread; "running" or "-1 SP PC" otherwise.
pub fn parse_syscall_line(line: &str) -> Option<(u64, [u64; 6])> {
    let mut parts = line.split_whitespace();
    let nr: u64 = parts.next()?.parse().ok()?;
    let mut args = [0u64; 6];
    for a in &mut args {
        *a = u64::from_str_radix(parts.next()?.trim_start_matches("0x"), 16).ok()?;
    }
    Some((nr, args))
}

/// The seeded entry for a blocked syscall, when it is a read-type one.
pub fn seeded_args(nr: u64, args: [u64; 6]) -> Option<SavedArgs> {
    let (kind, count) = match nr {
        nr::READ => (ArgKind::Buffer, args[2]),
        nr::RECVFROM if args[3] & MSG_PEEK == 0 => (ArgKind::Buffer, args[2]),
        nr::READV => (ArgKind::Iovec, args[2]),
        nr::RECVMSG if args[2] & MSG_PEEK == 0 => (ArgKind::Msghdr, 0),
        _ => return None,
    };
    Some(SavedArgs {
        kind: kind as u32,
        direction: DIRECTION_RECV as u32,
        fd: args[0] as i32,
        syscall_nr: nr as u32,
        ptr: args[1],
        count,
        sock: 0,
        seeded: 1,
        _pad: 0,
    })
}

fn numbered_dirs(dir: &Path) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every thread under `proc_root` blocked in a read-type syscall, but those of
/// `self_tgid` and those `selected` rejects (given tgid and comm).
pub fn blocked_reads(
    proc_root: &Path,
    self_tgid: u32,
    selected: impl Fn(u32, &str) -> bool,
) -> Vec<BlockedRead> {
    let mut found = Vec::new();
    for tgid in numbered_dirs(proc_root) {
        if tgid == self_tgid {
            continue;
        }
        let base = proc_root.join(tgid.to_string());
        let comm = std::fs::read_to_string(base.join("comm")).unwrap_or_default();
        if !selected(tgid, comm.trim_end()) {
            continue;
        }
        for tid in numbered_dirs(&base.join("task")) {
            if let Some(b) = blocked_read(proc_root, tgid, tid) {
                found.push(b);
            }
        }
    }
    found
}

/// The read-type syscall `tid` is blocked in now, if any.
pub fn blocked_read(proc_root: &Path, tgid: u32, tid: u32) -> Option<BlockedRead> {
    let path = proc_root
        .join(tgid.to_string())
        .join("task")
        .join(tid.to_string())
        .join("syscall");
    let line = std::fs::read_to_string(path).ok()?;
    let (nr, args) = parse_syscall_line(&line)?;
    Some(BlockedRead {
        tgid,
        tid,
        args: seeded_args(nr, args)?,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocked_and_running_threads() {
        let line = format!(
            "{} 0x5 0x7ffc1000 0x2000 0x0 0x0 0x0 0x7ffc0ff0 0x7f0011223344\n",
            nr::RECVFROM
        );
        let (n, args) = parse_syscall_line(&line).unwrap();
        assert_eq!(n, nr::RECVFROM);
        let a = seeded_args(n, args).unwrap();
        assert_eq!((a.fd, a.ptr, a.count, a.seeded), (5, 0x7ffc1000, 0x2000, 1));
        assert_eq!(a.kind, ArgKind::Buffer as u32);
        assert!(parse_syscall_line("running").is_none());
        assert!(parse_syscall_line("-1 0x7ffc0ff0 0x7f0011223344").is_none());
    }

    #[test]
    fn only_reads_are_seeded_and_never_peeks() {
        assert!(
            seeded_args(nr::READV, [3, 0x1000, 4, 0, 0, 0])
                .is_some_and(|a| a.kind == ArgKind::Iovec as u32)
        );
        assert!(seeded_args(nr::RECVFROM, [3, 0x1000, 10, MSG_PEEK, 0, 0]).is_none());
        assert!(seeded_args(nr::RECVMSG, [3, 0x1000, MSG_PEEK, 0, 0, 0]).is_none());
        // write(2) on either architecture is not a read.
        assert!(seeded_args(1, [3, 0x1000, 10, 0, 0, 0]).is_none());
        assert!(seeded_args(64, [3, 0x1000, 10, 0, 0, 0]).is_none());
    }

    #[test]
    fn finds_this_test_blocked_in_read() {
        // A thread blocked reading a socket that nobody writes to.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let tid = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let t = tid.clone();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            t.store(
                unsafe { libc::gettid() } as u32,
                std::sync::atomic::Ordering::SeqCst,
            );
            let mut buf = [0u8; 16];
            let _ = std::io::Read::read(&mut &a, &mut buf);
        });
        let me = std::process::id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let tid = tid.load(std::sync::atomic::Ordering::SeqCst);
            if tid != 0
                && let Some(b) = blocked_read(Path::new("/proc"), me, tid)
            {
                assert_eq!(b.args.count, 16);
                assert_eq!(b.pid_tgid() & 0xffff_ffff, tid as u64);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the reader thread never showed as blocked"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
