//! Debian packages the build and the tests need, installed with apt-get when missing.
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Packages the host build and host tests need: clang for the BPF object, libbpf headers,
/// bpftool (vmlinux.h regeneration, debugging).
pub const BUILD: &[&str] = &["clang-19", "llvm-19", "libbpf-dev", "bpftool"];
/// Packages the host tests need besides the build: headless Chromium (the CORS test opens
/// a page that calls the API), curl and jq (seed 004's curl examples run as written), promtool
/// from the prometheus package (it parses and lints `GET /metrics`), systemd-analyze (it
/// verifies the packaged unit), python3-venv (the OpenAPI validator's virtualenv,
/// [`openapi_validator`]), tmux (`procman top` runs in a detached session: keys sent, the
/// screen captured, `tests/host_top.rs`).
pub const HOST_TEST: &[&str] = &[
    "chromium",
    "curl",
    "jq",
    "prometheus",
    "systemd",
    "python3-venv",
    "tmux",
];

/// The validators the tests run, from PyPI, pinned: openapi-spec-validator (OpenAPI 3.0 and
/// 3.1: `docs/openapi.json` against the specification's schema, `$ref`s resolved, path
/// parameters declared) and kubernetes-validate (the manifests in `deploy/kubernetes/`
/// against the Kubernetes API's schemas, which it bundles: no cluster needed).
pub const VALIDATORS: &[&str] = &[
    "openapi-spec-validator==0.9.0",
    "kubernetes-validate==1.31.0",
];

/// Installs [`VALIDATORS`] into a virtualenv at `target/validators-venv` unless they are
/// there already (a marker file names the pinned versions); returns the venv's `bin/`.
/// The tests look for them there (`tests/host_contract.rs`, `tests/host_deploy.rs`).
pub fn validators() -> Result<std::path::PathBuf> {
    let venv = crate::workspace_root().join("target/validators-venv");
    let bin = venv.join("bin");
    let marker = venv.join(".procman-installed");
    let want = VALIDATORS.join(" ");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == want) {
        return Ok(bin);
    }
    eprintln!("xtask: installing {want} into {}", venv.display());
    let st = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv (Debian: apt-get install python3-venv)")?;
    if !st.success() {
        bail!("python3 -m venv {} failed ({st})", venv.display());
    }
    let st = Command::new(bin.join("pip"))
        .args(["install", "-q", "--disable-pip-version-check"])
        .args(VALIDATORS)
        .status()
        .context("running pip in the validators' virtualenv")?;
    if !st.success() {
        bail!("pip install {want} failed ({st})");
    }
    std::fs::write(&marker, want)?;
    Ok(bin)
}

/// Packages the test VM needs (strace: a traced program must never be held, `vm_hold`).
pub const VM: &[&str] = &["qemu-system-x86", "busybox-static", "strace"];
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
