//! Parsing, range checks, rendering and the config form of [`Limits`], with a fake machine
//! and device resolver; and a bounded fuzz of every key with hostile input.
use std::path::Path;

use procman_common::units::Percent;

use super::render::io_max_devices;
use super::*;
use crate::iface::{DevNum, IoMax};

const M: Machine = Machine {
    mem_total: 4 << 30,
    cpus: 2,
    pid_max: 32768,
};

struct FakeDevs;
impl ResolveDevice for FakeDevs {
    fn resolve(&self, dev: &DeviceSpec) -> Result<DevNum, String> {
        match dev {
            DeviceSpec::Path(p) if p == Path::new("/dev/vda") => Ok(DevNum {
                major: 254,
                minor: 0,
            }),
            DeviceSpec::Path(p) if p == Path::new("/dev/vda1") => {
                Err("/dev/vda1 (254:1) is a partition; io.max applies to whole disks".into())
            }
            DeviceSpec::Number(n) if n.major == 8 => Ok(*n),
            DeviceSpec::Number(n) if n.major == 254 && n.minor == 0 => Ok(*n),
            other => Err(format!("no block device {other}")),
        }
    }
}

fn one(key: LimitKey, v: &str) -> Result<Limits, LimitError> {
    let mut l = Limits::default();
    l.set(key, v)?;
    Ok(l)
}

fn write_of(l: &Limits, file: &str) -> Vec<String> {
    l.plan(&M, &FakeDevs)
        .unwrap()
        .into_iter()
        .filter(|w| w.file == file)
        .map(|w| w.value)
        .collect()
}

fn assert_err(key: LimitKey, v: &str, needle: &str) {
    let e = one(key, v).expect_err(&format!("{key}={v} should be refused"));
    assert_eq!(e.key(), Some(key));
    let msg = e.to_string();
    assert!(msg.contains(&format!("{v:?}")), "value missing in: {msg}");
    assert!(msg.contains(key.as_str()), "key missing in: {msg}");
    assert!(
        msg.contains("accepted forms:"),
        "accepted forms missing in: {msg}"
    );
    assert!(msg.contains(needle), "{needle:?} missing in: {msg}");
}

#[test]
fn memory_forms_through_units() {
    let bytes = |v: &str| match one(LimitKey::MemoryMax, v).unwrap().memory_max {
        Some(MemoryValue::Bytes(b)) => b,
        other => panic!("{v}: {other:?}"),
    };
    assert_eq!(bytes("1073741824"), 1 << 30);
    assert_eq!(bytes("512M"), 512 << 20);
    assert_eq!(bytes("512MiB"), 512 << 20);
    assert_eq!(bytes("2GiB"), 2 << 30);
    assert_eq!(bytes("2G"), 2 << 30);
    assert_eq!(bytes("1.5G"), 3 << 29);
    assert_eq!(bytes("1T"), 1 << 40);
    assert_eq!(bytes("10 M"), 10 << 20);
    // KB/MB/GB/TB are 1000-based (units' meaning), no longer refused as ambiguous.
    assert_eq!(bytes("2GB"), 2_000_000_000);
    assert_eq!(bytes("1500KB"), 1_500_000);
    let swap = |v: &str| one(LimitKey::MemorySwapMax, v).unwrap().memory_swap_max;
    assert_eq!(swap("0"), Some(MemoryValue::Bytes(0)));
    assert_eq!(swap("4K"), Some(MemoryValue::Bytes(4096)));
    assert_eq!(swap("100B"), Some(MemoryValue::Bytes(100)));
    for (v, problem) in [
        ("2g", "upper case"),
        ("2X", "unknown unit"),
        ("1.2.3M", "not a number"),
        ("5.M", "not a number"),
        ("99999999999T", "too large"),
        ("99999999999999999999G", "too large"),
        ("18446744073709551616", "too large"),
        ("1e400", "unknown unit"),
    ] {
        assert_err(LimitKey::MemorySwapMax, v, problem);
    }
    // Printed back in the largest exact 1024-based unit.
    let shown = |v: &str| one(LimitKey::MemoryMax, v).unwrap().to_string();
    assert_eq!(shown("536870912"), "MemoryMax=512M");
    assert_eq!(shown("1.5G"), "MemoryMax=1536M");
    assert_eq!(shown("2GB"), "MemoryMax=1953125K");
}

