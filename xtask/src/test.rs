//! `cargo xtask test`: what CI runs (`.ci/run`). Installs missing Debian packages, checks
//! formatting and lints, builds, runs the host tests, then the in-VM tests on every kernel.
//!
//! Tests that need root are `#[ignore = "needs root: ..."]`: as root (CI) they run here with
//! `--include-ignored`; otherwise they are listed as ignored. The `vm_*` test targets never
//! run on the host (they are ignored there too, and fail if forced): `vm-test` runs them in
//! the VM.
use crate::{deps, run::build_bins, vm, workspace_root};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::{process::Command, time::Instant};

#[derive(Args)]
pub struct TestArgs {
    /// Skip the VM tests (host tests only).
    #[arg(long)]
    pub no_vm: bool,
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    pub no_lint: bool,
    /// Test name filter for the host tests.
    #[arg(last = true)]
    pub filter: Vec<String>,
}

/// The procman-tests targets that run on the host: every `[[test]]` not named `vm_*` (those
/// run inside the VM), from `cargo metadata --no-deps` output.
fn host_test_targets(metadata: &serde_json::Value) -> Result<Vec<String>> {
    let pkg = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "procman-tests")
        .context("no procman-tests package in cargo metadata")?;
    let mut names: Vec<String> = pkg["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "test"))
        })
        .filter_map(|t| t["name"].as_str())
        .filter(|n| !n.starts_with("vm_"))
        .map(String::from)
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("procman-tests has no host test target (tests/*.rs not named vm_*)");
    }
    Ok(names)
}

fn metadata() -> Result<serde_json::Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata")
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let st = Command::new(cargo)
        .current_dir(workspace_root())
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !st.success() {
        bail!("cargo {} failed ({st})", args.join(" "));
    }
    Ok(())
}

pub fn run(a: TestArgs) -> Result<()> {
    let t0 = Instant::now();
    deps::ensure(deps::BUILD)?;
    deps::ensure(deps::HOST_TEST)?;
    deps::validators()?;
    let root = deps::nix_is_root();
    if !root {
        eprintln!(
            "xtask: not root: the host tests that need root (BPF programs, the proc connector, \
             cgroup moves) are #[ignore = \"needs root: ...\"] and will be listed as ignored; \
             run as root (as CI does) to run them"
        );
    }
    if !a.no_lint {
        cargo(&["fmt", "--all", "--check"])?;
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?;
    }
    // The integration tests run the real binaries: build them first.
    build_bins(false)?;
    // At most 2 tests at a time (the CI host has 2 cores, the harness default there): each
    // host test starts its own agent, some spawn storms of up to 20,000 processes, and the
    // CPU-share and deadline checks assume little competition.
    let mut harness = vec!["--test-threads=2"];
    if root {
        harness.push("--include-ignored");
    }
    harness.extend(a.filter.iter().map(String::as_str));
    // 1. Every other crate: unit tests (xtask's own too: VM plumbing, bench parsers), doc
    //    tests, integration tests.
    let mut args = vec!["test", "--workspace", "--exclude", "procman-tests", "--"];
    args.extend(&harness);
    cargo(&args)?;
    // 2. procman-tests on the host: its library and every test target but the vm_* ones.
    let targets = host_test_targets(&metadata()?)?;
    let mut args = vec!["test", "-p", "procman-tests", "--lib"];
    for t in &targets {
        args.extend(["--test", t.as_str()]);
    }
    args.push("--");
    args.extend(&harness);
    cargo(&args)?;
    eprintln!(
        "xtask: host tests passed ({:.0}s so far)",
        t0.elapsed().as_secs_f64()
    );
    if !a.no_vm {
        deps::ensure(deps::VM)?;
        // tests/vm_package.rs installs the .deb in the VM
        crate::package::build()?;
        vm::test_all()?;
    }
    eprintln!(
        "xtask: all tests passed in {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_targets_are_the_non_vm_tests_of_procman_tests() {
        let md = serde_json::json!({"packages": [
            {"name": "procman-agent", "targets": [
                {"name": "procman-agent", "kind": ["bin"]},
                {"name": "host_other", "kind": ["test"]}
            ]},
            {"name": "procman-tests", "targets": [
                {"name": "procman_tests", "kind": ["lib"]},
                {"name": "host_events", "kind": ["test"]},
                {"name": "vm_kernel", "kind": ["test"]},
                {"name": "host_cli", "kind": ["test"]},
                {"name": "smoke", "kind": ["test"]},
                {"name": "vm_cgroup", "kind": ["test"]}
            ]}
        ]});
        assert_eq!(
            host_test_targets(&md).unwrap(),
            ["host_cli", "host_events", "smoke"]
        );
        let only_vm = serde_json::json!({"packages": [{"name": "procman-tests", "targets": [
            {"name": "vm_kernel", "kind": ["test"]}
        ]}]});
        assert!(host_test_targets(&only_vm).is_err());
        assert!(host_test_targets(&serde_json::json!({"packages": []})).is_err());
    }

    #[test]
    fn the_real_workspace_has_host_targets_and_no_vm_target_among_them() {
        let t = host_test_targets(&metadata().unwrap()).unwrap();
        assert!(t.iter().any(|n| n == "host_events"), "{t:?}");
        assert!(t.iter().all(|n| !n.starts_with("vm_")), "{t:?}");
    }
}
