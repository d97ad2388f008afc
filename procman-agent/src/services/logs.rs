//! Service logs: the output pipe's lines, each prefixed with its arrival time (ISO 8601 UTC,
//! milliseconds: fixed width, so lines sort and compare as text), written to
//! `<log_dir>/<name>.log` and rotated by size keeping N files. Lines longer than
//! [`MAX_LINE`] are cut into pieces: a service printing without newlines, or crash-looping,
//! never holds more than `max_size × (keep + 1)` bytes of disk.
//!
//! The reader is a plain thread per run, blocking on the pipe (file writes must not run on
//! the async workers); the file is shared by the runs of one service.
use procman_common::units::Timestamp;
use std::{
    fs::File,
    io::{self, Read, Write},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

/// Longest line written as one; the rest follows in further lines.
pub const MAX_LINE: usize = 16 * 1024;
/// Length of the timestamp prefix (`2025-12-11T10:30:45.123Z`).
pub const STAMP_LEN: usize = 24;

/// One service's log file, rotated by size.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
}

impl LogFile {
    pub fn new(path: PathBuf, max_size: u64, keep: u32) -> LogFile {
        LogFile {
            path,
            max_size,
            keep,
            file: None,
            size: 0,
        }
    }

    /// New limits (a reload); they apply from the next line.
    pub fn set_limits(&mut self, max_size: u64, keep: u32) {
        self.max_size = max_size;
        self.keep = keep;
    }

    fn rotated(&self, i: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{i}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            for i in (1..self.keep).rev() {
                let _ = std::fs::rename(self.rotated(i), self.rotated(i + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.size = 0;
        Ok(())
    }

    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(d) = self.path.parent() {
                std::fs::create_dir_all(d)?;
            }
            use std::os::unix::fs::OpenOptionsExt;
            // what services print may be private: root and the adm-like group only
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Writes one line (without its newline), time-stamped now.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let stamp = Timestamp::now().to_string();
        let len = (stamp.len() + 1 + line.len() + 1) as u64;
        self.open()?;
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        let mut buf = Vec::with_capacity(len as usize);
        buf.extend_from_slice(stamp.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(line);
        buf.push(b'\n');
        let f = self.open()?;
        f.write_all(&buf)?;
        self.size += len;
        Ok(())
    }

    /// A line of procman's own about the service (start, exit), marked `[procman]`.
    pub fn note(&mut self, text: &str) {
        if let Err(e) = self.write_line(format!("[procman] {text}").as_bytes()) {
            log::warn!("log {}: {e}", self.path.display());
        }
    }
}

/// Reads `pipe` until EOF on a thread of its own, writing each line to `log`.
pub fn spawn_reader(name: &str, pipe: OwnedFd, log: Arc<Mutex<LogFile>>) {
    let label = format!("log-{name}");
    let r = std::thread::Builder::new()
        .name(label.chars().take(15).collect())
        .spawn(move || read_lines(File::from(pipe), &log));
    if let Err(e) = r {
        log::error!("service {name}: cannot start its log reader: {e}");
    }
}

fn read_lines(mut pipe: File, log: &Mutex<LogFile>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut failed = false;
    let mut emit = |line: &[u8]| {
        let r = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_line(line);
        if let Err(e) = r {
            if !failed {
                log::warn!("writing a service log: {e} (further errors are not reported)");
                failed = true;
            }
        }
    };
    loop {
        let n = match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + nl];
            for piece in line.chunks(MAX_LINE) {
                emit(piece);
            }
            if line.is_empty() {
                emit(b"");
            }
            start += nl + 1;
        }
        buf.drain(..start);
        while buf.len() >= MAX_LINE {
            emit(&buf[..MAX_LINE]);
            buf.drain(..MAX_LINE);
        }
    }
    if !buf.is_empty() {
        emit(&buf);
    }
}

/// The last `n` lines of the log (reading rotated files too when the current one has fewer),
/// oldest first; with `since` (a [`Timestamp`] as text), only lines stamped at or after it.
pub fn tail(path: &Path, keep: u32, n: usize, since: Option<&str>) -> io::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for i in 0..=keep {
        let p = if i == 0 {
            path.to_path_buf()
        } else {
            let mut s = path.to_path_buf().into_os_string();
            s.push(format!(".{i}"));
            PathBuf::from(s)
        };
        let text = match std::fs::read(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if i == 0 {
                    continue;
                }
                break;
            }
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&text);
        let mut older: Vec<String> = Vec::new();
        let mut reached_since = false;
        for l in text.lines().rev() {
            if out.len() + older.len() >= n {
                break;
            }
            if let Some(s) = since {
                if l.get(..STAMP_LEN).is_some_and(|t| t < s) {
                    reached_since = true;
                    break;
                }
            }
            older.push(l.to_string());
        }
        older.reverse();
        older.append(&mut out);
        out = older;
        if out.len() >= n || reached_since {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_keeping_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let mut l = LogFile::new(path.clone(), 4096, 2);
        let line = vec![b'x'; 100];
        for _ in 0..200 {
            l.write_line(&line).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["s.log", "s.log.1", "s.log.2"]);
        for n in &names {
            let len = std::fs::metadata(dir.path().join(n)).unwrap().len();
            assert!(len <= 4096, "{n}: {len}");
        }
        let last = tail(&path, 2, 3, None).unwrap();
        assert_eq!(last.len(), 3);
        assert!(last[0].ends_with(&"x".repeat(100)));
        assert_eq!(last[0].as_bytes()[STAMP_LEN], b' ');
        // more than the current file holds: the rotated ones are read too, in order
        // 126-byte lines: 32 per 4 KiB file; 200 lines leave 8 in the current file
        let many = tail(&path, 2, 1000, None).unwrap();
        assert_eq!(many.len(), 8 + 32 + 32);
        let mut sorted = many.clone();
        sorted.sort();
        assert_eq!(many, sorted, "oldest first");
    }

    #[test]
    fn long_lines_are_cut_and_partial_lines_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let log = Mutex::new(LogFile::new(path.clone(), 1 << 20, 1));
        let mut input = vec![b'a'; MAX_LINE * 2 + 10];
        input.extend_from_slice(b"\nshort\n\ntail");
        read_lines_from(&input, &log);
        let lines = tail(&path, 1, 100, None).unwrap();
        let bodies: Vec<usize> = lines.iter().map(|l| l.len() - STAMP_LEN - 1).collect();
        assert_eq!(bodies, [MAX_LINE, MAX_LINE, 10, 5, 0, 4]);
        assert!(lines[5].ends_with(" tail"));
    }

    fn read_lines_from(input: &[u8], log: &Mutex<LogFile>) {
        let (r, w) = nix::unistd::pipe().unwrap();
        let data = input.to_vec();
        let t = std::thread::spawn(move || {
            let mut w = File::from(w);
            w.write_all(&data).unwrap();
        });
        read_lines(File::from(r), log);
        t.join().unwrap();
    }

    #[test]
    fn since_filters_by_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        std::fs::write(
            &path,
            "2025-01-01T00:00:00.000Z old\n2025-01-01T00:00:10.000Z new\n",
        )
        .unwrap();
        let l = tail(&path, 0, 10, Some("2025-01-01T00:00:05.000Z")).unwrap();
        assert_eq!(l, ["2025-01-01T00:00:10.000Z new"]);
    }
}