#[test]
fn memory_max_and_high() {
    for key in [LimitKey::MemoryMax, LimitKey::MemoryHigh] {
        let file = key.file();
        assert_eq!(write_of(&one(key, "512M").unwrap(), file), ["536870912"]);
        assert_eq!(write_of(&one(key, "2GiB").unwrap(), file), ["2147483648"]);
        assert_eq!(write_of(&one(key, "max").unwrap(), file), ["max"]);
        assert_eq!(write_of(&one(key, "infinity").unwrap(), file), ["max"]);
        assert_eq!(write_of(&one(key, "50%").unwrap(), file), ["2147483648"]);
        assert_eq!(write_of(&one(key, "12.5%").unwrap(), file), ["536870912"]);
        assert_eq!(write_of(&Limits::default(), file), ["max"]);
        assert_err(key, "512", "below the minimum of 1M");
        assert_err(key, "lots", "not a number");
        assert_err(key, "-1G", "negative");
        assert_err(key, "0%", "outside 0%");
        assert_err(key, "150%", "outside 0%");
        assert_err(key, "1.234%", "two decimals");
        assert_err(key, "2g", "upper case");
        assert_err(key, "", "not a number");
    }
}

#[test]
fn memory_percent_below_minimum_after_resolution() {
    let tiny = Machine {
        mem_total: 64 << 20,
        ..M
    };
    let l = one(LimitKey::MemoryMax, "1%").unwrap();
    let e = l.plan(&tiny, &FakeDevs).unwrap_err().to_string();
    assert!(e.contains("below 1M") && e.contains("1%"), "{e}");
}

#[test]
fn memory_swap_max() {
    let l = one(LimitKey::MemorySwapMax, "0").unwrap();
    assert_eq!(write_of(&l, "memory.swap.max"), ["0"]);
    assert_eq!(
        write_of(
            &one(LimitKey::MemorySwapMax, "1G").unwrap(),
            "memory.swap.max"
        ),
        ["1073741824"]
    );
    assert_err(LimitKey::MemorySwapMax, "much", "not a number");
}

#[test]
fn cpu_quota() {
    let q = |v: &str| write_of(&one(LimitKey::CPUQuota, v).unwrap(), "cpu.max");
    assert_eq!(q("20%"), ["20000 100000"]);
    assert_eq!(q("1%"), ["1000 100000"]);
    assert_eq!(q("12.5%"), ["12500 100000"]);
    assert_eq!(q("250%"), ["250000 100000"]);
    assert_eq!(q("50% of machine"), ["100000 100000"]); // 2 CPUs
    assert_eq!(q("100% of machine"), ["200000 100000"]);
    assert_eq!(q("max"), ["max 100000"]);
    assert_eq!(write_of(&Limits::default(), "cpu.max"), ["max 100000"]);
    assert_err(LimitKey::CPUQuota, "0.5%", "below 1%");
    assert_err(LimitKey::CPUQuota, "20", "bare number is ambiguous");
    assert_err(LimitKey::CPUQuota, "fast", "not a percentage");
    assert_err(LimitKey::CPUQuota, "150% of machine", "outside 1% to 100%");
    assert_err(LimitKey::CPUQuota, "999999999%", "percentage is too large");
    assert_err(LimitKey::CPUQuota, "900000%", "more than 8192 CPUs");
    assert_err(LimitKey::CPUQuota, "x% of machine", "not a number");
}

#[test]
fn cpu_weight() {
    assert_eq!(
        write_of(&one(LimitKey::CPUWeight, "500").unwrap(), "cpu.weight"),
        ["500"]
    );
    assert_eq!(
        write_of(&one(LimitKey::CPUWeight, "1").unwrap(), "cpu.weight"),
        ["1"]
    );
    assert_eq!(
        write_of(&one(LimitKey::CPUWeight, "10000").unwrap(), "cpu.weight"),
        ["10000"]
    );
    assert_eq!(write_of(&Limits::default(), "cpu.weight"), ["100"]);
    assert_err(LimitKey::CPUWeight, "0", "outside 1 to 10000");
    assert_err(LimitKey::CPUWeight, "10001", "outside 1 to 10000");
    assert_err(
        LimitKey::CPUWeight,
        "99999999999999999999999",
        "outside 1 to 10000",
    );
    assert_err(LimitKey::CPUWeight, "-3", "negative");
    assert_err(LimitKey::CPUWeight, "high", "not an integer");
}

