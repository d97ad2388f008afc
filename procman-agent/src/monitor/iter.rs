//! The task iterator's kernel interface: loads `procman-ebpf`'s sampler object (two `iter/task`
//! programs) and runs one sweep per call: a fresh iterator fd, read to its end, decoded into
//! [`PmTaskSample`] records (one per process, threads summed in the kernel).
//!
//! aya 0.14's `IterLink::into_file` consumes the link, so each sweep attaches the program
//! anew (one `BPF_LINK_CREATE` + one `BPF_ITER_CREATE`, microseconds) and drops the link once
//! the iterator fd exists; the programs and the `last_seen` task storage stay loaded.
use anyhow::{anyhow, Context, Result};
use aya::{programs::Iter, Btf, Ebpf, EbpfLoader};
use procman_common::abi::PmTaskSample;
use std::io::Read;

/// Buffer kept between sweeps: changed-only sweeps report a few hundred processes at most.
const KEEP_BYTES: usize = 64 << 10;

pub struct TaskIter {
    ebpf: Ebpf,
    /// The raw records of the last sweep (kept to reuse its allocation).
    buf: Vec<u8>,
}

/// A sweep's records, decoded on access from the bytes read (no second copy).
pub struct Records<'a>(&'a [u8]);

impl<'a> Records<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / PmTaskSample::SIZE
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th record (`i < len()`).
    pub fn get(&self, i: usize) -> Option<PmTaskSample> {
        self.0
            .get(i * PmTaskSample::SIZE..)
            .and_then(PmTaskSample::from_bytes)
    }

    pub fn iter(&self) -> impl Iterator<Item = PmTaskSample> + 'a {
        self.0
            .chunks_exact(PmTaskSample::SIZE)
            .filter_map(PmTaskSample::from_bytes)
    }
}

impl TaskIter {
    /// Loads both programs and runs a first full sweep, which proves that attaching and
    /// reading work on this kernel.
    pub fn load() -> Result<TaskIter> {
        Self::load_inner().map_err(crate::events::bpf::explain)
    }

    fn load_inner() -> Result<TaskIter> {
        crate::events::bpf::preflight()?;
        let btf = Btf::from_sys_fs().context("reading kernel BTF")?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            // last_seen is task-local storage, which aya 0.14 has no Rust type for; only the
            // kernel side uses it
            .allow_unsupported_maps()
            .load(procman_ebpf::SAMPLER_OBJECT)
            .context("loading the sampler's BPF object")?;
        for name in [procman_ebpf::SAMPLER_ALL, procman_ebpf::SAMPLER_CHANGED] {
            let p: &mut Iter = ebpf
                .program_mut(name)
                .with_context(|| format!("BPF program {name} missing from the object"))?
                .try_into()?;
            p.load("task", &btf)
                .with_context(|| format!("loading {name} for iter/task"))?;
        }
        let mut it = TaskIter {
            ebpf,
            buf: Vec::new(),
        };
        if it.sweep(true)?.is_empty() {
            return Err(anyhow!("the task iterator reported no process at all"));
        }
        Ok(it)
    }

    /// One sweep: every process when `full`, else only those whose CPU time, RSS, cgroup or
    /// nice changed since they were last reported, plus exiting processes and zombies.
    pub fn sweep(&mut self, full: bool) -> Result<Records<'_>> {
        let name = if full {
            procman_ebpf::SAMPLER_ALL
        } else {
            procman_ebpf::SAMPLER_CHANGED
        };
        let p: &mut Iter = self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("BPF program {name} missing"))?
            .try_into()?;
        let id = p.attach().context("attaching the task iterator")?;
        let link = p.take_link(id).context("taking the iterator link")?;
        let mut file = link.into_file().context("creating the iterator fd")?;
        self.buf.clear();
        if !full {
            // a full sweep's megabyte is not kept between full sweeps
            self.buf.shrink_to(KEEP_BYTES);
        }
        // each read() returns at most the kernel's seq buffer (8 pages) of whole records
        file.read_to_end(&mut self.buf)
            .context("reading the task iterator")?;
        Ok(Records(&self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/PID/stat fields after the comm: (state, utime+stime ticks, num_threads, starttime).
    fn proc_stat(pid: u32) -> (char, u64, u32, u64) {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = s.rsplit_once(')').unwrap().1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        (
            f[0].chars().next().unwrap(),
            f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap(),
            f[17].parse().unwrap(),
            f[19].parse().unwrap(),
        )
    }

    /// The iterator loads, a full sweep reports this (multi-threaded) test process and its
    /// parent with the start time, thread count and CPU time /proc shows, and a sweep of changed
    /// processes reports a process that burns CPU but not one that sleeps.
    #[test]
    #[ignore = "needs root: loads BPF programs"]
    fn sweeps_agree_with_proc() {
        let mut it = TaskIter::load().expect("the sampler object loads");
        // a few threads of our own, parked
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let parked: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    let _ = rx.lock().unwrap().recv();
                })
            })
            .collect();
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        let out: Vec<_> = it.sweep(true).unwrap().iter().collect();
        for pid in [me, parent] {
            let r = out
                .iter()
                .find(|r| r.tgid == pid)
                .unwrap_or_else(|| panic!("pid {pid} in a full sweep of {} records", out.len()));
            let (_, ticks, threads, start) = proc_stat(pid);
            assert_eq!(crate::tree::ns_to_ticks(r.start_ns), start, "{pid}: {r:?}");
            assert_eq!(r.nr_threads, threads, "{pid}: {r:?}");
            let cpu_s = r.oncpu_ns as f64 / 1e9;
            let proc_s = ticks as f64 / procfs::ticks_per_second() as f64;
            assert!(
                (cpu_s - proc_s).abs() < 0.05 + 0.05 * proc_s,
                "{pid}: iterator {cpu_s}s vs /proc {proc_s}s: {r:?}"
            );
            assert!(r.rss_pages > 0, "{pid}: {r:?}");
            assert_eq!(r.flags & abi_flags::PM_TS_TRUNCATED, 0, "{pid}: {r:?}");
        }
        drop(tx);
        for t in parked {
            t.join().unwrap();
        }
        // changed-only: a sleeper is not reported again, a busy child is
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut busy = std::process::Command::new("/bin/sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut ok = false;
        while std::time::Instant::now() < deadline {
            it.sweep(false).unwrap(); // reports both once (new to the iterator)
            std::thread::sleep(std::time::Duration::from_millis(100));
            let out: Vec<_> = it.sweep(false).unwrap().iter().collect();
            let has = |pid: u32| out.iter().any(|r| r.tgid == pid);
            if has(busy.id()) && !has(sleeper.id()) {
                ok = true;
                break;
            }
        }
        for c in [&mut sleeper, &mut busy] {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        assert!(
            ok,
            "a changed-only sweep reports the busy loop and not the sleeper"
        );
    }

    use procman_common::abi as abi_flags;
}
