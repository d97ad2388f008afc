//! `cargo xtask run`: build everything (release) and start procman-agent with the bundled
//! example config, as root (through sudo when needed).
use crate::{deps, workspace_root};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::{os::unix::process::CommandExt, process::Command};

#[derive(Args)]
pub struct RunArgs {
    /// Build in debug mode instead of release.
    #[arg(long)]
    pub debug: bool,
    /// Extra arguments for procman-agent (after `--`), e.g. `-- --threads`.
    #[arg(last = true)]
    pub agent_args: Vec<String>,
}

/// `cargo build --bins` in the given profile; returns the target directory of that profile.
pub fn build_bins(release: bool) -> Result<std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "build",
        "--bins",
        "-p",
        "procman-agent",
        "-p",
        "procman-cli",
    ]);
    if release {
        cmd.arg("--release");
    }
    let st = cmd.status().context("running cargo build")?;
    if !st.success() {
        bail!("cargo build failed ({st})");
    }
    Ok(workspace_root()
        .join("target")
        .join(if release { "release" } else { "debug" }))
}

pub fn run(a: RunArgs) -> Result<()> {
    deps::ensure(deps::BUILD)?;
    let dir = build_bins(!a.debug)?;
    let agent = dir.join("procman-agent");
    let config = workspace_root().join("procman.example.toml");
    eprintln!(
        "xtask: starting {} --config {}",
        agent.display(),
        config.display()
    );
    eprintln!(
        "xtask: in another terminal: {}/procman events",
        dir.display()
    );
    let mut cmd = if deps::nix_is_root() {
        Command::new(&agent)
    } else {
        eprintln!("xtask: procman-agent needs root; running it through sudo");
        let mut c = Command::new("sudo");
        c.arg(&agent);
        c
    };
    cmd.arg("--config").arg(&config).args(&a.agent_args);
    let err = cmd.exec();
    bail!("cannot start {}: {err}", agent.display())
}
