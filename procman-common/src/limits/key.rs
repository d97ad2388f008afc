//! The vocabulary limits are written in: the controllers procman enforces with
//! ([`Controller`]) and the limit keys, systemd's names ([`LimitKey`]). No I/O.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The controllers procman enforces limits with. Others (`cpuset`, `hugetlb`, `rdma`, `misc`)
/// are reported in `procman_cgroup::Capabilities::other_controllers` but not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    Cpu,
    Memory,
    Io,
    Pids,
}

impl Controller {
    pub const ALL: [Controller; 4] = [
        Controller::Cpu,
        Controller::Memory,
        Controller::Io,
        Controller::Pids,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Memory => "memory",
            Controller::Io => "io",
            Controller::Pids => "pids",
        }
    }

    pub fn from_name(s: &str) -> Option<Controller> {
        Controller::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The cgroup v1 controller name that holds the same resource (io is `blkio` in v1).
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Io => "blkio",
            c => c.name(),
        }
    }

    /// The limit keys this controller enforces.
    pub fn limit_keys(self) -> &'static [LimitKey] {
        use LimitKey::*;
        match self {
            Controller::Cpu => &[CPUQuota, CPUWeight],
            Controller::Memory => &[MemoryMax, MemoryHigh, MemorySwapMax],
            Controller::Io => &[
                IOReadBandwidthMax,
                IOWriteBandwidthMax,
                IOReadIOPSMax,
                IOWriteIOPSMax,
            ],
            Controller::Pids => &[TasksMax],
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A limit key in systemd's resource-control vocabulary. Declaration order is print order.
/// Parses from and prints as the systemd name (`MemoryMax`); serde uses that name too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitKey {
    /// `memory.max`.
    MemoryMax,
    /// `memory.high`.
    MemoryHigh,
    /// `memory.swap.max`.
    MemorySwapMax,
    /// `cpu.max`.
    CPUQuota,
    /// `cpu.weight`.
    CPUWeight,
    /// `io.max` `rbps`.
    IOReadBandwidthMax,
    /// `io.max` `wbps`.
    IOWriteBandwidthMax,
    /// `io.max` `riops`.
    IOReadIOPSMax,
    /// `io.max` `wiops`.
    IOWriteIOPSMax,
    /// `pids.max`.
    TasksMax,
}

impl LimitKey {
    /// Every key, in print order.
    pub const ALL: [LimitKey; 10] = [
        LimitKey::MemoryMax,
        LimitKey::MemoryHigh,
        LimitKey::MemorySwapMax,
        LimitKey::CPUQuota,
        LimitKey::CPUWeight,
        LimitKey::IOReadBandwidthMax,
        LimitKey::IOWriteBandwidthMax,
        LimitKey::IOReadIOPSMax,
        LimitKey::IOWriteIOPSMax,
        LimitKey::TasksMax,
    ];

    /// Every key's name, for messages.
    pub const ACCEPTED: &'static str = "MemoryMax, MemoryHigh, MemorySwapMax, CPUQuota, \
CPUWeight, IOReadBandwidthMax, IOWriteBandwidthMax, IOReadIOPSMax, IOWriteIOPSMax, TasksMax";

    /// The systemd name.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKey::MemoryMax => "MemoryMax",
            LimitKey::MemoryHigh => "MemoryHigh",
            LimitKey::MemorySwapMax => "MemorySwapMax",
            LimitKey::CPUQuota => "CPUQuota",
            LimitKey::CPUWeight => "CPUWeight",
            LimitKey::IOReadBandwidthMax => "IOReadBandwidthMax",
            LimitKey::IOWriteBandwidthMax => "IOWriteBandwidthMax",
            LimitKey::IOReadIOPSMax => "IOReadIOPSMax",
            LimitKey::IOWriteIOPSMax => "IOWriteIOPSMax",
            LimitKey::TasksMax => "TasksMax",
        }
    }

    /// The controller that enforces this key.
    pub fn controller(self) -> Controller {
        match self {
            LimitKey::MemoryMax | LimitKey::MemoryHigh | LimitKey::MemorySwapMax => {
                Controller::Memory
            }
            LimitKey::CPUQuota | LimitKey::CPUWeight => Controller::Cpu,
            LimitKey::IOReadBandwidthMax
            | LimitKey::IOWriteBandwidthMax
            | LimitKey::IOReadIOPSMax
            | LimitKey::IOWriteIOPSMax => Controller::Io,
            LimitKey::TasksMax => Controller::Pids,
        }
    }

    /// The interface file that holds this key.
    pub fn file(self) -> &'static str {
        match self {
            LimitKey::MemoryMax => "memory.max",
            LimitKey::MemoryHigh => "memory.high",
            LimitKey::MemorySwapMax => "memory.swap.max",
            LimitKey::CPUQuota => "cpu.max",
            LimitKey::CPUWeight => "cpu.weight",
            LimitKey::IOReadBandwidthMax
            | LimitKey::IOWriteBandwidthMax
            | LimitKey::IOReadIOPSMax
            | LimitKey::IOWriteIOPSMax => "io.max",
            LimitKey::TasksMax => "pids.max",
        }
    }

    /// IO keys hold one entry per device (a list in the config).
    pub fn is_per_device(self) -> bool {
        self.controller() == Controller::Io
    }

    /// The key meant by a misspelt `input`: the same name in another case, or the nearest
    /// name within a few edits (`MemoryMaxx` -> `MemoryMax`).
    pub fn suggest(input: &str) -> Option<LimitKey> {
        if let Some(k) = LimitKey::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(input))
        {
            return Some(k);
        }
        if input.len() > 40 {
            return None;
        }
        let lower = input.to_ascii_lowercase();
        LimitKey::ALL
            .into_iter()
            .map(|k| (edit_distance(&lower, &k.as_str().to_ascii_lowercase()), k))
            .filter(|(d, k)| *d <= 3.min(k.as_str().len() / 3))
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    }
}

