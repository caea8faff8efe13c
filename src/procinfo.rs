//! Process names and command lines, read from /proc at first sight of a process and
//! cached: clients such as curl often exit before their last record is processed.

use std::collections::HashMap;

/// Entries kept before the cache is cleared (processes come and go on a busy host).
const MAX_PROCESSES: usize = 16 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub comm: String,
    pub cmdline: Option<String>,
}

pub struct ProcessCache {
    procs: HashMap<u32, ProcInfo>,
    proc_root: std::path::PathBuf,
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
            procs: HashMap::new(),
            proc_root: root.into(),
        }
    }

    /// Notes a process seen in a record; reads its command line the first time, and again
    /// when its name changed (an exec, or a reused pid).
    pub fn observe(&mut self, tgid: u32, comm: &[u8]) {
        let comm = comm_str(comm);
        if self.procs.get(&tgid).is_some_and(|p| p.comm == comm) {
            return;
        }
        if self.procs.len() >= MAX_PROCESSES {
            self.procs.clear();
        }
        let cmdline = self.read_cmdline(tgid);
        self.procs.insert(tgid, ProcInfo { comm, cmdline });
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

    #[test]
    fn reads_the_command_line_once_per_process_name() {
        let dir = std::env::temp_dir().join(format!("hp-proc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("42")).unwrap();
        std::fs::write(dir.join("42/cmdline"), b"curl\0-s\0http://x/\0").unwrap();
        let mut cache = ProcessCache::with_root(&dir);
        cache.observe(42, b"curl\0\0\0\0");
        // The process exits; the cached line stays.
        std::fs::remove_file(dir.join("42/cmdline")).unwrap();
        cache.observe(42, b"curl\0\0\0\0");
        assert_eq!(
            cache.get(42).unwrap().cmdline.as_deref(),
            Some("curl -s http://x/")
        );
        assert_eq!(cache.get(42).unwrap().comm, "curl");
        // A new name under the same pid is a new program: read again (now gone).
        cache.observe(42, b"python3\0");
        assert_eq!(cache.get(42).unwrap().cmdline, None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
