//! Where the JSON lines go: a file (owner-only, appended to, reopened on SIGHUP for
//! logrotate) or standard output.
//!
//! Lines are buffered here rather than in a `BufWriter` so that a failing write (a full
//! disk, an I/O error) loses no byte of a line already accepted: what the kernel did not
//! take stays pending and is written, from the exact byte, once writing works again. While
//! writing fails, pending lines are held up to a bound; lines beyond it are dropped and
//! counted. Each failure is logged once, with its reason, and its end is logged too.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// Pending bytes are written once there are this many (and on every tick).
const WRITE_AT: usize = 256 * 1024;
/// Bytes held while writing fails; lines beyond this are dropped and counted.
const MAX_PENDING: usize = 16 * 1024 * 1024;

/// Mode of a created output file: captured traffic holds credentials.
const FILE_MODE: u32 = 0o600;

pub struct Sink {
    out: Box<dyn Write + Send>,
    path: Option<PathBuf>,
    pending: Vec<u8>,
    /// The output ends inside the first pending line (a write that was cut short).
    mid_line: bool,
    /// Why writing fails, while it does.
    failing: Option<String>,
    /// Lines accepted.
    accepted: u64,
    /// Lines dropped because writing failed.
    pub lost: u64,
    /// Times writing started to fail.
    pub failures: u64,
}

impl Sink {
    pub fn open(path: &Path) -> io::Result<Self> {
        let (out, path): (Box<dyn Write + Send>, _) = if path == Path::new("-") {
            (Box::new(io::stdout()), None)
        } else {
            (Box::new(open_file(path)?), Some(path.to_path_buf()))
        };
        Ok(Self {
            out,
            path,
            pending: Vec::with_capacity(WRITE_AT),
            mid_line: false,
            failing: None,
            accepted: 0,
            lost: 0,
            failures: 0,
        })
    }

    pub fn describe(&self) -> String {
        self.path
            .as_ref()
            .map_or("standard output".to_string(), |p| p.display().to_string())
    }

    /// Lines written, or pending and still to be written.
    pub fn lines(&self) -> u64 {
        self.accepted - self.lines_pending()
    }

    fn lines_pending(&self) -> u64 {
        self.pending.iter().filter(|&&b| b == b'\n').count() as u64
    }

    /// A finished line; lines on their way out are rendered in place (write_line_with).
    #[cfg(test)]
    pub fn write_line(&mut self, line: &[u8]) {
        self.write_line_with(|pending| pending.extend_from_slice(line));
    }

    /// Takes the line that `render` appends to the pending bytes (without its newline):
    /// rendered in place, a line is not copied once more on its way out.
    pub fn write_line_with(&mut self, render: impl FnOnce(&mut Vec<u8>)) {
        let start = self.pending.len();
        render(&mut self.pending);
        if self.pending.len() + 1 > MAX_PENDING {
            self.pending.truncate(start);
            // Only while writing fails can a line reach the bound; the room it took
            // goes back, so holding lines never costs more than the bound.
            self.pending.shrink_to(MAX_PENDING);
            self.lost += 1;
            return;
        }
        self.pending.push(b'\n');
        self.accepted += 1;
        if self.pending.len() >= WRITE_AT {
            self.flush();
        }
    }

    /// Writes what is pending; on failure keeps it for the next attempt.
    pub fn flush(&mut self) {
        let result = self.write_pending();
        match (result, &self.failing) {
            (Ok(()), Some(_)) => {
                log::warn!(
                    "writing to {} works again; {} lines were dropped while it failed",
                    self.describe(),
                    self.lost
                );
                self.failing = None;
            }
            (Err(e), None) => {
                log::error!(
                    "cannot write to {}: {e}; holding up to {} MiB of lines until writing works \
                     again, dropping (and counting) the rest",
                    self.describe(),
                    MAX_PENDING >> 20
                );
                self.failures += 1;
                self.failing = Some(e.to_string());
            }
            _ => {}
        }
    }

