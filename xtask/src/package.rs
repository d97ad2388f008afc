//! `cargo xtask package`: the Debian package, built by cargo-deb from
//! `[package.metadata.deb]` in procman-agent/Cargo.toml.
//!
//! 1. cargo-deb itself is installed with `cargo install --locked` at a pinned version when
//!    `cargo deb` is missing (crates.io is the only source it needs).
//! 2. procman-agent and procman are built in release.
//! 3. Their man pages (`procman man`, `procman-agent --man`, gzipped) and shell completions
//!    (`procman completions bash|zsh|fish`) are generated into `target/release/package/`:
//!    from the binaries themselves, so they always match them.
//! 4. `cargo deb --no-build` writes `target/debian/procman_<version>-1_<arch>.deb`.
//!
//! `tests/vm_package.rs` installs the result with `dpkg -i` inside the test VM.
use crate::{deps, workspace_root};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The cargo-deb release `cargo xtask package` installs when `cargo deb` is missing.
const CARGO_DEB_VERSION: &str = "3.8.0";

#[derive(Args)]
pub struct PackageArgs {}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

fn have_cargo_deb() -> bool {
    cargo()
        .args(["deb", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `bin args` and writes its stdout to `to`, gzipped (`gzip -9n`: reproducible) when
/// `to` ends in `.gz`.
fn generate(bin: &Path, args: &[&str], to: &Path) -> Result<()> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} {}: {}\n{}",
            bin.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let data = if to.extension().is_some_and(|e| e == "gz") {
        let mut gz = Command::new("gzip")
            .args(["-9n"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("running gzip")?;
        use std::io::Write;
        gz.stdin.take().unwrap().write_all(&out.stdout)?;
        let o = gz.wait_with_output()?;
        if !o.status.success() {
            bail!("gzip failed ({})", o.status);
        }
        o.stdout
    } else {
        out.stdout
    };
    std::fs::write(to, data).with_context(|| format!("writing {}", to.display()))
}

/// Builds the package and returns its path.
pub fn build() -> Result<PathBuf> {
    deps::ensure(deps::BUILD)?;
    if !have_cargo_deb() {
        eprintln!("xtask: installing cargo-deb {CARGO_DEB_VERSION} (cargo install --locked)");
        run(
            cargo().args([
                "install",
                "--locked",
                "--version",
                CARGO_DEB_VERSION,
                "cargo-deb",
            ]),
            "cargo install cargo-deb",
        )?;
    }
    let root = workspace_root();
    run(
        cargo().current_dir(&root).args([
            "build",
            "--release",
            "-p",
            "procman-agent",
            "-p",
            "procman-cli",
        ]),
        "cargo build --release",
    )?;
    let release = root.join("target/release");
    let assets = release.join("package");
    std::fs::create_dir_all(&assets)?;
    let (cli, agent) = (release.join("procman"), release.join("procman-agent"));
    generate(&cli, &["man"], &assets.join("procman.1.gz"))?;
    generate(&agent, &["--man"], &assets.join("procman-agent.8.gz"))?;
    generate(&cli, &["completions", "bash"], &assets.join("procman.bash"))?;
    generate(&cli, &["completions", "zsh"], &assets.join("_procman"))?;
    generate(&cli, &["completions", "fish"], &assets.join("procman.fish"))?;
    let out_dir = root.join("target/debian");
    let out = cargo()
        .current_dir(&root)
        .args([
            "deb",
            "-p",
            "procman-agent",
            "--no-build",
            "--strip",
            "--output",
        ])
        .arg(&out_dir)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo deb")?;
    if !out.status.success() {
        bail!("cargo deb failed ({})", out.status);
    }
    // cargo deb prints the package's path
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .map(|l| PathBuf::from(l.trim()))
        .context("cargo deb did not print the package path")?;
    eprintln!("xtask: built {}", path.display());
    Ok(path)
}

pub fn package(_a: PackageArgs) -> Result<()> {
    let path = build()?;
    println!("{}", path.display());
    Ok(())
}
