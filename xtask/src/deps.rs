//! Debian packages the build and the tests need, installed with apt-get when missing.
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Packages the host build and host tests need: clang for the BPF object, libbpf headers,
/// bpftool (vmlinux.h regeneration, debugging).
pub const BUILD: &[&str] = &["clang-19", "llvm-19", "libbpf-dev", "bpftool"];
/// Packages the host tests need besides the build: headless Chromium (the CORS test opens
/// a page that calls the API), curl and jq (seed 004's curl examples run as written), promtool
/// from the prometheus package (it parses and lints `GET /metrics`), systemd-analyze (it
/// verifies the packaged unit).
pub const HOST_TEST: &[&str] = &["chromium", "curl", "jq", "prometheus", "systemd"];
/// Packages the test VM needs.
pub const VM: &[&str] = &["qemu-system-x86", "busybox-static"];
/// What `cargo xtask bench placement` compares procman against in the VM: libcgroup's
/// cgrulesengd. The package only installs programs (no service is started).
pub const BENCH_VM: &[&str] = &["cgroup-tools"];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs the missing ones of `pkgs` (as root), or explains the command to run.
pub fn ensure(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    if !nix_is_root() {
        bail!(
            "missing Debian packages: {}. Install them as root with:\n  {cmd}",
            missing.join(", ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    // apt-cache/apt-get need fresh lists on a new machine; update once, quietly.
    let upd = Command::new("apt-get")
        .args(["update", "-q"])
        .status()
        .context("running apt-get update")?;
    if !upd.success() {
        eprintln!("xtask: warning: apt-get update failed ({upd}); trying the install anyway");
    }
    let st = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !st.success() {
        bail!("`{cmd}` failed ({st})");
    }
    Ok(())
}

pub fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
