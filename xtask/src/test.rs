//! `cargo xtask test`: what CI runs (`.ci/run`). Installs missing Debian packages, checks
//! formatting and lints, builds, runs the host tests, then the in-VM tests on every kernel.
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
    if !deps::nix_is_root() {
        eprintln!("xtask: warning: not root: the host tests that need BPF will print SKIPPED");
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
    // xtask's own unit tests (VM plumbing, bench parsers) run too.
    let mut args = vec!["test", "--workspace"];
    args.push("--");
    args.push("--test-threads=2");
    let filter: Vec<&str> = a.filter.iter().map(String::as_str).collect();
    args.extend(&filter);
    cargo(&args)?;
    eprintln!(
        "xtask: host tests passed ({:.0}s so far)",
        t0.elapsed().as_secs_f64()
    );
    if !a.no_vm {
        deps::ensure(deps::VM)?;
        vm::test_all()?;
    }
    eprintln!(
        "xtask: all tests passed in {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