#[test]
fn tasks_max() {
    assert_eq!(
        write_of(&one(LimitKey::TasksMax, "64").unwrap(), "pids.max"),
        ["64"]
    );
    assert_eq!(
        write_of(&one(LimitKey::TasksMax, "max").unwrap(), "pids.max"),
        ["max"]
    );
    assert_eq!(
        write_of(&one(LimitKey::TasksMax, "10%").unwrap(), "pids.max"),
        ["3276"]
    );
    assert_eq!(
        write_of(&one(LimitKey::TasksMax, "4194304").unwrap(), "pids.max"),
        ["4194304"]
    );
    assert_eq!(write_of(&Limits::default(), "pids.max"), ["max"]);
    assert_err(LimitKey::TasksMax, "0", "outside 1 to 4194304");
    assert_err(LimitKey::TasksMax, "4194305", "outside 1 to 4194304");
    assert_err(LimitKey::TasksMax, "-1", "negative");
    assert_err(LimitKey::TasksMax, "many", "not an integer");
    assert_err(LimitKey::TasksMax, "101%", "outside 0%");
}

#[test]
fn io_limits() {
    let mut l = Limits::default();
    l.set(LimitKey::IOWriteBandwidthMax, "/dev/vda 4M").unwrap();
    l.set(LimitKey::IOReadBandwidthMax, "254:0 2M").unwrap();
    l.set(LimitKey::IOReadIOPSMax, "8:16 1K").unwrap();
    l.set(LimitKey::IOWriteIOPSMax, "8:16 max").unwrap();
    // IOPS keep their own 1000-based suffixes (a count, not bytes); bandwidth takes units'.
    let mut m = Limits::default();
    m.set(LimitKey::IOReadIOPSMax, "8:0 1.5K").unwrap();
    m.set(LimitKey::IOWriteIOPSMax, "8:0 2M").unwrap();
    m.set(LimitKey::IOWriteBandwidthMax, "8:0 10MB").unwrap();
    assert_eq!(
        write_of(&m, "io.max"),
        ["8:0 rbps=max wbps=10000000 riops=1500 wiops=2000000"]
    );
    assert_eq!(
        write_of(&l, "io.max"),
        [
            "8:16 rbps=max wbps=max riops=1000 wiops=max",
            "254:0 rbps=2097152 wbps=4194304 riops=max wiops=max"
        ]
    );
    assert!(write_of(&Limits::default(), "io.max").is_empty());
    // setting a device again replaces its rate instead of adding a second entry
    let mut again = Limits::default();
    again.set(LimitKey::IOWriteBandwidthMax, "8:0 10M").unwrap();
    again.set(LimitKey::IOWriteBandwidthMax, "8:0 20M").unwrap();
    again.set(LimitKey::IOWriteBandwidthMax, "8:16 1M").unwrap();
    assert_eq!(again.io_write_bandwidth_max.len(), 2, "{again:?}");
    assert_eq!(
        write_of(&again, "io.max"),
        [
            "8:0 rbps=max wbps=20971520 riops=max wiops=max",
            "8:16 rbps=max wbps=1048576 riops=max wiops=max"
        ]
    );
    assert_err(
        LimitKey::IOReadBandwidthMax,
        "/dev/vda",
        "device and a rate",
    );
    assert_err(
        LimitKey::IOReadBandwidthMax,
        "/dev/vda 1M extra",
        "device and a rate",
    );
    assert_err(
        LimitKey::IOReadBandwidthMax,
        "vda 1M",
        "neither a device path",
    );
    assert_err(
        LimitKey::IOReadBandwidthMax,
        "/dev/../etc 1M",
        "must not contain ..",
    );
    assert_err(
        LimitKey::IOReadBandwidthMax,
        "254:0 100",
        "below the minimum of 4096",
    );
    assert_err(LimitKey::IOReadBandwidthMax, "254:0 fast", "not a number");
    assert_err(
        LimitKey::IOWriteIOPSMax,
        "254:0 0",
        "below the minimum of 1",
    );
    assert_err(LimitKey::IOWriteIOPSMax, "254:0 1X", "unknown IOPS suffix");
    assert_err(LimitKey::IOWriteIOPSMax, "254:0 -1", "negative");
    assert_err(LimitKey::IOWriteIOPSMax, "254: 5", "neither a device path");
}

