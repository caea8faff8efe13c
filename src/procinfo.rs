//! Process names and command lines, read from /proc at first sight of a process and
//! cached: clients such as curl often exit before their last record is processed.

use std::collections::HashMap;

use http_profiler_common::COMM_LEN;

/// Entries kept before the cache is cleared (processes come and go on a busy host).
const MAX_PROCESSES: usize = 16 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    /// The process's name (its main thread's comm).
    pub comm: String,
    pub cmdline: Option<String>,
    /// Thread names seen in its records, as the records carry them: a new one means a
    /// new thread, or an exec or a reused pid, and the entry is read again.
    thread_comms: Vec<[u8; COMM_LEN]>,
    /// Which reading of /proc `comm` and `cmdline` come from: a new number each time the
    /// entry is read, so that text rendered from an older reading is not reused.
    pub stamp: u64,
}

pub struct ProcessCache {
    /// Looked up for every record and every line: foldhash, not the default SipHash,
    /// whose flood resistance pids (chosen by the kernel) do not need.
    procs: HashMap<u32, ProcInfo, foldhash::fast::RandomState>,
    proc_root: std::path::PathBuf,
    /// Readings of /proc so far: the last `ProcInfo::stamp` given.
    readings: u64,
}

impl Default for ProcessCache {
    fn default() -> Self {
        Self::with_root("/proc")
    }
}

