//! Helpers shared by procman's integration tests.
//!
//! Two kinds of tests live in this crate:
//! - host tests (`tests/*.rs` not starting with `vm_`): need root on the host (BPF), never
//!   touch controllers;
//! - VM tests (`tests/vm_*.rs`): need a real cgroup v2 kernel with controllers; they run inside
//!   the throwaway VM booted by `cargo xtask vm-test` (which sets `VMTEST=1`). On the host they
//!   print why they are skipped and return.
use std::path::PathBuf;

/// True inside the test VM (`cargo xtask vm-test` sets VMTEST=1).
pub fn in_vm() -> bool {
    std::env::var_os("VMTEST").is_some_and(|v| v == "1")
}

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips (visibly) a test that must run inside the test VM.
#[macro_export]
macro_rules! require_vm {
    () => {
        if !$crate::in_vm() {
            eprintln!(
                "SKIPPED {}: needs the cgroup v2 test VM; run `cargo xtask vm-test`",
                module_path!()
            );
            return;
        }
    };
}

/// Skips (visibly) a test that needs root (BPF, netlink, cgroup moves).
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!(
                "SKIPPED {}: needs root (BPF and cgroups); run as root",
                module_path!()
            );
            return;
        }
    };
}

/// Path of a workspace binary (`procman-agent`, `procman`) next to the running test
/// executable (target/<profile>/deps/<test> -> target/<profile>/<name>).
/// `cargo xtask test` builds the binaries before running tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (`cargo build --bins`; `cargo xtask test` does it)",
        p.display()
    );
    p
}
