//! [`Cgroup`]: one cgroup directory, with one method per interface file. Reads of files that
//! may be absent (controller off, older kernel) fail with [`CgroupError::is_not_found`];
//! `.optional()` ([`crate::Optional`]) turns that into `None`. Every error names the file's
//! full path.
use std::collections::BTreeSet;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procman_common::api::{
    CpuStat, IoStat, MemoryEvents, MemoryStats, PidsStats, Pressure, PressureStats, SliceStats,
};

use crate::error::{CgroupError, Optional, Result};
use crate::fs::{read_pids, read_string, read_word_set, write_raw};
use crate::iface::{fmt_max, CpuMax, IoMax};
use crate::key::LimitKey;
use crate::name::validate_name;
use crate::procs::{self, ProcInfo};
use crate::stats::{
    parse_counter, parse_pids_events, parse_single, CgroupEvents, ParseFile, PressureKind,
};

/// One cgroup directory (on a cgroup2 mount, or a fake one in tests). Cheap to clone; every
/// method reads or writes the filesystem afresh.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// The cgroup at directory `dir` (not checked: it may not exist yet).
    pub fn new(dir: impl Into<PathBuf>) -> Cgroup {
        Cgroup { dir: dir.into() }
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The full path of interface file `file`.
    pub fn file(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Whether interface file `file` exists (its controller is enabled, the kernel has it).
    pub fn has(&self, file: &str) -> bool {
        self.file(file).exists()
    }

    /// The child cgroup `name` (validated; it may not exist).
    pub fn child(&self, name: &str) -> Result<Cgroup> {
        validate_name("slice name", name)?;
        Ok(Cgroup::new(self.dir.join(name)))
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Creates the directory; `Ok(false)` when it already existed.
    pub fn create(&self) -> Result<bool> {
        match std::fs::create_dir(&self.dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(CgroupError::io("creating", &self.dir, e)),
        }
    }

    /// Removes the (empty) directory. `Ok(false)` when it did not exist. The kernel refuses
    /// with EBUSY while processes or children are in it: that raw error is kept as
    /// [`CgroupError::Io`]'s source.
    pub fn remove(&self) -> Result<bool> {
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CgroupError::io("removing", &self.dir, e)),
        }
    }

    /// Names of the child directories whose names [`validate_name`] accepts, sorted.
    pub fn children(&self) -> Result<Vec<String>> {
        let rd =
            std::fs::read_dir(&self.dir).map_err(|e| CgroupError::io("listing", &self.dir, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| CgroupError::io("listing", &self.dir, e))?;
            let is_dir = ent
                .file_type()
                .map_err(|e| CgroupError::io("listing", ent.path(), e))?
                .is_dir();
            if let (true, Some(n)) = (is_dir, ent.file_name().to_str()) {
                if validate_name("slice name", n).is_ok() {
                    out.push(n.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// A directory fd for `clone3(CLONE_INTO_CGROUP)`, opened `O_RDONLY|O_DIRECTORY|O_CLOEXEC`
    /// (the kernel refuses an `O_PATH` fd for this).
    pub fn dir_fd(&self) -> Result<OwnedFd> {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.dir)
            .map(OwnedFd::from)
            .map_err(|e| CgroupError::io("opening", &self.dir, e))
    }

    fn read(&self, file: &str) -> Result<String> {
        read_string(&self.file(file))
    }

    fn parse<T>(&self, file: &str, f: impl FnOnce(&Path, &str) -> Result<T>) -> Result<T> {
        let p = self.file(file);
        let text = read_string(&p)?;
        f(&p, &text)
    }

    /// Writes `value` to `file` in one write(2); the raw error, for callers that roll back.
    pub(crate) fn write_raw(&self, file: &str, value: &str) -> io::Result<()> {
        write_raw(&self.file(file), value)
    }

    /// Writes `value` to `file`; a refusal is [`CgroupError::Write`] naming the path, the
    /// value and `key`.
    pub(crate) fn write(&self, file: &str, value: &str, key: Option<LimitKey>) -> Result<()> {
        self.write_raw(file, value)
            .map_err(|source| CgroupError::Write {
                path: self.file(file),
                value: value.to_string(),
                key,
                rolled_back: false,
                source,
            })
    }

    fn malformed(&self, file: &str, value: &str) -> CgroupError {
        CgroupError::Malformed {
            path: self.file(file),
            detail: format!("unexpected value {:?}", value.trim()),
        }
    }

    // ---- core files (no controller needed) ----

    /// `cgroup.controllers`: the controllers the parent makes available here.
    pub fn controllers(&self) -> Result<BTreeSet<String>> {
        read_word_set(&self.file("cgroup.controllers"))
    }

    /// `cgroup.subtree_control`: the controllers enabled for the children.
    pub fn subtree_control(&self) -> Result<BTreeSet<String>> {
        read_word_set(&self.file("cgroup.subtree_control"))
    }

    /// Writes `cgroup.subtree_control`, e.g. `+memory` or `-io`.
    pub fn set_subtree_control(&self, change: &str) -> Result<()> {
        self.write("cgroup.subtree_control", change, None)
    }

    /// `cgroup.procs`: the processes in this cgroup.
    pub fn procs(&self) -> Result<Vec<u32>> {
        read_pids(&self.file("cgroup.procs"))
    }

    /// Opens `cgroup.procs` for moves ([`ProcsFile`]).
    pub fn procs_file(&self) -> Result<ProcsFile> {
        let path = self.file("cgroup.procs");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| CgroupError::io("opening", &path, e))?;
        Ok(ProcsFile { file, path })
    }

    /// `cgroup.events`.
    pub fn events(&self) -> Result<CgroupEvents> {
        self.parse("cgroup.events", CgroupEvents::parse)
    }

    /// Whether the freezer has frozen the cgroup (`cgroup.events` `frozen`).
    pub fn frozen(&self) -> Result<bool> {
        Ok(self.events()?.frozen)
    }

    /// Writes `cgroup.freeze` (Linux 5.2+): `true` freezes every process, `false` thaws.
    /// Returns once requested; [`Cgroup::wait_events`] waits until the kernel reports it.
    pub fn freeze(&self, on: bool) -> Result<()> {
        self.core_write("cgroup.freeze", if on { "1" } else { "0" }, "Linux 5.2+")
    }

    /// SIGKILLs every process at once (`cgroup.kill`, Linux 5.14+; no process can fork away
    /// during it).
    pub fn kill(&self) -> Result<()> {
        self.core_write("cgroup.kill", "1", "Linux 5.14+")
    }

    fn core_write(&self, file: &'static str, value: &str, needs: &'static str) -> Result<()> {
        if !self.has(file) {
            return Err(CgroupError::Unsupported {
                feature: file,
                path: self.file(file),
                needs,
            });
        }
        self.write(file, value, None)
    }

    /// Waits until `done` accepts `cgroup.events`, or `timeout` passes (`Ok(false)`). The
    /// kernel signals every change of that file to poll(2) (POLLPRI), so this sleeps until a
    /// change instead of polling a clock; it re-reads at least every 100 ms all the same, in
    /// case a change is signalled before the wait starts.
    pub fn wait_events(
        &self,
        timeout: Duration,
        done: impl Fn(CgroupEvents) -> bool,
    ) -> Result<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        use std::os::unix::fs::FileExt;
        let path = self.file("cgroup.events");
        let file = std::fs::File::open(&path).map_err(|e| CgroupError::io("opening", &path, e))?;
        let start = Instant::now();
        let mut buf = vec![0u8; 256];
        loop {
            let n = file
                .read_at(&mut buf, 0)
                .map_err(|e| CgroupError::io("reading", &path, e))?;
            let text = String::from_utf8_lossy(&buf[..n]);
            if done(CgroupEvents::parse(&path, &text)?) {
                return Ok(true);
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(false);
            }
            let wait = left.min(Duration::from_millis(100));
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
            match poll(
                &mut fds,
                PollTimeout::try_from(wait).unwrap_or(PollTimeout::ZERO),
            ) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    return Err(CgroupError::io("polling", &path, io::Error::from(e)));
                }
            }
        }
    }

    // ---- memory ----

    /// `memory.max` in bytes; `None` is `max`.
    pub fn memory_max(&self) -> Result<Option<u64>> {
        self.parse("memory.max", parse_single)
    }

    pub fn set_memory_max(&self, bytes: Option<u64>) -> Result<()> {
        self.write("memory.max", &fmt_max(bytes), Some(LimitKey::MemoryMax))
    }

    /// `memory.high` in bytes; `None` is `max`.
    pub fn memory_high(&self) -> Result<Option<u64>> {
        self.parse("memory.high", parse_single)
    }

    pub fn set_memory_high(&self, bytes: Option<u64>) -> Result<()> {
        self.write("memory.high", &fmt_max(bytes), Some(LimitKey::MemoryHigh))
    }

    /// `memory.swap.max` in bytes; `None` is `max`. Absent without swap accounting.
    pub fn memory_swap_max(&self) -> Result<Option<u64>> {
        self.parse("memory.swap.max", parse_single)
    }

    pub fn set_memory_swap_max(&self, bytes: Option<u64>) -> Result<()> {
        self.write(
            "memory.swap.max",
            &fmt_max(bytes),
            Some(LimitKey::MemorySwapMax),
        )
    }

    /// `memory.current` in bytes.
    pub fn memory_current(&self) -> Result<u64> {
        self.parse("memory.current", parse_counter)
    }

    /// `memory.peak` in bytes (Linux 5.19+).
    pub fn memory_peak(&self) -> Result<u64> {
        self.parse("memory.peak", parse_counter)
    }

    /// `memory.swap.current` in bytes (needs swap accounting).
    pub fn memory_swap_current(&self) -> Result<u64> {
        self.parse("memory.swap.current", parse_counter)
    }

    /// `memory.events`.
    pub fn memory_events(&self) -> Result<MemoryEvents> {
        self.parse("memory.events", MemoryEvents::parse)
    }

    // ---- cpu ----

    /// `cpu.max`.
    pub fn cpu_max(&self) -> Result<CpuMax> {
        let t = self.read("cpu.max")?;
        CpuMax::parse(&t).ok_or_else(|| self.malformed("cpu.max", &t))
    }

    pub fn set_cpu_max(&self, v: CpuMax) -> Result<()> {
        self.write("cpu.max", &v.to_string(), Some(LimitKey::CPUQuota))
    }

    /// `cpu.weight` (1..=10000, default 100).
    pub fn cpu_weight(&self) -> Result<u32> {
        let t = self.read("cpu.weight")?;
        t.trim()
            .parse()
            .map_err(|_| self.malformed("cpu.weight", &t))
    }

    pub fn set_cpu_weight(&self, w: u32) -> Result<()> {
        self.write("cpu.weight", &w.to_string(), Some(LimitKey::CPUWeight))
    }

    /// `cpu.stat` (usage is there even without the cpu controller; throttling needs it).
    pub fn cpu_stat(&self) -> Result<CpuStat> {
        self.parse("cpu.stat", CpuStat::parse)
    }

    // ---- io ----

    /// `io.max`: one entry per device that has a limit.
    pub fn io_max(&self) -> Result<Vec<IoMax>> {
        let t = self.read("io.max")?;
        t.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| IoMax::parse_line(l).ok_or_else(|| self.malformed("io.max", l)))
            .collect()
    }

    /// Writes one device's line of `io.max` (all four rates; `max` lifts one).
    pub fn set_io_max(&self, line: &IoMax) -> Result<()> {
        self.write("io.max", &line.to_string(), None)
    }

    /// `io.stat`.
    pub fn io_stat(&self) -> Result<Vec<IoStat>> {
        self.parse("io.stat", Vec::<IoStat>::parse)
    }

    // ---- pids ----

    /// `pids.max`; `None` is `max`.
    pub fn pids_max(&self) -> Result<Option<u64>> {
        self.parse("pids.max", parse_single)
    }

    pub fn set_pids_max(&self, n: Option<u64>) -> Result<()> {
        self.write("pids.max", &fmt_max(n), Some(LimitKey::TasksMax))
    }

    /// `pids.current`.
    pub fn pids_current(&self) -> Result<u64> {
        self.parse("pids.current", parse_counter)
    }

    /// `pids.peak` (newer kernels).
    pub fn pids_peak(&self) -> Result<u64> {
        self.parse("pids.peak", parse_counter)
    }

    /// `pids.events` `max`: forks refused by `pids.max`.
    pub fn pids_max_events(&self) -> Result<u64> {
        self.parse("pids.events", parse_pids_events)
    }

    // ---- pressure ----

    /// A pressure file (`cpu.pressure`, `memory.pressure`, `io.pressure`).
    pub fn pressure(&self, kind: PressureKind) -> Result<Pressure> {
        self.parse(kind.file(), Pressure::parse)
    }

    // ---- everything ----

    /// Every statistic at once. `cgroup.events` must be there (it makes a directory a
    /// cgroup); a part whose file is absent is `None`; a malformed file is an error.
    pub fn stats(&self) -> Result<SliceStats> {
        let events = self.events()?;
        let memory = match self.memory_current().optional()? {
            Some(current) => Some(MemoryStats {
                current,
                peak: self.memory_peak().optional()?,
                swap_current: self.memory_swap_current().optional()?,
                events: self.memory_events().optional()?.unwrap_or_default(),
            }),
            None => None,
        };
        let pids = match self.pids_current().optional()? {
            Some(current) => Some(PidsStats {
                current,
                peak: self.pids_peak().optional()?,
                max_events: self.pids_max_events().optional()?.unwrap_or(0),
            }),
            None => None,
        };
        Ok(SliceStats {
            populated: events.populated,
            frozen: events.frozen,
            cpu: self.cpu_stat().optional()?,
            memory,
            io: self.io_stat().optional()?,
            pids,
            pressure: PressureStats {
                cpu: self.pressure(PressureKind::Cpu).optional()?,
                memory: self.pressure(PressureKind::Memory).optional()?,
                io: self.pressure(PressureKind::Io).optional()?,
            },
        })
    }
}