    fn write_pending(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            match self.out.write(&self.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.mid_line = self.pending[n - 1] != b'\n';
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.flush()
    }

    /// Opens the output path again (SIGHUP, after logrotate renamed the file): what was
    /// pending goes to the old file first, so no line is split between the two.
    pub fn reopen(&mut self) -> io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        self.flush();
        if self.mid_line {
            // The old file holds the start of this line; its end cannot follow it there.
            let end = self
                .pending
                .iter()
                .position(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            self.pending.drain(..end);
            self.accepted -= 1;
            self.lost += 1;
            self.mid_line = false;
        }
        self.out = Box::new(open_file(&path)?);
        log::info!("reopened {}", path.display());
        self.flush();
        Ok(())
    }

    /// The last write at exit: lines that still cannot be written are counted as dropped.
    pub fn finish(&mut self) -> Result<(), String> {
        self.flush();
        match self.failing.clone() {
            None => Ok(()),
            Some(why) => {
                let left = self.lines_pending();
                self.lost += left;
                self.accepted -= left;
                self.pending.clear();
                Err(why)
            }
        }
    }
}

/// Opens the output file for appending, created owner-only. A file that already exists
/// with wider permissions is narrowed to owner-only too (it is about to receive captured
/// credentials); anything that is not a regular file (a FIFO, /dev/null) is left as it is.
fn open_file(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    let meta = file.metadata()?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() && mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
        log::warn!(
            "{} was readable or writable by others (mode {mode:03o}); it is now {:03o}",
            path.display(),
            mode & 0o700
        );
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer that takes at most `room` more bytes, then fails like a full disk.
    #[derive(Clone)]
    struct Disk {
        data: Arc<Mutex<Vec<u8>>>,
        room: Arc<Mutex<usize>>,
    }

    impl Disk {
        fn with_room(room: usize) -> Self {
            Self {
                data: Arc::default(),
                room: Arc::new(Mutex::new(room)),
            }
        }
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(*room);
            *room -= n;
            self.data.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn sink_on(disk: &Disk) -> Sink {
        let mut s = Sink::open(Path::new("-")).unwrap();
        s.out = Box::new(disk.clone());
        s
    }

    #[test]
    fn a_full_disk_keeps_lines_whole_and_resumes() {
        let disk = Disk::with_room(10);
        let mut s = sink_on(&disk);
        s.write_line(b"{\"a\":1}");
        s.write_line(b"{\"b\":22}");
        s.flush();
        assert_eq!(s.failures, 1);
        assert!(s.failing.is_some());
        assert_eq!(&disk.data.lock().unwrap()[..], b"{\"a\":1}\n{\"");
        s.write_line(b"{\"c\":3}");
        s.flush();
        assert_eq!(s.failures, 1, "a failure is counted once");
        *disk.room.lock().unwrap() = 1000;
        s.flush();
        assert!(s.failing.is_none());
        assert_eq!(
            &disk.data.lock().unwrap()[..],
            b"{\"a\":1}\n{\"b\":22}\n{\"c\":3}\n"
        );
        assert_eq!((s.lines(), s.lost), (3, 0));
    }

    #[test]
    fn lines_beyond_the_bound_are_dropped_and_counted() {
        let disk = Disk::with_room(0);
        let mut s = sink_on(&disk);
        let line = "x".repeat(1024 * 1024 - 1);
        for _ in 0..20 {
            s.write_line(line.as_bytes());
        }
        assert_eq!(s.lost, 4);
        assert!(
            s.pending.capacity() <= MAX_PENDING,
            "a dropped line gives its room back"
        );
        assert_eq!(
            s.finish(),
            Err("No space left on device (os error 28)".to_string())
        );
        assert_eq!((s.lines(), s.lost), (0, 20));
    }

    #[test]
    fn a_new_file_is_owner_only_and_a_wide_one_is_narrowed() {
        let dir = std::env::temp_dir().join(format!("sink-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let new = dir.join("sub").join("new.jsonl");
        open_file(&new).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&new), 0o600);
        let wide = dir.join("wide.jsonl");
        std::fs::write(&wide, "").unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o664)).unwrap();
        open_file(&wide).unwrap();
        assert_eq!(mode(&wide), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