#[test]
fn io_device_resolution_errors_name_the_value() {
    let mut l = Limits::default();
    l.set(LimitKey::IOReadBandwidthMax, "/dev/vda1 1M").unwrap();
    let e = l.plan(&M, &FakeDevs).unwrap_err().to_string();
    assert!(
        e.contains("\"/dev/vda1 1M\"") && e.contains("partition"),
        "{e}"
    );
    let mut l = Limits::default();
    l.set(LimitKey::IOReadBandwidthMax, "9:9 1M").unwrap();
    let e = l.plan(&M, &FakeDevs).unwrap_err().to_string();
    assert!(e.contains("no block device 9:9"), "{e}");
    // The same disk twice under two names.
    let mut l = Limits::default();
    l.set(LimitKey::IOReadBandwidthMax, "/dev/vda 1M").unwrap();
    l.set(LimitKey::IOReadBandwidthMax, "254:0 2M").unwrap();
    let e = l.plan(&M, &FakeDevs).unwrap_err().to_string();
    assert!(e.contains("limited twice"), "{e}");
}

#[test]
fn real_resolver_refuses_non_devices() {
    let r = SysBlockDevices::default();
    let e = r
        .resolve(&DeviceSpec::Path("/etc/hostname".into()))
        .unwrap_err();
    assert!(e.contains("not a block device"), "{e}");
    let e = r
        .resolve(&DeviceSpec::Path("/nonexistent/dev".into()))
        .unwrap_err();
    assert!(e.contains("/nonexistent/dev"), "{e}");
    let e = r
        .resolve(&DeviceSpec::Number(DevNum {
            major: 4000,
            minor: 4000,
        }))
        .unwrap_err();
    assert!(e.contains("no block device 4000:4000"), "{e}");
}

