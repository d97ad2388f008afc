//! Bounded per-process usage history with window statistics and memory-growth detection.
//!
//! Each process (identified by pid and start time, so a reused pid never merges two
//! processes) has a ring of at most `capacity` entries (default 1000). Memory math: an entry
//! is 24 bytes, so a full ring is ~24 KiB; to keep 10,000 mostly idle processes cheap, a
//! sample identical to the previous entry (same CPU%, RSS, IO rates: an idle process) only
//! bumps that entry's repeat count. An idle sleeper therefore costs one entry however long it
//! runs, and the ring bound still holds for busy ones. Rings grow on demand (Vec doubling),
//! never preallocated. Entries of exited processes are kept for `retention` (max 48 h).
pub use procman_common::api::{LeakReport, Stat, WindowStats};

/// One stored sample (or a run of identical ones): 24 bytes, the ring's unit. The API turns
/// it into [`procman_common::api::HistoryPoint`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix time of the (first) sample, seconds.
    pub t: u32,
    /// How many consecutive samples this entry stands for (an idle process repeats).
    pub repeat: u32,
    pub cpu_pct: f32,
    /// Resident memory, KiB.
    pub rss_kib: u32,
    pub read_bps: f32,
    pub write_bps: f32,
}
use std::collections::{HashMap, VecDeque};

/// Process identity: (pid, start time in clock ticks since boot).
pub type Id = (u32, u64);

/// A multiplicative hasher (FxHash's) for the integer keys of the per-process maps that the
/// sampler touches for every process every tick (pids, (pid, start)). SipHash's DoS
/// resistance buys nothing for kernel-assigned pids and costs several times more.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// A HashMap keyed by pids or process identities, with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

fn same_values(a: &Sample, o: &Sample) -> bool {
    a.cpu_pct == o.cpu_pct
        && a.rss_kib == o.rss_kib
        && a.read_bps == o.read_bps
        && a.write_bps == o.write_bps
}

/// Memory-growth heuristic: over the newest samples spanning at least `MIN_SPAN_S`, RSS
/// fits a rising straight line (R² >= 0.8) and grew by at least 10% and 4 MiB. A flat,
/// noisy-flat or sawtooth (allocate/free cycles) series fails the fit or the growth test.
const MIN_SPAN_S: u64 = 600;
const MIN_POINTS: usize = 30;
const MIN_R2: f64 = 0.8;
const MIN_GROWTH_BYTES: f64 = 4.0 * 1024.0 * 1024.0;

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<Sample>,
    exited_at: Option<u32>,
}

#[derive(Debug)]
pub struct History {
    capacity: usize,
    retention_s: u32,
    rings: IdMap<Id, Ring>,
}

fn stat(mut v: Vec<(f64, u32)>) -> Stat {
    let n: u64 = v.iter().map(|x| x.1 as u64).sum();
    if n == 0 {
        return Stat::default();
    }
    let sum: f64 = v.iter().map(|(x, c)| x * *c as f64).sum();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    // nearest-rank p95 over the expanded series
    let rank = ((0.95 * n as f64).ceil() as u64).max(1);
    let mut acc = 0;
    let mut p95 = v[v.len() - 1].0;
    for (x, c) in &v {
        acc += *c as u64;
        if acc >= rank {
            p95 = *x;
            break;
        }
    }
    Stat {
        avg: sum / n as f64,
        min: v[0].0,
        max: v[v.len() - 1].0,
        p95,
    }
}