/// The comm field of a record: NUL-padded bytes.
pub fn comm_str(comm: &[u8]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

impl ProcessCache {
    pub fn with_root(root: impl Into<std::path::PathBuf>) -> Self {
        Self {
            procs: HashMap::default(),
            proc_root: root.into(),
            readings: 0,
        }
    }

    /// Notes a process seen in a record (`thread_comm` is the comm of the thread that
    /// made the syscall, or all zero when the kernel sent it before for that thread and
    /// connection); reads its name and command line the first time, and again when a
    /// thread name not seen before shows up (a reused pid).
    /// Called for every record, so the common case (a known thread) compares bytes and
    /// allocates nothing; the name is compared whole (a byte-by-byte test for zeros was
    /// a third of this function's instructions).
    pub fn observe(&mut self, tgid: u32, thread_comm: &[u8; COMM_LEN]) {
        let unnamed = *thread_comm == [0; COMM_LEN];
        if self
            .procs
            .get(&tgid)
            .is_some_and(|p| unnamed || p.thread_comms.contains(thread_comm))
        {
            return;
        }
        if self.procs.len() >= MAX_PROCESSES {
            self.procs.clear();
        }
        let base = self.proc_root.join(tgid.to_string());
        let comm = std::fs::read_to_string(base.join("comm"))
            .ok()
            .map(|c| c.trim_end().to_string());
        let cmdline = self.read_cmdline(tgid);
        let entry = self.procs.entry(tgid).or_default();
        // A process that already exited keeps what was read while it ran.
        if comm.is_some() || entry.comm.is_empty() {
            entry.comm = comm.unwrap_or_else(|| comm_str(thread_comm));
            entry.cmdline = cmdline;
            self.readings += 1;
            entry.stamp = self.readings;
        }
        if entry.thread_comms.len() < 64 && !unnamed {
            entry.thread_comms.push(*thread_comm);
        }
    }

    /// Notes that `tgid` exec'd (`comm` is the name the exec gave it). A process not
    /// seen yet costs a lookup: every exec on the host may come here. For one seen
    /// before, what was read is another program's: it is read again now, and if the
    /// process is already gone, named `comm`, without a command line.
    pub fn exec(&mut self, tgid: u32, comm: &[u8; COMM_LEN]) {
        if self.procs.remove(&tgid).is_some() {
            self.observe(tgid, comm);
        }
    }

    pub fn get(&self, tgid: u32) -> Option<&ProcInfo> {
        self.procs.get(&tgid)
    }

    fn read_cmdline(&self, tgid: u32) -> Option<String> {
        let raw = std::fs::read(self.proc_root.join(tgid.to_string()).join("cmdline")).ok()?;
        let args: Vec<_> = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(String::from_utf8_lossy)
            .collect();
        (!args.is_empty()).then(|| args.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comm(name: &[u8]) -> [u8; COMM_LEN] {
        let mut c = [0; COMM_LEN];
        c[..name.len()].copy_from_slice(name);
        c
    }

    #[test]
    fn names_the_process_not_the_thread_and_survives_its_exit() {
        let dir = std::env::temp_dir().join(format!("hp-proc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("42")).unwrap();
        std::fs::write(dir.join("42/cmdline"), b"traffic-gen\0--count\x005\0").unwrap();
        std::fs::write(dir.join("42/comm"), b"traffic-gen\n").unwrap();
        let mut cache = ProcessCache::with_root(&dir);
        cache.observe(42, &comm(b"tokio-runtime-w"));
        assert_eq!(cache.get(42).unwrap().comm, "traffic-gen");
        assert_eq!(
            cache.get(42).unwrap().cmdline.as_deref(),
            Some("traffic-gen --count 5")
        );
        // The process exits: what was read stays, even for a thread not seen before.
        std::fs::remove_file(dir.join("42/cmdline")).unwrap();
        std::fs::remove_file(dir.join("42/comm")).unwrap();
        cache.observe(42, &comm(b"other-thread"));
        assert_eq!(cache.get(42).unwrap().comm, "traffic-gen");
        assert_eq!(
            cache.get(42).unwrap().cmdline.as_deref(),
            Some("traffic-gen --count 5")
        );
        // A process never seen alive is named after its thread.
        cache.observe(43, &comm(b"curl"));
        assert_eq!(cache.get(43).unwrap().comm, "curl");
        assert_eq!(cache.get(43).unwrap().cmdline, None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_exec_is_read_again_and_unnamed_records_are_not() {
        let dir = std::env::temp_dir().join(format!("hp-exec-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("42")).unwrap();
        let set = |comm: &str, cmdline: &[u8]| {
            std::fs::write(dir.join("42/comm"), format!("{comm}\n")).unwrap();
            std::fs::write(dir.join("42/cmdline"), cmdline).unwrap();
        };
        set("python3", b"python3\0first.py\0");
        let mut cache = ProcessCache::with_root(&dir);
        // A record without a name, for a process not seen yet: read from /proc.
        cache.observe(42, &[0; COMM_LEN]);
        assert_eq!(cache.get(42).unwrap().comm, "python3");
        cache.observe(42, &comm(b"python3"));
        let first = cache.get(42).unwrap().stamp;
        // The same program execs itself with other arguments: the thread's name does not
        // change, nor do the records of the connection it kept carry one.
        set("python3", b"python3\0second.py\0");
        cache.observe(42, &[0; COMM_LEN]);
        cache.observe(42, &comm(b"python3"));
        assert_eq!(
            cache.get(42).unwrap().cmdline.as_deref(),
            Some("python3 first.py")
        );
        assert_eq!(cache.get(42).unwrap().stamp, first);
        cache.exec(42, &comm(b"python3"));
        assert_eq!(
            cache.get(42).unwrap().cmdline.as_deref(),
            Some("python3 second.py")
        );
        assert_ne!(cache.get(42).unwrap().stamp, first);
        // An exec of a program that is gone before its record is read: the record names it.
        std::fs::remove_dir_all(&dir).unwrap();
        cache.exec(42, &comm(b"short-lived"));
        assert_eq!(cache.get(42).unwrap().comm, "short-lived");
        assert_eq!(cache.get(42).unwrap().cmdline, None);
        // The exec of a process never seen in a record (most of a host's) reads nothing.
        cache.exec(43, &comm(b"make"));
        assert!(cache.get(43).is_none());
    }
}