#[test]
fn unknown_key() {
    let mut l = Limits::default();
    let e = l.set_pair("memorymax", "1G").unwrap_err();
    assert_eq!((e.key_name(), e.value()), ("memorymax", "1G"));
    let e = e.to_string();
    assert!(e.contains("did you mean MemoryMax"), "{e}");
    let e = l.set_pair("MemoryMaxx", "1G").unwrap_err().to_string();
    assert!(e.contains("did you mean MemoryMax?"), "{e}");
    let e = l.set_pair("Bogus", "1").unwrap_err().to_string();
    assert!(e.contains("unknown key") && e.contains("TasksMax"), "{e}");
    assert!(!e.contains("did you mean"), "{e}");
    let e = Limits::from_properties(["MemoryMax"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not KEY=VALUE") && e.contains("MemoryMax=512M"),
        "{e}"
    );
    assert!(l.is_empty());
    l.set_pair("TasksMax", "5").unwrap();
    assert_eq!(l.tasks_max, Some(TasksMax::Count(5)));
    l.clear(LimitKey::TasksMax);
    assert!(l.is_empty());
}

#[test]
fn properties_and_display_round_trip() {
    let l = Limits::from_properties([
        "MemoryMax=512M",
        "MemoryHigh=50%",
        "CPUQuota=20%",
        "CPUWeight=200",
        "IOWriteBandwidthMax=/dev/vda 4M",
        "TasksMax=64",
    ])
    .unwrap();
    let shown = l.to_string();
    assert_eq!(
        shown,
        "MemoryMax=512M MemoryHigh=50% CPUQuota=20% CPUWeight=200 \
         IOWriteBandwidthMax=\"/dev/vda 4M\" TasksMax=64"
    );
    assert_eq!(Limits::default().to_string(), "(none)");
    assert!(Limits::default().is_empty());
    assert!(Limits::from_properties(["MemoryMax"]).is_err());
    assert_eq!(
        l.controllers().into_iter().collect::<Vec<_>>(),
        [
            Controller::Cpu,
            Controller::Memory,
            Controller::Io,
            Controller::Pids
        ]
    );
}

#[test]
fn toml_config() {
    let t = r#"
        MemoryMax = "512M"
        MemoryHigh = 268435456
        CPUQuota = "50% of machine"
        CPUWeight = 300
        IOReadBandwidthMax = ["/dev/vda 2M", "8:0 max"]
        IOWriteIOPSMax = "/dev/vda 100"
        TasksMax = "max"
    "#;
    let l: Limits = toml::from_str(t).unwrap();
    assert_eq!(l.memory_max, Some(MemoryValue::Bytes(512 << 20)));
    assert_eq!(l.memory_high, Some(MemoryValue::Bytes(256 << 20)));
    assert_eq!(l.cpu_quota, Some(CpuQuota::Machine(Percent(5000))));
    assert_eq!(l.cpu_weight, Some(300));
    assert_eq!(l.io_read_bandwidth_max.len(), 2);
    assert_eq!(l.io_write_iops_max.len(), 1);
    assert_eq!(l.tasks_max, Some(TasksMax::Max));
    // Back to TOML/JSON in the same forms, and parsed again to the same value.
    let out = toml::to_string(&l).unwrap();
    assert!(out.contains("MemoryHigh = \"256M\""), "{out}");
    assert!(out.contains("CPUQuota = \"50% of machine\""), "{out}");
    let again: Limits = toml::from_str(&out).unwrap();
    assert_eq!(again, l);
    let j = serde_json::to_string(&l).unwrap();
    assert_eq!(serde_json::from_str::<Limits>(&j).unwrap(), l);
}

#[test]
fn toml_errors_name_key_value_and_forms() {
    for (t, needles) in [
        (
            "MemoryMax = \"lots\"",
            &["MemoryMax", "\"lots\"", "512M"][..],
        ),
        ("MemoryMax = -5", &["MemoryMax", "\"-5\"", "negative"][..]),
        ("MemoryMax = true", &["a string such as"][..]),
        ("CPUQuota = 20", &["CPUQuota", "ambiguous", "20%"][..]),
        ("CPUQuota = 0.5", &["CPUQuota", "\"0.5\""][..]),
        ("Memorymax = \"1G\"", &["did you mean MemoryMax"][..]),
        ("TasksMax = [\"1\", \"2\"]", &["TasksMax", "not a list"][..]),
        (
            "IOReadBandwidthMax = [\"/dev/vda\"]",
            &["IOReadBandwidthMax", "device and a rate"][..],
        ),
    ] {
        let e = toml::from_str::<Limits>(t).unwrap_err().to_string();
        for n in needles {
            assert!(e.contains(n), "{t}: {n:?} missing in {e}");
        }
    }
}

#[test]
fn validate_catches_values_built_in_code() {
    let l = Limits {
        cpu_weight: Some(0),
        ..Limits::default()
    };
    let e = l.plan(&M, &FakeDevs).unwrap_err().to_string();
    assert!(e.contains("CPUWeight") && e.contains("\"0\""), "{e}");
    let l = Limits {
        memory_max: Some(MemoryValue::Bytes(10)),
        ..Limits::default()
    };
    assert!(l.validate().is_err());
    let l = Limits {
        tasks_max: Some(TasksMax::Count(0)),
        ..Limits::default()
    };
    assert!(l.validate().is_err());
}

#[test]
fn io_max_helpers() {
    let cur =
        "254:0 rbps=2097152 wbps=max riops=max wiops=max\n8:0 rbps=max wbps=1 riops=max wiops=max\n";
    let d = io_max_devices(cur);
    assert_eq!(d.len(), 2);
    assert!(d.contains(&DevNum { major: 8, minor: 0 }));
    assert!(io_max_devices("").is_empty());
    assert_eq!(
        IoMax::unlimited(DevNum { major: 1, minor: 2 }).to_string(),
        "1:2 rbps=max wbps=max riops=max wiops=max"
    );
}

#[test]
fn percent_display() {
    assert_eq!(Percent(2000).to_string(), "20%");
    assert_eq!(Percent(1250).to_string(), "12.5%");
    assert_eq!(Percent(1205).to_string(), "12.05%");
    let q = |v: &str| one(LimitKey::CPUQuota, v).unwrap().cpu_quota;
    assert_eq!(q("12.05%"), Some(CpuQuota::OneCpu(Percent(1205))));
    assert_eq!(q("7 %"), Some(CpuQuota::OneCpu(Percent(700))));
}

#[test]
fn machine_detect_reads_this_host() {
    let m = Machine::detect().unwrap();
    assert!(m.mem_total > 0 && m.cpus >= 1 && m.pid_max >= 300, "{m:?}");
}

/// Hostile pieces the fuzz below strings together.
const PIECES: [&str; 40] = [
    "0",
    "1",
    "9",
    "512",
    "99999999999999999999",
    "18446744073709551615",
    "4294967296",
    "1e400",
    ".",
    "-",
    "+",
    "%",
    " ",
    "K",
    "M",
    "G",
    "T",
    "P",
    "B",
    "iB",
    "KB",
    "k",
    "max",
    "infinity",
    "of machine",
    "/dev/vda",
    "254:0",
    "8:0",
    ":",
    "é",
    "\u{221e}",
    "\u{0}",
    "\u{202e}",
    "\n",
    "\"",
    "\\",
    "NaN",
    "0x10",
    "..",
    "/",
];

/// Deterministic hostile strings: fixed nasty ones, then random concatenations of
/// [`PIECES`].
fn hostile_strings(n: usize) -> Vec<String> {
    let mut out: Vec<String> = [
        "99999999999999999999G",
        "99999999999999999999",
        "1e400",
        "-1",
        "-0",
        "-99999999999999999999%",
        "1.0000000001%",
        "4294967296%",
        "18446744073709551616",
        "16384P",
        "  ",
        "",
        "%",
        "max max",
        "/dev/vda 99999999999999999999G",
        "254:0 1e400",
        "254:0 -1",
        "254:99999999999 1M",
        "4294967296:0 1M",
        "/dev/../dev/vda 1M",
        "50% of machine of machine",
        "\u{feff}512M",
        "５１２M",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.push("9".repeat(10_000));
    out.push(format!("{}M", "1".repeat(100_000)));
    out.push(format!("/dev/{} 1M", "x".repeat(50_000)));
    out.push("é".repeat(5_000));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    while out.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 7) as usize;
        let s: String = (0..len)
            .map(|i| PIECES[((seed >> (i * 6)) % PIECES.len() as u64) as usize])
            .collect();
        out.push(s);
    }
    out
}