impl History {
    pub fn new(capacity: usize, retention_s: u32) -> History {
        History {
            capacity: capacity.max(2),
            retention_s,
            rings: IdMap::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.rings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    /// Adds a sample for `id`.
    pub fn push(&mut self, id: Id, s: Sample) {
        let ring = self.rings.entry(id).or_default();
        if let Some(last) = ring.entries.back_mut() {
            if same_values(last, &s) {
                last.repeat += 1;
                return;
            }
        }
        if ring.entries.len() == self.capacity {
            ring.entries.pop_front();
        }
        ring.entries.push_back(Sample { repeat: 1, ..s });
    }

    /// The process ended at `t`; its history is kept for the retention time.
    pub fn mark_exited(&mut self, id: Id, t: u32) {
        if let Some(r) = self.rings.get_mut(&id) {
            r.exited_at.get_or_insert(t);
        }
    }

    /// Drops the history of processes that exited more than the retention time before `now`.
    pub fn prune(&mut self, now: u32) {
        let keep = self.retention_s;
        self.rings
            .retain(|_, r| r.exited_at.is_none_or(|t| now.saturating_sub(t) <= keep));
    }

    /// The newest history of `pid` (the live process, else the most recently exited one).
    pub fn find(&self, pid: u32) -> Option<Id> {
        self.rings
            .iter()
            .filter(|((p, _), _)| *p == pid)
            .max_by_key(|((_, start), r)| (r.exited_at.is_none(), *start))
            .map(|(id, _)| *id)
    }

    pub fn exited_at(&self, id: Id) -> Option<u32> {
        self.rings.get(&id).and_then(|r| r.exited_at)
    }

    /// Entries since `since` (unix seconds), oldest first; a run of identical samples is one
    /// entry whose `repeat` says how many samples it stands for.
    pub fn samples(&self, id: Id, since: u32) -> Vec<Sample> {
        self.rings
            .get(&id)
            .map(|r| r.entries.iter().filter(|s| s.t >= since).copied().collect())
            .unwrap_or_default()
    }

    /// avg/min/max/p95 over the samples since `since`.
    pub fn window(&self, id: Id, since: u32) -> Option<WindowStats> {
        let ring = self.rings.get(&id)?;
        let w: Vec<&Sample> = ring.entries.iter().filter(|s| s.t >= since).collect();
        let col =
            |f: &dyn Fn(&Sample) -> f64| w.iter().map(|s| (f(s), s.repeat)).collect::<Vec<_>>();
        Some(WindowStats {
            samples: w.iter().map(|s| s.repeat as u64).sum(),
            cpu_percent: stat(col(&|s| s.cpu_pct as f64)),
            memory_bytes: stat(col(&|s| s.rss_kib as f64 * 1024.0)),
            read_bytes_per_second: stat(col(&|s| s.read_bps as f64)),
            write_bytes_per_second: stat(col(&|s| s.write_bps as f64)),
        })
    }

    /// Whether RSS has been growing steadily (see the constants above for the heuristic).
    pub fn leak_suspected(&self, id: Id) -> Option<LeakReport> {
        let ring = self.rings.get(&id)?;
        let pts: Vec<(f64, f64)> = ring
            .entries
            .iter()
            .map(|s| (s.t as f64, s.rss_kib as f64 * 1024.0))
            .collect();
        if pts.len() < MIN_POINTS {
            return None;
        }
        let (t0, t1) = (pts[0].0, pts[pts.len() - 1].0);
        if ((t1 - t0) as u64) < MIN_SPAN_S {
            return None;
        }
        let n = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
        if sxx == 0.0 || syy == 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        let r2 = sxy * sxy / (sxx * syy);
        let (first, last) = (pts[0].1, pts[pts.len() - 1].1);
        let grown = slope * (t1 - t0);
        if slope <= 0.0 || r2 < MIN_R2 || grown < MIN_GROWTH_BYTES || grown < 0.1 * first.max(1.0) {
            return None;
        }
        Some(LeakReport {
            bytes_per_hour: slope * 3600.0,
            r_squared: r2,
            span_seconds: (t1 - t0) as u64,
            from_bytes: first as u64,
            to_bytes: last as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: u32, cpu: f32, rss_kib: u32) -> Sample {
        Sample {
            t,
            repeat: 1,
            cpu_pct: cpu,
            rss_kib,
            read_bps: 0.0,
            write_bps: 0.0,
        }
    }

    #[test]
    fn window_stats_of_a_known_series() {
        let mut h = History::new(1000, 3600);
        // cpu 1..=100 % at t = 1000..1099
        for i in 1..=100u32 {
            h.push((7, 1), s(999 + i, i as f32, 1024 * i));
        }
        let w = h.window((7, 1), 0).unwrap();
        assert_eq!(w.samples, 100);
        assert_eq!(w.cpu_percent.avg, 50.5);
        assert_eq!(w.cpu_percent.min, 1.0);
        assert_eq!(w.cpu_percent.max, 100.0);
        assert_eq!(w.cpu_percent.p95, 95.0);
        assert_eq!(w.memory_bytes.max, 100.0 * 1024.0 * 1024.0);
        // the last 10 seconds only: cpu 91..=100
        let w = h.window((7, 1), 1090).unwrap();
        assert_eq!(w.samples, 10);
        assert_eq!(w.cpu_percent.avg, 95.5);
        assert_eq!(w.cpu_percent.p95, 100.0);
    }

    #[test]
    fn identical_samples_are_one_entry_but_count_in_statistics() {
        let mut h = History::new(1000, 3600);
        for t in 0..500 {
            h.push((1, 1), s(t, 0.0, 4096));
        }
        h.push((1, 1), s(500, 10.0, 4096));
        assert_eq!(h.samples((1, 1), 0).len(), 2);
        let w = h.window((1, 1), 0).unwrap();
        assert_eq!(w.samples, 501);
        assert!((w.cpu_percent.avg - 10.0 / 501.0).abs() < 1e-9);
        assert_eq!(w.cpu_percent.p95, 0.0);
    }

    #[test]
    fn ring_is_bounded() {
        let mut h = History::new(50, 3600);
        for t in 0..1000 {
            h.push((1, 1), s(t, t as f32, 1));
        }
        let v = h.samples((1, 1), 0);
        assert_eq!(v.len(), 50);
        assert_eq!(v[0].t, 950);
    }

    #[test]
    fn exited_history_is_kept_for_the_retention_then_pruned() {
        let mut h = History::new(10, 3600);
        h.push((5, 1), s(100, 1.0, 1));
        h.push((6, 1), s(100, 1.0, 1));
        h.mark_exited((5, 1), 200);
        h.prune(200 + 3600);
        assert_eq!(h.len(), 2);
        h.prune(200 + 3601);
        assert_eq!(h.len(), 1, "only the live one stays");
    }

    #[test]
    fn a_reused_pid_never_merges() {
        let mut h = History::new(10, 3600);
        h.push((9, 100), s(1, 50.0, 1));
        h.mark_exited((9, 100), 2);
        h.push((9, 200), s(3, 5.0, 1));
        assert_eq!(h.find(9), Some((9, 200)), "the live process wins");
        assert_eq!(h.window((9, 200), 0).unwrap().cpu_percent.max, 5.0);
        assert_eq!(h.window((9, 100), 0).unwrap().cpu_percent.max, 50.0);
    }

    #[test]
    fn leak_detection() {
        // 2 s samples over 30 min
        let climb = |i: u32| 100_000 + i * 40; // +40 KiB per sample: ~70 MiB/h
        let mut h = History::new(1000, 3600);
        for i in 0..900 {
            h.push((1, 1), s(i * 2, 1.0, climb(i)));
        }
        let r = h.leak_suspected((1, 1)).expect("steady climb");
        assert!(r.r_squared > 0.99 && r.bytes_per_hour > 60e6, "{r:?}");

        let mut flat = History::new(1000, 3600);
        let mut noisy = History::new(1000, 3600);
        let mut saw = History::new(1000, 3600);
        let mut x: u32 = 12345;
        for i in 0..900 {
            flat.push((1, 1), s(i * 2, 1.0, 100_000));
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            noisy.push((1, 1), s(i * 2, 1.0, 100_000 + (x >> 16) % 5000));
            saw.push((1, 1), s(i * 2, 1.0, 100_000 + (i % 60) * 1000));
        }
        assert_eq!(flat.leak_suspected((1, 1)), None);
        assert_eq!(noisy.leak_suspected((1, 1)), None);
        assert_eq!(saw.leak_suspected((1, 1)), None);
        // too short to judge
        let mut short = History::new(1000, 3600);
        for i in 0..100 {
            short.push((1, 1), s(i * 2, 1.0, climb(i)));
        }
        assert_eq!(short.leak_suspected((1, 1)), None);
    }
}