/// An open `cgroup.procs` ([`Cgroup::procs_file`]): a caller that moves many processes into
/// one cgroup (exec-time placement) keeps it and skips the path walk and the open per move.
#[derive(Debug)]
pub struct ProcsFile {
    file: std::fs::File,
    /// The `cgroup.procs` path.
    path: PathBuf,
}

impl ProcsFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `info.tgid` (checked by the caller: [`procs::check_mutable`]) and verifies
    /// afterwards that the pid was not reused in between. `pid` is what the caller asked for
    /// (errors name it). Returns how long the kernel took for the write.
    pub fn write_checked(&self, pid: u32, info: &ProcInfo) -> Result<Duration> {
        let value = info.tgid.to_string();
        let t0 = Instant::now();
        let written = std::os::unix::fs::FileExt::write_at(&self.file, value.as_bytes(), 0);
        let took = t0.elapsed();
        let fail = |source| CgroupError::Write {
            path: self.path.clone(),
            value: value.clone(),
            key: None,
            rolled_back: false,
            source,
        };
        match written {
            Ok(n) if n == value.len() => {}
            Ok(n) => {
                let short = format!("short write: {n} of {} bytes", value.len());
                return Err(fail(io::Error::new(io::ErrorKind::WriteZero, short)));
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(CgroupError::NoSuchProcess { pid })
            }
            Err(e) => return Err(fail(e)),
        }
        // A pid reused between the check and the write: report it (the new process moved).
        // (the start time alone: /proc/PID/stat, not stat + status, on the placement path)
        if let Ok(found) = procs::start_time_of(info.tgid) {
            if found != info.start_time {
                return Err(CgroupError::PidReusedDuringMove {
                    pid,
                    path: self.path.parent().unwrap_or(&self.path).to_path_buf(),
                    expected: info.start_time,
                    found,
                });
            }
        }
        Ok(took)
    }
}

#[cfg(test)]
mod tests;