/// A refusal names the key and (a bounded prefix of) the value.
fn assert_names(key: LimitKey, value: &str, e: &LimitError) {
    assert_eq!(e.key(), Some(key), "{value:?}: {e}");
    let shown = crate::key::shorten(value, 128);
    assert_eq!(e.value(), shown, "{value:?}");
    let msg = e.to_string();
    assert!(msg.contains(key.as_str()), "{value:?}: {msg}");
    assert!(msg.contains(&format!("{shown:?}")), "{value:?}: {msg}");
    assert!(msg.len() < 2_000, "{} bytes for {value:?}", msg.len());
}

/// Random and hostile values through every key never panic: each is either accepted within
/// range (validate and plan agree) or refused with an error naming the key and the value.
#[test]
fn hostile_values_never_panic_and_are_named() {
    let strings = hostile_strings(3_000);
    let mut accepted = 0;
    for key in LimitKey::ALL {
        for v in &strings {
            let mut l = Limits::default();
            match l.set(key, v) {
                Ok(()) => {
                    accepted += 1;
                    assert!(!l.is_empty(), "{key}={v:?}");
                    l.validate()
                        .unwrap_or_else(|e| panic!("{key}={v:?} accepted but {e}"));
                    // Rendering may refuse (a device the fake resolver does not know, a
                    // percentage below 1M here) but never panics, and names the key.
                    if let Err(e) = l.plan(&M, &FakeDevs) {
                        assert_eq!(e.key(), Some(key), "{e}");
                    }
                    // What is printed parses back to the same limits.
                    let mut again = Limits::default();
                    for (k, text) in l.entries() {
                        again.set(k, &text).unwrap();
                    }
                    assert_eq!(again, l, "{key}={v:?}");
                }
                Err(e) => {
                    assert_names(key, v, &e);
                    assert!(l.is_empty(), "a refused value changed the limits");
                }
            }
            // The text-key entry point agrees.
            let mut p = Limits::default();
            assert_eq!(p.set_pair(key.as_str(), v).is_ok(), !l.is_empty());
        }
    }
    assert!(accepted > 100, "the fuzz accepted only {accepted} values");
}

/// The same through the config's TOML form, as a string and as a bare value.
#[test]
fn hostile_toml_never_panics_and_names_the_key() {
    let strings = hostile_strings(600);
    for key in LimitKey::ALL {
        for v in &strings {
            let quoted = toml::Value::String(v.clone()).to_string();
            for doc in [format!("{key} = {quoted}"), format!("{key} = {v}")] {
                match toml::from_str::<Limits>(&doc) {
                    Ok(l) => l
                        .validate()
                        .unwrap_or_else(|e| panic!("{doc:?} accepted but {e}")),
                    // A document that is valid TOML but refused names the key.
                    Err(e) if toml::from_str::<toml::Table>(&doc).is_ok() => {
                        let msg = e.to_string();
                        assert!(msg.contains(key.as_str()), "{doc:?}: {msg}");
                    }
                    Err(_) => {}
                }
            }
            // Lists: IO keys take them, other keys refuse them by name.
            let doc = format!("{key} = [{quoted}, {quoted}]");
            match toml::from_str::<Limits>(&doc) {
                Ok(l) => {
                    assert!(key.is_per_device(), "{doc:?}");
                    l.validate().unwrap();
                }
                Err(e) => assert!(e.to_string().contains(key.as_str()), "{doc:?}: {e}"),
            }
        }
    }
}