/// Levenshtein distance over bytes (keys are ASCII; other input only gets farther away).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// A limit key that is not one of [`LimitKey::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown limit key {key:?}{}; accepted keys: {}", hint(*.suggestion), LimitKey::ACCEPTED)]
pub struct UnknownKey {
    /// What was given (at most 64 characters of it).
    pub key: String,
    /// The nearest key, when one is near.
    pub suggestion: Option<LimitKey>,
}

/// ` (did you mean K?)`, or nothing.
pub fn hint(suggestion: Option<LimitKey>) -> String {
    suggestion
        .map(|k| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

/// At most `max` characters of `s`, with `…` when cut (keeps messages about hostile input
/// bounded).
pub fn shorten(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

impl FromStr for LimitKey {
    type Err = UnknownKey;
    fn from_str(s: &str) -> Result<LimitKey, UnknownKey> {
        LimitKey::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKey {
                key: shorten(s, 64),
                suggestion: LimitKey::suggest(s),
            })
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for LimitKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LimitKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_map_to_controllers() {
        for k in LimitKey::ALL {
            assert_eq!(k.as_str().parse::<LimitKey>(), Ok(k));
            assert_eq!(k.to_string(), k.as_str());
            assert!(k.controller().limit_keys().contains(&k), "{k}");
            assert!(k.file().starts_with(k.controller().name()), "{k}");
            let j = serde_json::to_string(&k).unwrap();
            assert_eq!(j, format!("\"{k}\""));
            assert_eq!(serde_json::from_str::<LimitKey>(&j).unwrap(), k);
        }
        let names: Vec<&str> = LimitKey::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.join(", "), LimitKey::ACCEPTED);
        let by_controller: usize = Controller::ALL.iter().map(|c| c.limit_keys().len()).sum();
        assert_eq!(by_controller, LimitKey::ALL.len());
        let mut sorted = LimitKey::ALL;
        sorted.sort();
        assert_eq!(sorted, LimitKey::ALL, "Ord is print order");
    }

    #[test]
    fn unknown_keys_suggest_the_nearest() {
        for (typo, want) in [
            ("MemoryMaxx", Some(LimitKey::MemoryMax)),
            ("memorymax", Some(LimitKey::MemoryMax)),
            ("MEMORYHIGH", Some(LimitKey::MemoryHigh)),
            ("CpuQuota", Some(LimitKey::CPUQuota)),
            ("CPUQuote", Some(LimitKey::CPUQuota)),
            ("IOReadBandwithMax", Some(LimitKey::IOReadBandwidthMax)),
            ("IOWriteIopsMax", Some(LimitKey::IOWriteIOPSMax)),
            ("TaskMax", Some(LimitKey::TasksMax)),
            ("Bogus", None),
            ("", None),
            ("max", None),
        ] {
            let e = typo.parse::<LimitKey>().unwrap_err();
            assert_eq!(e.suggestion, want, "{typo:?}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("{typo:?}")), "{msg}");
            assert!(msg.contains("accepted keys: MemoryMax"), "{msg}");
            if let Some(k) = want {
                assert!(msg.contains(&format!("did you mean {k}?")), "{msg}");
            }
        }
        let long = "x".repeat(10_000);
        let e = long.parse::<LimitKey>().unwrap_err();
        assert!(e.key.chars().count() <= 65, "{}", e.key.len());
        assert!(serde_json::from_str::<LimitKey>("\"MemoryMaxx\"")
            .unwrap_err()
            .to_string()
            .contains("did you mean MemoryMax?"));
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("memorymaxx", "memorymax"), 1);
    }
}
